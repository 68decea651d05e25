"""Content hashes that identify inputs and results in configs and provenance."""

import hashlib

import numpy as np


def file_sha256(path):
    """Returns the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def array_sha256(*arrays):
    """Returns the hex sha256 of the bytes of ``arrays``, in order (C order each)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
