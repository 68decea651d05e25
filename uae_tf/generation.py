"""UAE generation over whole datasets: batched, written to disk as it goes, resumable.

:func:`generate` attacks every sample of an array with the MinMax attack (or makes
one of the paper's baseline augmentations, ``method="l2"`` or ``"gaussian"``) and
keeps its results in a directory::

    OUT/config.json          what produced the results (refused if it changes)
    OUT/chunks/NNNNNNNN.npz  one file per finished batch, written atomically
    OUT/uae.npz              all results, in dataset order (when complete)
    OUT/summary.json         n, asr, mean_mi, seconds, samples_per_second, config, versions

A run that is killed loses at most the batch in flight: run it again with the same
arguments and it attacks only the samples no chunk holds. Each sample's randomness
depends on ``(seed, index)`` only, so the resumed run ends with what an
uninterrupted run gives, whatever the batch size.
"""

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from uae_tf import _validation
from uae_tf._io import write_json_atomic, write_npz_atomic
from uae_tf._provenance import versions
from uae_tf.attacks import GaussianAugmentation, MinMaxAttack
from uae_tf.criteria import ReconstructionCriterion
from uae_tf.presets import get_preset

RESULT_KEYS = ("x_adv", "success", "mi", "f", "index")
METHODS = ("mine", "l2", "gaussian")
_FORMAT = "uae-tf/generation/v1"


class ConfigMismatchError(ValueError):
    """Raised when a results directory holds results made with another config."""


def _read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable {what} JSON file: {error}") from error


def check_config(out, config, format=_FORMAT):
    """Writes ``config`` to ``out/config.json``, or checks it matches the one there.

    ``format`` names the kind of directory (a generation, an experiment...); a
    ``config.json`` of another kind is refused.

    Raises:
        ConfigMismatchError: if ``out`` holds results of a different config, naming
            the keys that differ.
        ValueError: if ``out/config.json`` is corrupt or not ours.
    """
    path = Path(out) / "config.json"
    if not path.exists():
        write_json_atomic(path, {"format": format, "config": config})
        return
    stored = _read_json(path, "generation config")
    if not isinstance(stored, dict) or stored.get("format") != format:
        raise ValueError(
            f"{path} is not a uae-tf config of format {format!r}; "
            "choose an empty --out directory."
        )
    old = json.loads(json.dumps(stored["config"]))
    new = json.loads(json.dumps(config))
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
        raise ConfigMismatchError(
            f"{out} holds results of another configuration ({diff}). Use a new --out "
            "directory, or rerun with the original arguments to resume."
        )


def _load_chunks(chunk_dir, n):
    chunks = []
    for path in sorted(Path(chunk_dir).glob("*.npz")):
        try:
            with np.load(path) as data:
                chunk = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(
                f"{path} is corrupt ({error}); delete it and rerun to regenerate its samples."
            ) from error
        missing = {"position", "seconds", *RESULT_KEYS} - set(chunk)
        if missing or np.any(chunk["position"] >= n):
            raise ValueError(f"{path} is not a chunk of this run (missing {sorted(missing)}).")
        chunks.append(chunk)
    return chunks


