"""Atomic file writes: a reader never sees a half-written result file."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path, mode, write):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        # mkstemp creates owner-only files; give the result the usual permissions.
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically (temp file, then rename)."""

    def write(f):
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")

    _atomic(path, "w", write)


def write_npz_atomic(path, **arrays):
    """Writes ``arrays`` to the ``.npz`` file ``path`` atomically."""
    _atomic(path, "wb", lambda f: np.savez(f, **arrays))
