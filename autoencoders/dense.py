"""Dense autoencoder of the paper (Section 5.4, "Dense Autoencoder").

One sigmoid dense layer encodes, one sigmoid dense layer decodes, as in the published
``denseAE.py`` of Hsu et al., "Adversarial Examples can be Effective Data
Augmentation for Unsupervised Machine Learning" (AAAI 2022).
"""

import keras

from autoencoders._common import check_input_shape, input_dim, kernel_initializer

LARGE_INPUT_DIM = 1024


def default_code_dim(input_shape):
    """The paper's latent size: 128 for MNIST-size inputs, 256 for SVHN-size ones.

    The paper uses 128 for MNIST (784 features) and 256 for SVHN (3072 features). The
    rule that reproduces both: 128 when the flattened input has at most 1024 features
    (MNIST, Fashion-MNIST, digits, 32x32 grayscale), 256 above (SVHN, CIFAR-10).

    Args:
        input_shape: Shape of one sample, without the batch axis.

    Returns:
        128 or 256.
    """
    return 128 if input_dim(input_shape) <= LARGE_INPUT_DIM else 256


def dense_network(input_shape, code_dim=None, seed=None, code_penalty=None,
                  output_penalty=None, name="dense_autoencoder"):
    """Builds the uncompiled dense autoencoder network shared by the dense and sparse AEs.

    ``x -> [Flatten] -> Dense(code_dim, sigmoid) -> Dense(d, sigmoid) -> [Reshape]``,
    where Flatten/Reshape are present only for inputs of rank > 1, so the output has
    the input's shape.

    Args:
        input_shape: Shape of one sample, without the batch axis, e.g. ``(28, 28, 1)``
            or ``(784,)``.
        code_dim: Latent size; ``None`` applies :func:`default_code_dim`.
        seed: Integer seed of the weight initializers, or ``None``.
        code_penalty: A layer applied to the code (the output of the layer named
            ``"code"``), e.g. a :class:`autoencoders.SparsityPenalty`; ``None``: none.
        output_penalty: A layer applied to the output dense layer's activations.
        name: Name of the returned model.

    Returns:
        An uncompiled functional ``keras.Model``.
    """
    input_shape = check_input_shape(input_shape, name)
    code_dim = default_code_dim(input_shape) if code_dim is None else code_dim
    if not isinstance(code_dim, int) or isinstance(code_dim, bool) or code_dim <= 0:
        raise ValueError(f"code_dim must be a positive int. Received: code_dim={code_dim!r}")
    inputs = keras.Input(shape=input_shape, name="x")
    h = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    code = keras.layers.Dense(
        code_dim, activation="sigmoid", kernel_initializer=kernel_initializer(seed, 0),
        name="code",
    )(h)
    if code_penalty is not None:
        code = code_penalty(code)
    out = keras.layers.Dense(
        input_dim(input_shape), activation="sigmoid",
        kernel_initializer=kernel_initializer(seed, 1), name="decoded",
    )(code)
    if output_penalty is not None:
        out = output_penalty(out)
    if len(input_shape) > 1:
        out = keras.layers.Reshape(input_shape, name="reshape")(out)
    return keras.Model(inputs, out, name=name)


def build_dense(input_shape, code_dim=None, learning_rate=0.0025, seed=None):
    """Builds the compiled dense autoencoder of the paper (Section 5.4).

    Architecture and training as the published ``denseAE.py``: a sigmoid code layer
    of ``code_dim`` units and a sigmoid output layer, RMSprop with learning rate
    0.0025, mean squared error.

    Args:
        input_shape: Shape of one sample, without the batch axis.
        code_dim: Latent size; default 128 when the input has at most 1024 features,
            else 256 (see :func:`default_code_dim`).
        learning_rate: RMSprop learning rate.
        seed: Integer seed of the weight initializers, or ``None``.

    Returns:
        A compiled ``keras.Model`` mapping x to its reconstruction; train it with
        ``model.fit(x, x, ...)``.

    Example:

    >>> model = build_dense((28, 28, 1), seed=0)
    >>> model.get_layer("code").units
    128
    """
    model = dense_network(input_shape, code_dim, seed)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
                  loss=keras.losses.MeanSquaredError())
    return model
