"""Candidate attack settings for ``uae demo`` and the quickstart, on the demo's data and model.

For each candidate: trains the demo's ``original`` model (the paper's conv
autoencoder, E epochs on the first L embedded MNIST training digits, seed 0: what
``uae demo --limit L --epochs E`` trains; reused from ``--out`` when there) and
prints its test error, makes MINE-UAEs of
its first N training digits with :func:`uae_tf.generate` as the demo does (published
start and selection, the attack's default batch: 16 for the random view and 1 for
the conv view on a CPU, the conv view's statistics networks trained by the native
op that ``MINESimilarity(kernel="auto")`` picks on a CPU) and prints:

* ``ASR``: the published rule (f <= 0 and a positive MI estimate), the demo's;
* ``f <= 0``: the samples where some iterate met the criterion (what Algorithm 1's
  rule counts; the trajectory does not depend on the rule), so the failures split
  into "the MI estimate was never positive" and "the criterion never held";
* the mean MI of the successful samples;
* seconds per sample, wall and CPU (``time.process_time``, all threads), both
  including building the attack and tracing its loop once, as the demo pays. On a
  shared machine other jobs stretch the wall time, and the CPU time too where they
  compete for memory bandwidth (the conv view's networks stream through memory);
* the minutes the demo's MINE-UAE row takes at L digits (L x wall s/sample).

Each sample's randomness depends on its index only, so the first N digits get what
the demo gives them: with N = L the ASR is the demo's MINE-UAE row's.

Deviations from the paper are marked in the setting's description (a larger
statistics-network learning rate than the published 1.5e-5).

Usage::

    python bench/compare_demo_settings.py --out runs/demo-settings
    python bench/compare_demo_settings.py --only conv-fast --limit 64 --epochs 100 --n 64
"""

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import autoencoders  # noqa: E402
from uae_tf import _native, training  # noqa: E402
from uae_tf.generation import generate  # noqa: E402
from uae_tf.presets import get_preset  # noqa: E402
from uae_tf.reproduce._retraining import load_train_split, train_row  # noqa: E402

# name: (view, preset, overrides of the preset as generate() takes them, description).
SETTINGS = {
    "random-fast": ("random", "fast", {}, "the demo before issue 32"),
    "random-fast-T40": ("random", "fast", {"steps": 40}, "more iterations (the paper's T)"),
    "random-fast-mine20": ("random", "fast", {"similarity": {"mine_steps": 20}},
                           "more MINE steps (the paper's 20)"),
    "random-paper": ("random", "paper", {}, "T = 40, 20 MINE steps"),
    "random-fast-lr1.5e-4": ("random", "fast", {"similarity": {"learning_rate": 1.5e-4}},
                             "MINE lr x10 (deviation)"),
    "random-fast-lr1.5e-3": ("random", "fast", {"similarity": {"learning_rate": 1.5e-3}},
                             "MINE lr x100 (deviation)"),
    "conv-fast": ("conv", "fast", {}, "the paper's view for a conv model"),
    "conv-paper": ("conv", "paper", {}, "the paper's settings"),
}
# (setting, L training digits, E epochs of the model, N digits attacked): the demo's
# 256 digits and 30 epochs for every setting; for the conv view (about 4 s a sample on 2
# idle cores) fewer digits, also with more epochs (on 64 digits an epoch is one
# gradient step); the `paper` preset on a few digits only.
CANDIDATES = [
    ("random-fast", 256, 30, 64),
    ("random-fast-T40", 256, 30, 32),
    ("random-fast-mine20", 256, 30, 32),
    ("random-paper", 256, 30, 16),
    ("random-fast-lr1.5e-4", 256, 30, 64),
    ("random-fast-lr1.5e-3", 256, 30, 64),
    ("conv-fast", 256, 30, 16),
    ("conv-fast", 64, 30, 16),
    ("conv-fast", 64, 100, 16),
    ("conv-fast", 64, 300, 16),
    ("conv-paper", 64, 100, 4),
]
SEED = 0


def _model(out, limit, epochs):
    """``uae demo --limit L --epochs E``'s `original` model (trained once into ``out``)."""
    train = dict(arch="conv", dataset="mnist5k", batch_size=autoencoders.default_batch_size,
                 seed=SEED, data_dir=None, limit=limit)
    directory = Path(out) / f"original-{limit}-{epochs}"
    record = train_row(functools.partial(print, file=sys.stderr), directory, epochs, train)
    return training.load_model_dir(directory)[0], record["test_reconstruction_error"]


