"""The chunk-and-resume engine: an attack over N samples, written chunk by chunk.

A run directory holds::

    DIR/config.json          what produced the results (refused if it changes)
    DIR/chunks/NNNNNNNN.npz  one file per finished chunk, written atomically, carrying
                             the run's identity (config_sha256 of config.json's config)

A chunk is used only by the run that made it: one whose identity is another's
(copied from another run) is refused, naming the file, and so is a directory with
chunks but no ``config.json`` (nothing says what made them). Chunks written before
chunks carried an identity are accepted in a directory whose ``config.json`` is
there and matches, as they were then.

A run that is killed loses at most the chunk in flight: called again with the same
config, :func:`attack_in_chunks` attacks only the samples no chunk holds. The
attacks seed each sample from ``(seed, index)``, so the resumed run ends with what
an uninterrupted run gives, whatever the chunk size.

Shards: several processes (on one machine, or on many sharing a filesystem) may
attack disjoint ``positions`` of one run into the same directory at the same time
(:func:`shard_positions`). Chunk files are written atomically and named by their
first sample, which no other shard of the same count attacks; the config is created
exclusively (the first shard writes it, the others are checked against it); a
sample found in two chunks (shardings of different counts) is the same sample with
the same seed, and the first is kept. Whichever call finds every sample done
returns the whole result.

Engines: :func:`attack_in_chunks` is the local engine, one process. Its pieces are
public so that other engines run the same code on the same files:
:func:`pending_chunks` (open the run, list the chunks to attack), :func:`attack_chunk`
(attack one and write its file, idempotently) and :func:`merge_chunks` (the whole
result once every sample is done). :mod:`uae_tf.runs.ray_engine` runs the chunks on
Ray actors.
"""

import time
from pathlib import Path

import keras
import numpy as np

from uae_tf._io import read_npz, write_npz_atomic
from uae_tf.attacks.base import AttackResult
from uae_tf.runs._barrier import wait_before_writing
from uae_tf.runs.config import check_config, config_sha256, read_config

CHUNKS_FORMAT = "uae-tf/generation/v1"
CHUNKS_DIR = "chunks"
# The key of a chunk file (and of ``uae.npz``) holding its run's config_sha256.
IDENTITY_KEY = "config_sha256"
_FIELDS = tuple(AttackResult.__dataclass_fields__)
_CHUNK_KEYS = {"position", "index", "seconds", *_FIELDS}
_REDO = "delete it and rerun to redo its samples"


def attack_in_chunks(attack, x, out, config, chunk_size, indices=None, labels=None,
                     verbose=False, positions=None):
    """Runs ``attack`` on ``x`` chunk by chunk, resuming from the chunks in ``out``.

    The local engine: :func:`pending_chunks`, then :func:`attack_chunk` on each, then
    :func:`merge_chunks`, in this process. :func:`uae_tf.runs.ray_engine.attack_on_ray`
    runs the same pieces on Ray actors.

    Args:
        attack: A callable ``attack(x, labels=..., indices=...) -> AttackResult``.
        x: ``[N, ...]`` samples.
        out: The run directory (created if missing).
        config: JSON-serializable facts identifying the run, checked against
            ``out/config.json``.
        chunk_size: Samples per chunk file; does not change the results.
        indices: ``[N]`` dataset rows of the samples (their seeds); default
            ``range(N)``.
        labels: ``[N]`` labels for supervised attacks, or ``None``.
        verbose: Show a progress bar.
        positions: The positions in ``x`` this call attacks (a shard, see
            :func:`shard_positions`); default all.

    Returns:
        ``(result, seconds)``: the :class:`AttackResult` of all N samples in their
        order, and the wall time spent attacking, summed over the chunks (earlier
        runs and other shards included). ``result`` is ``None`` while samples
        outside ``positions`` have no chunk yet (another shard's work).

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of another config,
            or chunks without a ``config.json``.
        ValueError: if a chunk file is corrupt or not of this run, naming it.
    """
    n = len(x)
    indices = _check_indices(indices, n)
    chunks, done, mine = _open_run(out, config, indices, positions)
    progbar = None
    if verbose and np.any(mine & ~done):
        progbar = keras.utils.Progbar(int(mine.sum()), unit_name="sample")
        progbar.update(int((mine & done).sum()))
    for chunk_positions in _split(np.flatnonzero(mine & ~done), chunk_size):
        chunk = attack_chunk(attack, x, chunk_positions, out, indices=indices, labels=labels)
        chunks.append(chunk)
        done[chunk_positions] = True
        if progbar is not None:
            progbar.update(int((mine & done).sum()), [("asr", chunk["success"].mean())])
    if not done.all():
        # Other shards may have finished theirs meanwhile.
        return merge_chunks(out, indices)
    return _merge(chunks, n)


