"""Versions and environment facts recorded next to every result."""

import platform
import sys


def versions():
    """Returns the versions of Python and the packages that produce results.

    Returns:
        A JSON-serializable dict, e.g. ``{"python": "3.11.7", "tensorflow": ...}``.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from uae_tf import __version__

    return {
        "uae_tf": __version__,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
