"""Sparse autoencoder of the paper (Section 5.4, "Sparse Autoencoder").

The dense autoencoder's architecture with the published ``sparseAE.py``'s sparsity
enforcers: an L1 activity penalty on both dense layers and a KL-divergence sparsity
penalty on the code (Hsu et al., AAAI 2022). The published training objective, for a
batch of B samples with codes ``h`` and outputs ``x_hat``, is::

    mse(x, x_hat) + 1e-7 * sum_batch sum_units (|h| + |x_hat|)
                  + 3 * mean_units KL(0.1 || mean_batch clip(h, 1e-10, 1))

How Keras 3 scales activity penalties: ``Layer.__call__`` divides every activity
regularizer's value by the batch size (``keras/src/layers/layer.py``, "Normalize by
batch size"), as ``tf.keras`` did. The standalone Keras 2.2 the published code ran on
did not: it added ``regularizer(output)`` as is. Hence:

* the L1 terms: the published 1e-7 summed over a batch of 100 equals 1e-5 averaged
  over the batch, which is what Keras 3 computes with ``L1(1e-5)``. The default
  ``l1=1e-5`` therefore reproduces the published objective at the published batch
  size 100 (and, unlike it, does not change strength with the batch size);
* the KL term is a statistic of the whole batch, not a per-sample sum, so
  :class:`KLSparsityRegularizer` multiplies it by the batch size to cancel Keras 3's
  division, and the loss gets exactly ``weight * mean_units KL``, as published.
"""

import keras
from keras import ops

from autoencoders.dense import dense_network


@keras.saving.register_keras_serializable(package="uae_tf")
class KLSparsityRegularizer(keras.regularizers.Regularizer):
    """KL-divergence sparsity penalty on a layer's mean activation (sparse autoencoder).

    For activations ``h`` of shape ``[B, units]`` in (0, 1) (sigmoid), with
    ``rho_hat = mean_batch clip(h, 1e-10, 1 - 1e-7)``, the penalty added to the loss is
    ``weight * mean_units [rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat))]``
    plus ``l1 * mean_batch sum_units |h|``: the code penalties of the published
    ``sparseAE.py`` (Hsu et al., AAAI 2022, Section 5.4). The L1 term lives here
    because a Keras layer takes a single activity regularizer.

    Keras 3 divides activity-regularizer values by the batch size. The KL penalty is
    a batch statistic, so ``__call__`` returns it multiplied by the batch size and the
    loss receives the penalty itself; the L1 term is a per-sample sum and is left to
    Keras's averaging. The published code clipped ``rho_hat`` to ``[1e-10, 1]``; the
    upper bound here is ``1 - 1e-7`` so that a saturated unit gives a large finite
    penalty instead of ``inf``.

    Args:
        target: Target mean activation ``rho``, in (0, 1). Default 0.1.
        weight: Multiplier of the KL penalty. Default 3.
        l1: Coefficient of the L1 activity penalty (per sample). Default 0.

    Example:

    >>> layer = keras.layers.Dense(
    ...     128, activation="sigmoid", activity_regularizer=KLSparsityRegularizer(0.1, 3.0))
    """

    def __init__(self, target=0.1, weight=3.0, l1=0.0):
        if not 0.0 < float(target) < 1.0:
            raise ValueError(f"target must be in (0, 1). Received: target={target!r}")
        if float(weight) < 0.0:
            raise ValueError(f"weight must be >= 0. Received: weight={weight!r}")
        if float(l1) < 0.0:
            raise ValueError(f"l1 must be >= 0. Received: l1={l1!r}")
        self.target = float(target)
        self.weight = float(weight)
        self.l1 = float(l1)

    def __call__(self, x):
        rho = self.target
        rho_hat = ops.mean(ops.clip(x, 1e-10, 1.0 - 1e-7), axis=0)
        kl = (rho * ops.log(rho / rho_hat)
              + (1.0 - rho) * ops.log((1.0 - rho) / (1.0 - rho_hat)))
        batch_size = ops.cast(ops.shape(x)[0], kl.dtype)
        return self.weight * ops.mean(kl) * batch_size + self.l1 * ops.sum(ops.abs(x))

    def get_config(self):
        """Returns ``{"target": ..., "weight": ..., "l1": ...}``."""
        return {"target": self.target, "weight": self.weight, "l1": self.l1}


def build_sparse(input_shape, code_dim=None, l1=1e-5, sparsity_target=0.1,
                 sparsity_weight=3.0, learning_rate=0.001, seed=None):
    """Builds the compiled sparse autoencoder of the paper (Section 5.4).

    The dense autoencoder (see :func:`autoencoders.dense.build_dense`) whose code
    layer carries an L1 activity penalty and the KL sparsity penalty (one
    :class:`KLSparsityRegularizer`), and whose output layer carries an L1 activity
    penalty; Adam, mean squared error plus the penalties, as the published
    ``sparseAE.py``.

    Args:
        input_shape: Shape of one sample, without the batch axis.
        code_dim: Latent size; default 128 when the input has at most 1024 features,
            else 256.
        l1: L1 activity coefficient per sample (Keras 3 averages activity penalties
            over the batch). The default 1e-5 equals the published 1e-7 summed over a
            batch of 100; pass 1e-7 for the literal coefficient. See the module
            docstring.
        sparsity_target: Target mean code activation ``rho``. Default 0.1.
        sparsity_weight: Weight of the KL sparsity penalty. Default 3.
        learning_rate: Adam learning rate (0.001, the Keras default the published
            code used).
        seed: Integer seed of the weight initializers, or ``None``.

    Returns:
        A compiled ``keras.Model`` mapping x to its reconstruction; train it with
        ``model.fit(x, x, ...)``. Its reported ``loss`` includes the penalties.

    Example:

    >>> model = build_sparse((28, 28, 1), seed=0)
    >>> model.get_layer("code").activity_regularizer.get_config()
    {'target': 0.1, 'weight': 3.0, 'l1': 1e-05}
    """
    if float(l1) < 0.0:
        raise ValueError(f"l1 must be >= 0. Received: l1={l1!r}")
    model = dense_network(
        input_shape, code_dim, seed,
        code_regularizer=KLSparsityRegularizer(sparsity_target, sparsity_weight, l1=l1),
        output_regularizer=keras.regularizers.L1(l1),
        name="sparse_autoencoder",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.MeanSquaredError())
    return model