def pending_chunks(out, config, chunk_size, indices, positions=None):
    """Opens run directory ``out`` and returns the chunks still to attack.

    Checks ``config`` against ``out/config.json`` (writing it on the first call),
    reads the chunk files there, and splits the samples of ``positions`` that no
    chunk holds into chunks of ``chunk_size``, as :func:`attack_in_chunks` attacks
    them: engines that run the chunks elsewhere (:mod:`uae_tf.runs.ray_engine`) write
    the same chunk files.

    Args:
        out: The run directory (created if missing).
        config: JSON-serializable facts identifying the run.
        chunk_size: Samples per chunk.
        indices: ``[N]`` dataset rows of the run's N samples.
        positions: The positions to attack (a shard); default all N.

    Returns:
        A list of int64 position arrays, one per chunk, in order.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of another config,
            or chunks without a ``config.json``.
        ValueError: if a chunk file is corrupt or not of this run, naming it.
    """
    indices = _check_indices(indices, None)
    _, done, mine = _open_run(out, config, indices, positions)
    return list(_split(np.flatnonzero(mine & ~done), chunk_size))


def attack_chunk(attack, x, positions, out, indices=None, labels=None):
    """Attacks the samples of ``x`` at ``positions`` and writes them as one chunk file.

    The file is ``out/chunks/NNNNNNNN.npz``, named by the first position, written
    atomically and stamped with the run's identity (from ``out/config.json``).
    Idempotent: if that file already holds these positions of this run (a retried
    task, a rerun), it is returned without attacking again.

    Args:
        attack: A callable ``attack(x, labels=..., indices=...) -> AttackResult``.
        x: ``[N, ...]`` samples of the run.
        positions: The chunk's positions in ``x`` (one entry of
            :func:`pending_chunks`).
        out: The run directory, opened by :func:`pending_chunks` or
            :func:`attack_in_chunks`.
        indices: ``[N]`` dataset rows of the samples (their seeds); default
            ``range(N)``.
        labels: ``[N]`` labels for supervised attacks, or ``None``.

    Returns:
        The chunk: a dict of ``position``, ``index``, the :class:`AttackResult`
        fields for these samples, ``seconds`` (the attack's wall time) and the
        run's ``config_sha256``.
    """
    indices = _check_indices(indices, len(x))
    positions = np.asarray(positions, np.int64).reshape(-1)
    identity = _identity(out)
    path = Path(out) / CHUNKS_DIR / f"{positions[0]:08d}.npz"
    existing = _existing_chunk(path, positions, indices, identity)
    if existing is not None:
        return existing
    began = time.perf_counter()
    result = attack(x[positions], labels=None if labels is None else labels[positions],
                    indices=indices[positions])
    chunk = {
        "position": positions,
        "index": indices[positions],
        **{k: getattr(result, k) for k in _FIELDS},
        "seconds": np.float64(time.perf_counter() - began),
        IDENTITY_KEY: np.asarray(identity),
    }
    wait_before_writing(path)  # A test's pause; nothing otherwise.
    write_npz_atomic(path, **chunk)
    return chunk


def merge_chunks(out, indices):
    """Reads the chunk files of run ``out`` into one result, if every sample is done.

    Args:
        out: The run directory.
        indices: ``[N]`` dataset rows of the run's N samples.

    Returns:
        ``(result, seconds)`` as :func:`attack_in_chunks` returns them: the
        :class:`AttackResult` of all N samples in order (``None`` while some sample
        has no chunk), and the attack time summed over the chunks.

    Raises:
        ValueError: if a chunk file is corrupt or not of this run, naming it.
    """
    indices = _check_indices(indices, None)
    return _merge(_load_chunks(Path(out) / CHUNKS_DIR, indices, _identity(out)), len(indices))


def shard_positions(n, shard, num_shards):
    """The positions of shard ``shard`` of ``num_shards`` of an ``n``-sample run.

    Every ``num_shards``-th sample from ``shard`` on (``shard, shard + num_shards,
    ...``): deterministic, disjoint across shards, together covering all ``n``,
    balanced in size. Results do not depend on the sharding: each sample is seeded
    from its index.

    Args:
        n: Samples in the run.
        shard: This shard, ``0 <= shard < num_shards``.
        num_shards: How many shards the run is split into.

    Returns:
        The shard's positions, int64, ascending.
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) \
            or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int. Received: {num_shards!r}")
    if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) \
            or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be an int in [0, {num_shards}). Received: {shard!r}")
    return np.arange(shard, n, num_shards, dtype=np.int64)


def _check_indices(indices, n):
    """``indices`` as int64 ``[n]`` (default ``range(n)``), or a ValueError."""
    if indices is None:
        return np.arange(n)
    indices = np.asarray(indices, np.int64).reshape(-1)
    if n is not None and len(indices) != n:
        raise ValueError(f"indices must have {n} entries. Received {len(indices)}")
    return indices


def _open_run(out, config, indices, positions):
    """Checks the config of run ``out``; returns its chunks, done mask and positions mask."""
    n = len(indices)
    chunk_dir = Path(out) / CHUNKS_DIR
    chunk_dir.mkdir(parents=True, exist_ok=True)
    identity = check_config(out, config, format=CHUNKS_FORMAT,
                            results=sorted(chunk_dir.glob("*.npz")))
    mine = np.ones(n, bool)
    if positions is not None:
        positions = np.asarray(positions, np.int64).reshape(-1)
        if np.any((positions < 0) | (positions >= n)):
            raise ValueError(f"positions must lie in [0, {n}). Received {positions}")
        mine = np.zeros(n, bool)
        mine[positions] = True
    chunks = _load_chunks(chunk_dir, indices, identity)
    return chunks, _done(chunks, n), mine


def _identity(out):
    """The identity of the run in ``out``: config_sha256 of its ``config.json``'s config."""
    return config_sha256(read_config(out, CHUNKS_FORMAT, what="an opened run directory"))


