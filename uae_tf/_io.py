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


def _write_json(f, obj):
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")


def write_json_atomic(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically (temp file, then rename)."""
    _atomic(path, "w", lambda f: _write_json(f, obj))


def create_json_exclusive(path, obj):
    """Writes ``obj`` as JSON to ``path`` only if no file is there, atomically.

    Of several processes creating the same file at once exactly one succeeds, and
    the file is complete when it appears (temp file, then a hard link, which fails
    when ``path`` exists). Returns ``True`` if this call created it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            _write_json(f, obj)
        os.chmod(tmp, _umask_mode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_npz_atomic(path, **arrays):
    """Writes ``arrays`` to the ``.npz`` file ``path`` atomically."""
    _atomic(path, "wb", lambda f: np.savez(f, **arrays))
