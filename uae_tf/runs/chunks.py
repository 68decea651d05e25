"""The chunk-and-resume engine: an attack over N samples, written chunk by chunk.

A run directory holds::

    DIR/config.json          what produced the results (refused if it changes)
    DIR/chunks/NNNNNNNN.npz  one file per finished chunk, written atomically

A run that is killed loses at most the chunk in flight: called again with the same
config, :func:`attack_in_chunks` attacks only the samples no chunk holds. The
attacks seed each sample from ``(seed, index)``, so the resumed run ends with what
an uninterrupted run gives, whatever the chunk size.
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
                     verbose=False):
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

    Returns:
        ``(result, seconds)``: the :class:`AttackResult` of all N samples in their
        order, and the wall time spent attacking, summed over the chunks (earlier
        runs included).

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

    chunks = _load_chunks(chunk_dir, indices)
    done = np.zeros(n, bool)
    for chunk in chunks:
        done[chunk["position"]] = True
    todo = np.flatnonzero(~done)
    progbar = None
    if verbose and len(todo):
        progbar = keras.utils.Progbar(n, unit_name="sample")
        progbar.update(int(done.sum()))
    for start in range(0, len(todo), chunk_size):
        positions = todo[start : start + chunk_size]
        began = time.perf_counter()
        result = attack(x[positions], labels=None if labels is None else labels[positions],
                        indices=indices[positions])
        chunk = {
            "position": positions,
            "index": indices[positions],
            **{k: getattr(result, k) for k in _FIELDS},
            "seconds": np.float64(time.perf_counter() - began),
        }
        write_npz_atomic(chunk_dir / f"{positions[0]:08d}.npz", **chunk)
        chunks.append(chunk)
        done[positions] = True
        if progbar is not None:
            progbar.update(int(done.sum()), [("asr", result.attack_success_rate)])

    order = np.argsort(np.concatenate([c["position"] for c in chunks]))
    result = AttackResult(**{k: np.concatenate([c[k] for c in chunks])[order] for k in _FIELDS})
    return result, float(sum(float(c["seconds"]) for c in chunks))


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
