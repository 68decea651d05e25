"""Versions and environment facts recorded next to every result."""

import importlib.metadata
import platform
import sys

import keras
import numpy as np
import tensorflow as tf

_DISTRIBUTION = "uae-tf"


def _package_version():
    """The installed uae-tf version, or ``"unknown"`` when run from a source tree."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def versions():
    """Returns the versions of Python and the packages that produce results.

    Returns:
        A JSON-serializable dict, e.g. ``{"python": "3.11.7", "tensorflow": ...}``;
        ``uae_tf`` is the installed distribution's version (``"unknown"`` when the
        package is not installed).
    """
    return {
        "uae_tf": _package_version(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
