"""Input checks shared by the attacks, generation and training: errors name the value."""

import numpy as np


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
        actual = arr.shape[1:]
        if len(expected) != len(actual) or any(
            e is not None and e != a for e, a in zip(expected, actual)
        ):
            raise ValueError(
                f"{name} samples must have shape {expected} (the model's input). "
                f"Received shape={arr.shape}"
            )
    return arr


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
    """Returns ``seed`` as int, or raises a ValueError naming it unless it is an integer >= 0."""
    return check_non_negative_int(seed, name)


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