def _split(todo, chunk_size):
    """Splits the positions ``todo`` into consecutive chunks of ``chunk_size``."""
    return (todo[start : start + chunk_size] for start in range(0, len(todo), chunk_size))


def _merge(chunks, n):
    """``(result, seconds)`` of ``chunks``: result ``None`` unless they hold all ``n``."""
    seconds = float(sum(float(c["seconds"]) for c in chunks))
    if not _done(chunks, n).all():
        return None, seconds
    # One entry per position: a sample in two chunks (overlapping shardings of one
    # run) is the same sample with the same seed; the first is kept.
    _, first = np.unique(np.concatenate([c["position"] for c in chunks]), return_index=True)
    result = AttackResult(**{k: np.concatenate([c[k] for c in chunks])[first] for k in _FIELDS})
    return result, seconds


def _done(chunks, n):
    done = np.zeros(n, bool)
    for chunk in chunks:
        done[chunk["position"]] = True
    return done


def _read_chunk(path):
    """The arrays of the chunk file ``path``, or a ValueError naming it."""
    return read_npz(path, _REDO)


def _chunk_problem(chunk, indices, identity):
    """Why ``chunk`` is not a whole chunk of the run of ``indices`` and ``identity``,
    or ``None`` if it is one."""
    missing = _CHUNK_KEYS - set(chunk)
    if missing:
        return f"it lacks {sorted(missing)}"
    made_by = chunk.get(IDENTITY_KEY)
    # A chunk without an identity predates them; the run's config.json vouches for it.
    if made_by is not None and str(made_by) != identity:
        return (f"it was made by the run of config sha256 {str(made_by)[:12]}..., this "
                f"directory's is {identity[:12]}... (copied from another run?)")
    position = chunk["position"]
    if (position.ndim != 1 or position.dtype.kind not in "iu"
            or np.any((position < 0) | (position >= len(indices)))
            or not np.array_equal(chunk["index"], indices[position])):
        return "it holds other samples than this run's"
    shapes = {k: chunk[k].shape for k in _FIELDS}
    if chunk["seconds"].ndim or any(shape[:1] != position.shape for shape in shapes.values()):
        return f"its arrays do not have one entry per sample ({shapes})"
    return None


def _existing_chunk(path, positions, indices, identity):
    """The chunk at ``path`` if it is a whole chunk of this run holding exactly
    ``positions``, else None (the caller attacks them again and replaces it)."""
    if not path.is_file():
        return None
    try:
        chunk = _read_chunk(path)
    except ValueError:
        return None  # Unreadable: attacked again and replaced.
    if (_chunk_problem(chunk, indices, identity) is None
            and np.array_equal(chunk["position"], positions)):
        return chunk
    return None


def _load_chunks(chunk_dir, indices, identity):
    """The chunks in ``chunk_dir``, each checked to be of this run and to fit the others."""
    chunks, first_path = [], None
    for path in sorted(Path(chunk_dir).glob("*.npz")):
        chunk = _read_chunk(path)
        problem = _chunk_problem(chunk, indices, identity)
        if problem is None and chunks:
            problem = _misfit(chunk, chunks[0], first_path)
        if problem is not None:
            raise ValueError(f"{path} is not a chunk of this run: {problem}; {_REDO}.")
        chunks.append(chunk)
        first_path = first_path or path
    return chunks


def _misfit(chunk, reference, reference_path):
    """How ``chunk``'s arrays differ in shape or kind from those of the run's first
    chunk ``reference`` (a chunk of another method, say), or ``None``."""
    for key in _FIELDS:
        a, b = chunk[key], reference[key]
        if a.shape[1:] != b.shape[1:] or a.dtype.kind != b.dtype.kind:
            return (f"its {key} is {a.dtype} of shape {a.shape}, where {reference_path.name} "
                    f"has {b.dtype} of shape {b.shape}")
    return None
