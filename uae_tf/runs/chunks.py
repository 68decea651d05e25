"""The chunk-and-resume engine: an attack over N samples, written chunk by chunk.

A run directory holds::

    DIR/config.json          what produced the results (refused if it changes)
    DIR/chunks/NNNNNNNN.npz  one file per finished chunk, written atomically

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
"""

import time
from pathlib import Path

import keras
import numpy as np

from uae_tf._io import write_npz_atomic
from uae_tf.attacks.base import AttackResult
from uae_tf.runs.config import check_config

CHUNKS_FORMAT = "uae-tf/generation/v1"
_FIELDS = tuple(AttackResult.__dataclass_fields__)
_CHUNK_KEYS = {"position", "index", "seconds", *_FIELDS}


def attack_in_chunks(attack, x, out, config, chunk_size, indices=None, labels=None,
                     verbose=False, positions=None):
    """Runs ``attack`` on ``x`` chunk by chunk, resuming from the chunks in ``out``.

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
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of another config.
        ValueError: if a chunk file is corrupt or not of this run, naming it.
    """
    n = len(x)
    indices = np.arange(n) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    if len(indices) != n:
        raise ValueError(f"indices must have {n} entries. Received {len(indices)}")
    out = Path(out)
    chunk_dir = out / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    check_config(out, config, format=CHUNKS_FORMAT)

    mine = np.ones(n, bool)
    if positions is not None:
        positions = np.asarray(positions, np.int64).reshape(-1)
        if np.any((positions < 0) | (positions >= n)):
            raise ValueError(f"positions must lie in [0, {n}). Received {positions}")
        mine = np.zeros(n, bool)
        mine[positions] = True
    chunks = _load_chunks(chunk_dir, indices)
    done = _done(chunks, n)
    todo = np.flatnonzero(mine & ~done)
    progbar = None
    if verbose and len(todo):
        progbar = keras.utils.Progbar(int(mine.sum()), unit_name="sample")
        progbar.update(int((mine & done).sum()))
    for start in range(0, len(todo), chunk_size):
        chunk_positions = todo[start : start + chunk_size]
        began = time.perf_counter()
        result = attack(x[chunk_positions],
                        labels=None if labels is None else labels[chunk_positions],
                        indices=indices[chunk_positions])
        chunk = {
            "position": chunk_positions,
            "index": indices[chunk_positions],
            **{k: getattr(result, k) for k in _FIELDS},
            "seconds": np.float64(time.perf_counter() - began),
        }
        write_npz_atomic(chunk_dir / f"{chunk_positions[0]:08d}.npz", **chunk)
        chunks.append(chunk)
        done[chunk_positions] = True
        if progbar is not None:
            progbar.update(int((mine & done).sum()), [("asr", result.attack_success_rate)])
    if not done.all():
        # Other shards may have finished theirs meanwhile.
        chunks = _load_chunks(chunk_dir, indices)
        done = _done(chunks, n)
    seconds = float(sum(float(c["seconds"]) for c in chunks))
    if not done.all():
        return None, seconds
    # One entry per position: a sample in two chunks (overlapping shardings of one
    # run) is the same sample with the same seed; the first is kept.
    _, first = np.unique(np.concatenate([c["position"] for c in chunks]), return_index=True)
    result = AttackResult(**{k: np.concatenate([c[k] for c in chunks])[first] for k in _FIELDS})
    return result, seconds


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


def _done(chunks, n):
    done = np.zeros(n, bool)
    for chunk in chunks:
        done[chunk["position"]] = True
    return done


def _load_chunks(chunk_dir, indices):
    chunks = []
    for path in sorted(Path(chunk_dir).glob("*.npz")):
        try:
            with np.load(path) as data:
                chunk = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(
                f"{path} is corrupt ({error}); delete it and rerun to redo its samples."
            ) from error
        missing = _CHUNK_KEYS - set(chunk)
        position = chunk.get("position", np.zeros(0, np.int64))
        if (missing or np.any(position >= len(indices))
                or not np.array_equal(chunk["index"], indices[position])):
            raise ValueError(
                f"{path} is not a chunk of this run (missing {sorted(missing)}, or other samples)."
            )
        chunks.append(chunk)
    return chunks
