"""The Carlini-Wagner classifiers the paper attacks (Section 5.1, supervised setting).

The paper's supervised experiments (Table 3, Figures 2 and 3) attack "the pretrained
MNIST and CIFAR-10 deep neural network classifiers used in [Carlini and Wagner,
2017]". The published ``train_models.py`` builds both from one template::

    Conv2D(a, 3x3) relu -> Conv2D(a, 3x3) relu -> MaxPool(2)
    -> Conv2D(b, 3x3) relu -> Conv2D(b, 3x3) relu -> MaxPool(2)
    -> Flatten -> Dense(d) relu -> Dropout(0.5) -> Dense(d) relu -> Dense(classes)

with ``(a, b, d) = (32, 64, 200)`` for MNIST and ``(64, 128, 256)`` for CIFAR-10,
``valid`` padding, and logits as output (the margin criterion needs logits). It is
trained with softmax cross-entropy by SGD (learning rate 0.01, Keras 2 ``decay``
1e-6, momentum 0.9, Nesterov), batch 128, 50 epochs.
"""

import keras

from autoencoders._common import check_input_shape, kernel_initializer

VARIANTS = ("auto", "mnist", "cifar")

# (filters of the first block, filters of the second block, dense units).
_WIDTHS = {"mnist": (32, 64, 200), "cifar": (64, 128, 256)}

# Smallest height/width the stack accepts: two valid 3x3 convs (-4), pool (/2),
# two more (-4) and a pool leave at least 1 pixel.
MIN_SIZE = 14

DEFAULT_LEARNING_RATE = 0.01
DEFAULT_DECAY = 1e-6
DEFAULT_MOMENTUM = 0.9


def build_classifier(input_shape, num_classes=10, seed=None, variant="auto"):
    """Builds the compiled Carlini-Wagner classifier (logits output).

    Args:
        input_shape: ``(height, width, channels)`` of one sample, height and width at
            least 14 (MNIST: ``(28, 28, 1)``, CIFAR-10: ``(32, 32, 3)``).
        num_classes: Number of classes (the width of the logits), >= 2.
        seed: Integer seed of the weight initializers and of the dropout layer, or
            ``None``.
        variant: ``"mnist"`` (conv 32-32, 64-64, dense 200-200), ``"cifar"`` (conv
            64-64, 128-128, dense 256-256) or ``"auto"``: ``"mnist"`` for one-channel
            inputs, ``"cifar"`` for colour ones.

    Returns:
        A ``keras.Model`` named ``cw_mnist`` or ``cw_cifar``, compiled with SGD
        (learning rate 0.01 with the Keras 2 decay 1e-6 as an ``InverseTimeDecay``,
        momentum 0.9, Nesterov),
        ``SparseCategoricalCrossentropy(from_logits=True)`` and accuracy; train it
        with ``model.fit(x, y, batch_size=128, ...)`` (integer labels).

    Raises:
        ValueError: for an invalid ``input_shape``, ``num_classes`` or ``variant``.

    Example:

    >>> model = build_classifier((28, 28, 1), seed=0)
    >>> model.output_shape
    (None, 10)
    """
    input_shape = check_input_shape(input_shape, "classifier")
    if len(input_shape) != 3:
        raise ValueError(
            "The classifier needs input_shape=(height, width, channels). "
            f"Received: input_shape={input_shape}"
        )
    if min(input_shape[:2]) < MIN_SIZE:
        raise ValueError(
            f"The Carlini-Wagner classifier needs images of at least {MIN_SIZE}x{MIN_SIZE} "
            "(four valid 3x3 convolutions and two 2x2 poolings). Received: "
            f"input_shape={input_shape}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}. Received: variant={variant!r}")
    if variant == "auto":
        variant = "mnist" if input_shape[-1] == 1 else "cifar"
    first, second, units = _WIDTHS[variant]

    inputs = keras.Input(shape=input_shape, name="x")
    h = inputs
    for i, filters in enumerate((first, first, second, second)):
        h = keras.layers.Conv2D(filters, (3, 3), activation="relu",
                                kernel_initializer=kernel_initializer(seed, i),
                                name=f"conv{i + 1}")(h)
        if i % 2:
            h = keras.layers.MaxPooling2D((2, 2), name=f"pool{i // 2 + 1}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_initializer(seed, 4),
                           name="dense1")(h)
    h = keras.layers.Dropout(0.5, seed=seed, name="dropout")(h)
    h = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_initializer(seed, 5),
                           name="dense2")(h)
    logits = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer(seed, 6),
                                name="logits")(h)
    model = keras.Model(inputs, logits, name=f"cw_{variant}")
    # Keras 2's ``decay`` scaled the rate by 1 / (1 + decay * iterations).
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        DEFAULT_LEARNING_RATE, decay_steps=1, decay_rate=DEFAULT_DECAY
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=DEFAULT_MOMENTUM, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
