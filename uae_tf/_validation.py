"""Input checks shared by the attacks, generation and training: errors name the value."""

import numpy as np

# Seeds go into the per-sample streams as int32 pairs ``(seed, index)``
# (``_seeds.sample_seeds``): a seed outside [0, 2**31) would wrap onto another one.
SEED_LIMIT = 2**31


def check_images(x, name="x", expected_shape=None):
    """Returns ``x`` as a float32 numpy array after checking it is usable data.

    Args:
        x: Array-like of samples, ``[N, ...]``.
        name: Name used in error messages.
        expected_shape: Shape of one sample the model expects (``None`` entries
            match anything), or ``None`` to skip the check.

    Raises:
        ValueError: if ``x`` is empty, not numeric, contains NaN or infinity, lies
            outside [0, 1], or does not match ``expected_shape``.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a numeric array. Received dtype={arr.dtype}")
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty batch of samples [N, ...]. Received shape={arr.shape}"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values.")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} must have values in [0, 1]. Received values in [{low:g}, {high:g}]"
            + (" (divide 8-bit images by 255)" if high > 1.0 else "")
        )
    if expected_shape is not None:
        expected = tuple(expected_shape)
        if not _matches(arr.shape[1:], expected):
            # Quoting arr.shape alone reads as the expected shape when one sample of
            # that shape comes without its batch axis.
            hint = (f"; one sample needs a batch axis: {name}[None]"
                    if _matches(arr.shape, expected) else "")
            raise ValueError(
                f"{name} must be a batch [N, {', '.join(map(str, expected))}] of samples of "
                f"shape {expected} (the model's input). Received {name}.shape={arr.shape}: "
                f"{arr.shape[0]} samples of shape {arr.shape[1:]}{hint}"
            )
    return arr


def check_reconstructs(input_shape, output_shape):
    """Raises a ValueError unless a model's output shape is its input's (an autoencoder).

    ``None`` entries (unknown sizes, the batch axis) match anything. A classifier
    passed as a reconstruction model would otherwise broadcast its logits against
    the input and return numbers that mean nothing.

    Args:
        input_shape: The model's input shape, with or without the batch axis.
        output_shape: Its output shape, in the same form.
    """
    input_shape, output_shape = tuple(input_shape), tuple(output_shape)
    if not (_matches(output_shape, input_shape) and _matches(input_shape, output_shape)):
        raise ValueError(
            "A reconstruction model must return outputs of its input's shape (an "
            f"autoencoder). Received: input shape={input_shape}, output shape={output_shape}"
        )


def _matches(shape, expected):
    """Whether ``shape`` is ``expected``, whose ``None`` entries match anything."""
    return len(shape) == len(expected) and all(
        e is None or e == a for e, a in zip(expected, shape))


def check_choice(value, choices, name):
    """Returns ``value``, or raises a ValueError naming it unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}. Received: {name}={value!r}")
    return value


def check_non_negative_int(value, name):
    """Returns ``value`` as int, or raises a ValueError naming it unless it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0. Received: {name}={value!r}")
    return int(value)


def check_seed(seed, name="seed"):
    """Returns ``seed`` as int, or raises a ValueError naming it unless ``0 <= seed < 2**31``.

    The one seed check of the library (attacks, generation, training, views, the
    command line's ``--seed``): the per-sample random streams draw from int32 seeds
    (:data:`SEED_LIMIT`), so a larger seed would silently give another seed's samples.

    Args:
        seed: The seed, an integer (a bool or a float such as ``1.0`` is refused).
        name: The argument's name in the error (``"--seed"`` on the command line).
    """
    if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
            or not 0 <= seed < SEED_LIMIT):
        raise ValueError(f"{name} must be an integer in [0, {SEED_LIMIT - 1}]. "
                         f"Received: {name}={seed!r}")
    return int(seed)


def check_positive_int(value, name):
    """Returns ``value`` as int, or raises a ValueError naming it unless it is >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def check_positive_float(value, name, upper=None):
    """Returns ``value`` as float, or raises a ValueError unless 0 < value (<= upper)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}") from None
    if not np.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        bound = f"(0, {upper:g}]" if upper is not None else "> 0"
        raise ValueError(f"{name} must be {bound}. Received: {name}={value!r}")
    return value

