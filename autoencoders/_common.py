"""Input-shape checks and seeded initializers shared by the model builders.

Used by these autoencoders and by the classifiers of ``uae_tf.models``.
"""

import math
import operator

import keras


def check_input_shape(input_shape, model_name):
    """Returns ``input_shape`` as a tuple of positive ints, or raises a ValueError naming it."""
    try:
        shape = tuple(operator.index(d) for d in input_shape if not isinstance(d, bool))
        valid = bool(shape) and len(shape) == len(input_shape) and min(shape) > 0
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(
            f"input_shape of {model_name} must be a non-empty tuple of positive ints (the "
            f"shape of one sample, without the batch axis). Received: "
            f"input_shape={input_shape!r}"
        )
    return shape


def input_dim(input_shape):
    """Number of features of one sample of shape ``input_shape``."""
    return math.prod(input_shape)


def kernel_initializer(seed, index):
    """Glorot-uniform (the Keras default) seeded with ``seed + index``, or unseeded.

    Keras 3 initializers with an integer seed return the same values on every call,
    so each layer gets its own offset ``index``.
    """
    if seed is None:
        return "glorot_uniform"
    return keras.initializers.GlorotUniform(seed=int(seed) + index)