def generate(
    model,
    x,
    out,
    indices=None,
    method="mine",
    preset="fast",
    view="auto",
    batch_size=None,
    seed=0,
    verbose=True,
    config=None,
    **attack_kwargs,
):
    """Generates one UAE (or baseline augmentation) per sample of ``x``, resumably.

    Args:
        model: The autoencoder Phi (a Keras model), attacked with its
            reconstruction criterion.
        x: ``[N, ...]`` samples in [0, 1].
        out: Results directory (created if missing).
        indices: ``[N]`` dataset rows of the samples (stored in ``uae.npz`` as
            ``index`` and used as the samples' seeds); default ``range(N)``.
        method: ``"mine"`` (MINE-UAE, the method), ``"l2"`` (the L2-UAE baseline:
            MinMax maximizing the reconstruction loss) or ``"gaussian"`` (GA:
            ``x + N(0, sigma^2)`` clipped; pass ``sigma``, default 0.01).
        preset: ``"paper"`` or ``"fast"`` (see :mod:`uae_tf.presets`); unused by
            ``"gaussian"``.
        view: ``"auto"``, ``"conv"`` or ``"random"`` (``"mine"`` only).
        batch_size: Samples attacked at once; does not change the results.
            Default 32 with a GPU, else 1.
        seed: Run seed.
        verbose: Show a progress bar.
        config: Extra JSON-serializable facts identifying the run (dataset, split,
            model file hash...), stored in and checked against ``config.json``.
        **attack_kwargs: Overrides of the preset's attack settings (e.g.
            ``initial_perturbation="glorot"``; ``similarity={"mine_steps": 2}``
            overrides entries of the preset's similarity), or ``sigma`` for
            ``"gaussian"``.

    Returns:
        The summary dict written to ``out/summary.json``. Its ``asr`` is the
        fraction of samples whose result is a UAE (for GA: by chance).
    """
    x = _validation.check_images(x, "x")
    n = len(x)
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) != n:
        raise ValueError(f"indices must have {n} entries. Received {len(indices)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    criterion = ReconstructionCriterion(model)
    if method == "gaussian":
        unknown = set(attack_kwargs) - {"sigma"}
        if unknown:
            raise ValueError(f"method='gaussian' takes only sigma. Received: {sorted(unknown)}")
        batch_size = batch_size or 256
        attack = GaussianAugmentation(criterion, batch_size=batch_size, seed=seed, **attack_kwargs)
        preset = None
    else:
        if batch_size is None:
            batch_size = _validation.default_batch_size()
        settings = get_preset(preset)
        similarity = {**settings["similarity"], **attack_kwargs.pop("similarity", {}), "view": view}
        settings.update(attack_kwargs, similarity=similarity if method == "mine" else "l2")
        attack = MinMaxAttack(criterion, batch_size=batch_size, seed=seed, verbose=False,
                              **settings)
    run_config = {
        **(config or {}),
        "method": method,
        "preset": preset,
        "n": n,
        "indices_sha": _array_digest(indices),
        "attack": {k: v for k, v in attack.get_config().items() if k != "jit_compile"},
    }
    out = Path(out)
    chunk_dir = out / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    check_config(out, run_config)

    chunks = _load_chunks(chunk_dir, n)
    done = np.zeros(n, bool)
    for chunk in chunks:
        done[chunk["position"]] = True
    todo = np.flatnonzero(~done)
    progbar = None
    if verbose and len(todo):
        import keras

        progbar = keras.utils.Progbar(n, unit_name="sample")
        progbar.update(int(done.sum()))
    for start in range(0, len(todo), batch_size):
        positions = todo[start : start + batch_size]
        began = time.perf_counter()
        result = attack(x[positions], indices=indices[positions])
        seconds = time.perf_counter() - began
        chunk = {
            "position": positions,
            "index": indices[positions],
            "x_adv": result.x_adv,
            "success": result.success,
            "mi": result.mi,
            "f": result.f,
            "mi_history": result.mi_history,
            "c_history": result.c_history,
            "seconds": np.float64(seconds),
        }
        write_npz_atomic(chunk_dir / f"{positions[0]:08d}.npz", **chunk)
        chunks.append(chunk)
        if progbar is not None:
            progbar.update(int(positions[-1]) + 1, [("asr", result.attack_success_rate)])

    return _finish(out, chunks, n, run_config)


def _finish(out, chunks, n, run_config):
    order = np.argsort(np.concatenate([c["position"] for c in chunks]))
    joined = {
        key: np.concatenate([c[key] for c in chunks])[order]
        for key in (*RESULT_KEYS, "mi_history", "c_history")
    }
    write_npz_atomic(out / "uae.npz", **joined)
    seconds = float(sum(float(c["seconds"]) for c in chunks))
    summary = {
        "n": n,
        "asr": float(np.mean(joined["success"])),
        "mean_mi": _mean_or_none(joined["mi"]),
        "mean_mi_successful": _mean_or_none(joined["mi"][joined["success"]]),
        "seconds": seconds,
        "samples_per_second": n / seconds if seconds > 0 else None,
        "config": run_config,
        "versions": versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    return summary


def load_summary(out):
    """Loads ``out/summary.json`` of a finished generation (its ``config`` names the method).

    Raises:
        FileNotFoundError: if the directory holds no finished generation.
        ValueError: if the file is corrupt or not a uae-tf generation summary.
    """
    path = Path(out) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `uae generate` into {out} first.")
    summary = _read_json(path, "generation summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise ValueError(f"{path} is not a uae-tf generation summary (no config).")
    return summary


def _mean_or_none(values):
    """Mean as a float, or None (JSON null) when empty or undefined (GA's NaN MI)."""
    return float(np.mean(values)) if len(values) and np.all(np.isfinite(values)) else None


def load_results(out):
    """Loads ``out/uae.npz`` as an :class:`AttackResult`-like dict plus ``index``.

    Raises:
        FileNotFoundError: if the directory holds no finished generation.
        ValueError: if the file is corrupt or not a uae-tf results file.
    """
    path = Path(out) / "uae.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `uae generate` into {out} first.")
    try:
        with np.load(path) as data:
            results = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} is not a readable uae-tf results file: {error}") from error
    missing = set(RESULT_KEYS) - set(results)
    if missing:
        raise ValueError(f"{path} is not a uae-tf results file: it lacks {sorted(missing)}.")
    return results


def _array_digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
