"""Result files: written atomically (a reader never sees a half-written file), read
back by one reader that names a corrupt file, and directories checked writable
before the work that fills them."""

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _naming(error, path):
    """``error`` as an OSError that names ``path`` (a full disk's error names no file)."""
    if isinstance(error, OSError) and not error.filename and error.errno is not None:
        return OSError(error.errno, f"cannot write {path}: {error.strerror}")
    return error


def _atomic(path, mode, write):
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        # mkstemp creates owner-only files; give the result the usual permissions.
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        named = _naming(error, path)
        if named is error:
            raise
        raise named from error


def _write_json(f, obj):
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")


def write_json_atomic(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically (temp file, then rename)."""
    _atomic(path, "w", lambda f: _write_json(f, obj))


def write_text_atomic(path, text):
    """Writes the string ``text`` to ``path`` atomically (temp file, then rename)."""
    _atomic(path, "w", lambda f: f.write(text))


def create_json_exclusive(path, obj):
    """Writes ``obj`` as JSON to ``path`` only if no file is there, atomically.

    Of several processes creating the same file at once exactly one succeeds, and
    the file is complete when it appears (temp file, then a hard link, which fails
    when ``path`` exists). Returns ``True`` if this call created it.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(fd, "w") as f:
            _write_json(f, obj)
        os.chmod(tmp, _umask_mode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    except OSError as error:
        raise _naming(error, path) from error
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_npz_atomic(path, **arrays):
    """Writes ``arrays`` to the ``.npz`` file ``path`` atomically."""
    _atomic(path, "wb", lambda f: np.savez(f, **arrays))


def save_keras_atomic(model, path):
    """Saves the Keras ``model`` to the ``.keras`` file ``path`` via a temp file and a rename.

    Raises:
        OSError: if the file cannot be written (a full disk...), naming ``path``.
    """
    path = Path(path)
    # Keras needs the .keras suffix; the process id keeps concurrent writers apart.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise _naming(error, path) from error
    finally:
        tmp.unlink(missing_ok=True)


def read_npz(path, recover):
    """Reads every array of the ``.npz`` file ``path``: the one reader of the files we write.

    Each member is read whole, so zip's CRC-32 checks every byte of it (``np.load``
    stops where the array's header says the data ends, and a flipped bit in that
    header would go unnoticed), and must hold exactly the array its header
    announces. A truncated, bit-flipped or foreign file fails in many ways inside
    ``zipfile``, ``zlib`` and numpy (``BadZipFile``, ``zlib.error``, ``EOFError``, a
    bad CRC, a pickled array...); each becomes one ``ValueError`` that names the file
    and says how to recover.

    Args:
        path: The ``.npz`` file.
        recover: What to do about a corrupt file, e.g. ``"delete it and rerun to
            redo its samples"``.

    Returns:
        A dict of the file's arrays, read into memory.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if it is not a readable ``.npz`` file, naming it and ``recover``.
    """
    try:
        arrays = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                data = io.BytesIO(archive.read(name))  # The whole member: CRC-checked.
                array = np.lib.format.read_array(data, allow_pickle=False)
                if data.tell() != len(data.getbuffer()):
                    raise ValueError(f"{name} holds more bytes than its array")
                arrays[name.removesuffix(".npy")] = array
        return arrays
    except FileNotFoundError:
        raise
    except Exception as error:  # A corrupt archive fails in many ways, all alike to us.
        raise ValueError(
            f"{path} is corrupt ({type(error).__name__}: {error}); {recover}."
        ) from error


def make_writable_dir(path):
    """Creates directory ``path`` if missing and checks a file can be written in it.

    Called before long work whose results go to ``path``, so that a read-only or
    full location fails in seconds, not after the training it would have held.

    Args:
        path: The directory.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: if the directory cannot be created or written to, naming it.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"\0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OSError(error.errno, f"cannot write to {path}: {error.strerror}") from error
    return path
