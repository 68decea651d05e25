"""Convolutional autoencoder of the paper (Section 5.4, "Convolutional Autoencoder").

Convolution, ReLU and pooling layers in the encoder; the reverse order with
up-sampling in the decoder, as the published ``convAE.py`` of Hsu et al.,
"Adversarial Examples can be Effective Data Augmentation for Unsupervised Machine
Learning" (AAAI 2022). Its first layer is a ``Conv2D``, which the attack's ``conv``
view uses (Appendix A.2).
"""

import keras

from autoencoders._common import check_input_shape, kernel_initializer

POOLING_FACTOR = 4


def build_conv(input_shape, learning_rate=1.0, seed=None):
    """Builds the compiled convolutional autoencoder of the paper (Section 5.4).

    ``Conv2D(16, 5x5, relu) -> MaxPool(2) -> Conv2D(8, 5x5, relu) -> MaxPool(2) ->
    Conv2D(8, 5x5, relu) -> UpSampling(2) -> Conv2D(16, 5x5, relu) -> UpSampling(2) ->
    Conv2D(channels, 5x5, sigmoid)``, all with ``same`` padding; Adadelta, binary
    cross-entropy, as the published ``convAE.py``.

    The published code used ``optimizer="adadelta"``, whose Keras 2 default learning
    rate was 1.0; Keras 3's ``Adadelta`` defaults to 0.001, which barely trains this
    model, so ``learning_rate`` defaults to 1.0 (rho 0.95 and epsilon 1e-7 are the
    same in both versions).

    Args:
        input_shape: ``(height, width, channels)`` of one sample; height and width
            must be divisible by 4 (two 2x2 poolings, undone by two 2x up-samplings),
            e.g. ``(28, 28, 1)`` or ``(32, 32, 3)``.
        learning_rate: Adadelta learning rate.
        seed: Integer seed of the weight initializers, or ``None``.

    Returns:
        A compiled ``keras.Model`` mapping x to its reconstruction; train it with
        ``model.fit(x, x, ...)``.

    Raises:
        ValueError: if ``input_shape`` is not ``(h, w, c)`` with h and w divisible by 4.

    Example:

    >>> model = build_conv((32, 32, 3), seed=0)
    >>> model.output_shape
    (None, 32, 32, 3)
    """
    input_shape = check_input_shape(input_shape, "conv_autoencoder")
    if len(input_shape) != 3:
        raise ValueError(
            "The convolutional autoencoder needs input_shape=(height, width, channels). "
            f"Received: input_shape={input_shape}"
        )
    height, width, channels = input_shape
    if height % POOLING_FACTOR or width % POOLING_FACTOR:
        raise ValueError(
            "The convolutional autoencoder needs height and width divisible by 4 (two "
            "2x2 poolings are undone by two 2x up-samplings, so other sizes do not "
            f"reconstruct to the input shape). Received: input_shape={input_shape}"
        )
    conv_layers = [(16, "relu"), (8, "relu"), (8, "relu"), (16, "relu"), (channels, "sigmoid")]
    conv = [
        keras.layers.Conv2D(filters, (5, 5), activation=activation, padding="same",
                            kernel_initializer=kernel_initializer(seed, i), name=f"conv{i + 1}")
        for i, (filters, activation) in enumerate(conv_layers)
    ]
    inputs = keras.Input(shape=input_shape, name="x")
    h = conv[0](inputs)
    h = keras.layers.MaxPooling2D((2, 2), padding="same", name="pool1")(h)
    h = conv[1](h)
    h = keras.layers.MaxPooling2D((2, 2), padding="same", name="pool2")(h)
    h = conv[2](h)
    h = keras.layers.UpSampling2D((2, 2), name="upsample1")(h)
    h = conv[3](h)
    h = keras.layers.UpSampling2D((2, 2), name="upsample2")(h)
    outputs = conv[4](h)
    model = keras.Model(inputs, outputs, name="conv_autoencoder")
    model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=learning_rate),
                  loss=keras.losses.BinaryCrossentropy())
    return model
