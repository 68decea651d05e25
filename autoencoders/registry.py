"""One entry point for the paper's four autoencoders: build, Phi, and Table 8's epochs."""

import keras

from autoencoders.adversarial import AdversarialAutoencoder, build_adversarial
from autoencoders.conv import build_conv
from autoencoders.dense import build_dense
from autoencoders.sparse import build_sparse

ARCHITECTURES = ("dense", "sparse", "conv", "adversarial")

default_batch_size = 100

_BUILDERS = {
    "dense": build_dense,
    "sparse": build_sparse,
    "conv": build_conv,
    "adversarial": build_adversarial,
}

# Table 8 of the paper: (Original, MINE-UAE) training epochs per dataset row.
# SVHN conv: the paper "set 100 epochs, but the training loss converges after 5"
# (Appendix F: 100 epochs with early stopping), so 10 epochs (twice the convergence
# point) and 15 on the doubled augmented set (the x1.5 of the MNIST conv row).
# SVHN adversarial: the paper "set 200 epochs and use the model with the lowest
# training loss", in every column; the AAE's loss is not monotone, so the whole run
# is kept -- pick the lowest-loss epoch with a callback (see default_epochs).
_TABLE_8_EPOCHS = {
    "mnist": {"sparse": (50, 80), "dense": (20, 30), "conv": (20, 30), "adversarial": (50, 80)},
    "svhn_cropped": {"sparse": (50, 80), "dense": (30, 50), "conv": (10, 15),
                     "adversarial": (200, 200)},
}

# Datasets outside Table 8 use the MNIST row when grayscale, the SVHN row when colour.
_TABLE_8_ROW = {
    "mnist": "mnist",
    "fashion_mnist": "mnist",
    "mnist5k": "mnist",
    "digits": "mnist",
    "svhn_cropped": "svhn_cropped",
    "cifar10": "svhn_cropped",
}


def _check_arch(arch):
    if arch not in _BUILDERS:
        raise ValueError(
            f"Unknown autoencoder architecture {arch!r}. Valid architectures: "
            f"{', '.join(ARCHITECTURES)}. Received: arch={arch!r}"
        )


def build(arch, input_shape, seed=None, **hparams):
    """Builds one of the paper's autoencoders (Section 5.4), compiled and ready to fit.

    Args:
        arch: One of :data:`ARCHITECTURES`: ``"dense"``, ``"sparse"``, ``"conv"``,
            ``"adversarial"``.
        input_shape: Shape of one sample without the batch axis, e.g. ``(28, 28, 1)``
            (MNIST) or ``(32, 32, 3)`` (SVHN).
        seed: Integer seed of the weight initializers (and of the adversarial AE's
            prior samples), or ``None``.
        **hparams: Architecture-specific settings, passed to the builder:
            ``dense``: ``code_dim``, ``learning_rate``; ``sparse``: ``code_dim``,
            ``l1``, ``sparsity_target``, ``sparsity_weight``, ``learning_rate``;
            ``conv``: ``learning_rate``; ``adversarial``: ``latent_dim``,
            ``hidden_units``, ``code_activation``, ``learning_rate``.

    Returns:
        A compiled ``keras.Model``; train it with ``model.fit(x, x, epochs=...,
        batch_size=default_batch_size)``. For ``"adversarial"`` it is the
        :class:`~autoencoders.adversarial.AdversarialAutoencoder` trainer; use
        :func:`reconstruction_model` to get Phi.

    Raises:
        ValueError: for an unknown ``arch`` or an invalid ``input_shape``.

    Example:

    >>> model = build("conv", (28, 28, 1), seed=0)
    >>> phi = reconstruction_model(model)
    """
    _check_arch(arch)
    return _BUILDERS[arch](input_shape, seed=seed, **hparams)


def reconstruction_model(model):
    """Returns Phi, the plain ``keras.Model`` mapping x to its reconstruction.

    Args:
        model: A model from :func:`build` (or any autoencoder ``keras.Model``).

    Returns:
        ``model.autoencoder`` for an
        :class:`~autoencoders.adversarial.AdversarialAutoencoder`; ``model`` itself
        otherwise (the dense, sparse and conv autoencoders are Phi).

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model's output shape differs from its input shape.
    """
    if isinstance(model, AdversarialAutoencoder):
        return model.autoencoder
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model must be a keras.Model. Received: model of type {type(model).__name__}"
        )
    try:
        input_shape, output_shape = model.input_shape, model.output_shape
    except (AttributeError, ValueError):
        return model
    if tuple(input_shape) != tuple(output_shape):
        raise ValueError(
            "A reconstruction model maps x to an output of x's shape. Received: model "
            f"{model.name!r} with input_shape={input_shape}, output_shape={output_shape}"
        )
    return model


def default_epochs(arch, dataset, augmented=False):
    """Training epochs of the paper's Table 8 (Appendix E).

    Epochs as ``Original / MINE-UAE``::

        row            sparse   dense   conv    adversarial
        mnist          50/80    20/30   20/30   50/80
        svhn_cropped   50/80    30/50   10/15   200/200

    ``fashion_mnist``, ``mnist5k`` and ``digits`` (grayscale) use the MNIST row;
    ``cifar10`` (colour) uses the SVHN row.

    Two SVHN cells are not numbers in Table 8. Convolutional: "we set 100 epochs,
    but the training loss converges after 5 epochs", so 10 (twice the convergence
    point) and 15 augmented (the MNIST conv row's x1.5). Adversarial: "we set 200
    epochs and use the model with the lowest training loss", so 200 in both
    columns; to keep the lowest-loss weights, fit with
    ``keras.callbacks.EarlyStopping(monitor="loss", patience=200,
    restore_best_weights=True)`` (Keras 3 restores the best epoch at the end of
    training even when it does not stop early).

    Args:
        arch: One of :data:`ARCHITECTURES`.
        dataset: ``"mnist"``, ``"fashion_mnist"``, ``"mnist5k"``, ``"digits"``,
            ``"svhn_cropped"`` or ``"cifar10"``.
        augmented: ``True`` for training on original + UAE data (the "MINE-UAE"
            column, also used for L2-UAE and GA); ``False`` for the "Original" one.

    Returns:
        The number of epochs.

    Raises:
        ValueError: for an unknown ``arch`` or ``dataset``.

    Example:

    >>> default_epochs("dense", "mnist"), default_epochs("dense", "mnist", augmented=True)
    (20, 30)
    """
    _check_arch(arch)
    if dataset not in _TABLE_8_ROW:
        raise ValueError(
            f"No Table 8 epochs for dataset {dataset!r}. Known datasets: "
            f"{', '.join(_TABLE_8_ROW)}. Received: dataset={dataset!r}"
        )
    original, with_uae = _TABLE_8_EPOCHS[_TABLE_8_ROW[dataset]][arch]
    return with_uae if augmented else original
