"""Sparse autoencoder of the paper (Section 5.4, "Sparse Autoencoder").

The dense autoencoder's architecture with the published ``sparseAE.py``'s sparsity
enforcers: an L1 activity penalty on both dense layers and a KL-divergence sparsity
penalty on the code (Hsu et al., AAAI 2022). The published training objective, for a
batch of B samples with codes ``h`` and outputs ``x_hat``, is::

    mse(x, x_hat) + 1e-7 * sum_batch sum_units (|h| + |x_hat|)
                  + 3 * mean_units KL(0.1 || mean_batch clip(h, 1e-10, 1))

The penalties are added by :class:`SparsityPenalty` layers with ``add_loss``, not as
Keras activity regularizers: Keras divides activity-regularizer values by the batch
size only from 3.14 on (``keras/src/layers/layer.py``, "Normalize by batch size"), so
with Keras 3.3-3.13 the same regularizer trained with its penalties x100 at batch
100. ``add_loss`` adds what it is given in every Keras 3 release. The standalone
Keras 2.2 of the published code added ``regularizer(output)`` as is, summed over the
batch. Hence:

* the L1 terms are ``l1 * mean_batch sum_units |h|``: the published 1e-7 summed over
  a batch of 100 equals 1e-5 averaged over the batch, so the default ``l1=1e-5``
  reproduces the published objective at the published batch size 100 (and, unlike
  it, does not change strength with the batch size);
* the KL term is a statistic of the whole batch, added as is: ``weight * mean_units
  KL``, as published.
"""

import keras
from keras import ops

from autoencoders.dense import dense_network


@keras.saving.register_keras_serializable(package="uae_tf")
class SparsityPenalty(keras.layers.Layer):
    """Identity layer that adds the sparse autoencoder's penalties on its input to the loss.

    For activations ``h`` of shape ``[B, units]``, the loss receives
    ``l1 * mean_batch sum_units |h|`` plus, when ``weight > 0`` (activations in
    (0, 1), e.g. sigmoid), ``weight * mean_units [rho log(rho / rho_hat) + (1 - rho)
    log((1 - rho) / (1 - rho_hat))]`` with ``rho_hat = mean_batch clip(h, 1e-10,
    1 - 1e-7)``: the penalties of the published ``sparseAE.py`` (Hsu et al., AAAI
    2022, Section 5.4), by ``add_loss``, so their scale does not depend on how a
    Keras release treats activity regularizers. The published code clipped
    ``rho_hat`` to ``[1e-10, 1]``; the upper bound here is ``1 - 1e-7`` so that a
    saturated unit gives a large finite penalty instead of ``inf``.

    Args:
        l1: Coefficient of the L1 activity penalty (per sample, averaged over the
            batch). Default 0.
        target: Target mean activation ``rho`` of the KL penalty, in (0, 1).
            Default 0.1.
        weight: Multiplier of the KL penalty; 0 (default) leaves it out.
        **kwargs: ``name`` and the other ``keras.layers.Layer`` arguments.

    Example:

    >>> code = keras.layers.Dense(128, activation="sigmoid")(inputs)
    >>> code = SparsityPenalty(l1=1e-5, target=0.1, weight=3.0)(code)
    """

    def __init__(self, l1=0.0, target=0.1, weight=0.0, **kwargs):
        super().__init__(**kwargs)
        if float(l1) < 0.0:
            raise ValueError(f"l1 must be >= 0. Received: l1={l1!r}")
        if not 0.0 < float(target) < 1.0:
            raise ValueError(f"target must be in (0, 1). Received: target={target!r}")
        if float(weight) < 0.0:
            raise ValueError(f"weight must be >= 0. Received: weight={weight!r}")
        self.l1 = float(l1)
        self.target = float(target)
        self.weight = float(weight)

    def call(self, x):
        batch_size = ops.cast(ops.shape(x)[0], x.dtype)
        penalty = self.l1 * ops.sum(ops.abs(x)) / batch_size
        if self.weight:
            rho = self.target
            rho_hat = ops.mean(ops.clip(x, 1e-10, 1.0 - 1e-7), axis=0)
            kl = (rho * ops.log(rho / rho_hat)
                  + (1.0 - rho) * ops.log((1.0 - rho) / (1.0 - rho_hat)))
            penalty = penalty + self.weight * ops.mean(kl)
        self.add_loss(penalty)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        """Returns the layer's config with ``l1``, ``target`` and ``weight``."""
        return {**super().get_config(), "l1": self.l1, "target": self.target,
                "weight": self.weight}


def build_sparse(input_shape, code_dim=None, l1=1e-5, sparsity_target=0.1,
                 sparsity_weight=3.0, learning_rate=0.001, seed=None):
    """Builds the compiled sparse autoencoder of the paper (Section 5.4).

    The dense autoencoder (see :func:`autoencoders.dense.build_dense`) whose code
    carries an L1 activity penalty and the KL sparsity penalty, and whose output
    carries an L1 activity penalty (:class:`SparsityPenalty` layers); Adam, mean squared error plus the penalties, as the published
    ``sparseAE.py``.

    Args:
        input_shape: Shape of one sample, without the batch axis.
        code_dim: Latent size; default 128 when the input has at most 1024 features,
            else 256.
        l1: L1 activity coefficient per sample, averaged over the batch. The
            default 1e-5 equals the published 1e-7 summed over a batch of 100. See
            the module docstring.
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
    >>> penalty = model.get_layer("code_penalty")
    >>> penalty.l1, penalty.target, penalty.weight
    (1e-05, 0.1, 3.0)
    """
    if float(l1) < 0.0:
        raise ValueError(f"l1 must be >= 0. Received: l1={l1!r}")
    model = dense_network(
        input_shape, code_dim, seed,
        code_penalty=SparsityPenalty(l1, sparsity_target, sparsity_weight, name="code_penalty"),
        output_penalty=SparsityPenalty(l1, name="decoded_penalty"),
        name="sparse_autoencoder",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.MeanSquaredError())
    return model