def _measure(phi, x, setting):
    """Generates MINE-UAEs of ``x`` with ``setting`` into a temporary directory; one row."""
    view, preset, overrides, _ = SETTINGS[setting]
    with tempfile.TemporaryDirectory() as directory:
        wall, cpu = time.perf_counter(), time.process_time()
        results = generate(phi, x, directory, method="mine", preset=preset, view=view,
                           seed=SEED, verbose=False, initial_perturbation="glorot",
                           selection="published", **overrides)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        chunks = len(list((Path(directory) / "chunks").glob("*.npz")))  # One per batch.
    success, criterion_held = results.success, results.success | (results.f <= 0)
    return {
        "asr": float(success.mean()),
        "criterion_held": float(criterion_held.mean()),
        "failed_mi_not_positive": int((criterion_held & ~success).sum()),
        "failed_criterion": int((~criterion_held).sum()),
        "mean_mi_successful": float(results.mi[success].mean()) if success.any() else None,
        "wall_per_sample": wall / len(x),
        "cpu_per_sample": cpu / len(x),
        "batch_size": math.ceil(len(x) / chunks),
        "mine_kernel": results.summary["execution"]["mine_kernel"],
    }


def _updates(setting):
    """Statistics-network Adam updates per sample: T x MINE steps."""
    _, preset, overrides, _ = SETTINGS[setting]
    settings = get_preset(preset)
    mine_steps = overrides.get("similarity", {}).get("mine_steps",
                                                     settings["similarity"]["mine_steps"])
    return overrides.get("steps", settings["steps"]) * mine_steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/demo-settings",
                        help="where the trained models stay (reused when rerun)")
    parser.add_argument("--only", help="comma-separated settings to run (default: all of "
                        f"{', '.join(SETTINGS)})")
    parser.add_argument("--limit", type=int, help="L for every candidate run")
    parser.add_argument("--epochs", type=int, help="E for every candidate run")
    parser.add_argument("--n", type=int, help="N for every candidate run")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    only = None if args.only is None else args.only.split(",")
    unknown = sorted(set(only or ()) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    candidates = []
    for setting, limit, epochs, n in CANDIDATES:
        if only is None or setting in only:
            limit = args.limit or limit
            candidates.append((setting, limit, args.epochs or epochs, min(args.n or n, limit)))
    candidates = list(dict.fromkeys(candidates))

    native = "native op built" if _native.load() is not None else (
        f"native op unavailable: {_native.unavailable_reason()}")
    print(f"{os.cpu_count()} cores, {native}; each row: the demo's model for L digits and "
          "E epochs (its test error), MINE-UAEs of its first N")
    print("| setting | view | preset and changes | updates/sample | L | E | test error | N | ASR "
          "| f <= 0 | failed: MI <= 0 / f > 0 | mean MI (successful) | s/sample wall "
          "| s/sample CPU | batch | MINE kernel | MINE row at L digits, min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    x_train = load_train_split("mnist5k", None, None)
    for setting, limit, epochs, n in candidates:
        phi, test_error = _model(args.out, limit, epochs)
        row = {"setting": setting, "limit": limit, "epochs": epochs, "test_error": test_error,
               "n": n, "updates": _updates(setting), **_measure(phi, x_train[:n], setting)}
        rows.append(row)
        view, preset, overrides, description = SETTINGS[setting]
        mi = row["mean_mi_successful"]
        print(f"| {setting} | {view} | `{preset}` {json.dumps(overrides)}: {description} "
              f"| {row['updates']} | {limit} | {epochs} | {test_error:.4f} | {n} | {row['asr']:.1%} "
              f"| {row['criterion_held']:.1%} "
              f"| {row['failed_mi_not_positive']} / {row['failed_criterion']} "
              f"| {'n/a' if mi is None else f'{mi:.3f}'} | {row['wall_per_sample']:.2f} "
              f"| {row['cpu_per_sample']:.2f} | {row['batch_size']} | {row['mine_kernel']} "
              f"| {limit * row['wall_per_sample'] / 60:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "seed": SEED}, indent=2))


if __name__ == "__main__":
    main()
