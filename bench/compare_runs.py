"""Where two runs of one experiment diverge: issue 10, point 6 ("numbers that travel").

Two runs of ``uae reproduce table4`` (or ``uae demo``) with the same config give the
same figures on one machine. On two machines, or on one machine with another float
arithmetic (``TF_ENABLE_ONEDNN_OPTS=0`` against the default, another thread count),
they do not. This script takes the two run directories and prints, stage by stage,
how far apart they are:

1. ``original``: the test error of the autoencoder trained on the originals (no
   attack involved) and the largest weight difference;
2. per augmentation (``mine-uae``, ``l2-uae``, ``start-only``, ``ga-*``): the largest
   difference of the returned examples, how many success flags differ, the largest
   MI difference among samples that succeed in both, and the ASRs;
3. per row: the test reconstruction errors and their relative gap.

Usage::

    TF_ENABLE_ONEDNN_OPTS=1 uae demo --out runs/demo-a
    TF_ENABLE_ONEDNN_OPTS=0 uae demo --out runs/demo-b
    python bench/compare_runs.py runs/demo-a runs/demo-b
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import autoencoders  # noqa: E402,F401  (registers the autoencoders' custom objects)
from uae_tf.generation import load_results  # noqa: E402


def _report(run):
    path = Path(run) / "report.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: is {run} a finished table4 or demo run?")
    return json.loads(path.read_text())


def _weights_gap(a, b):
    """The largest absolute difference over all weights of two .keras files."""
    wa = keras.saving.load_model(a, compile=False).get_weights()
    wb = keras.saving.load_model(b, compile=False).get_weights()
    return max(float(np.max(np.abs(x - y))) for x, y in zip(wa, wb))


def compare(run_a, run_b):
    """Prints the stage-by-stage comparison of two table4 run directories."""
    report_a, report_b = _report(run_a), _report(run_b)
    if report_a["config"] != report_b["config"]:
        print("warning: the two runs have different configs; the comparison mixes causes")
    seeds = sorted(p.name for p in Path(run_a).glob("seed-*") if (Path(run_b) / p.name).is_dir())
    for seed in seeds:
        a, b = Path(run_a) / seed, Path(run_b) / seed
        print(f"== {seed}")
        gap = _weights_gap(a / "original" / "model.keras", b / "original" / "model.keras")
        print(f"original model: largest weight difference {gap:.3g}")
        for method_dir in sorted((a / "augment").iterdir()):
            other = b / "augment" / method_dir.name
            if not other.is_dir():
                continue
            ra, rb = load_results(method_dir), load_results(other)
            both = ra.success & rb.success
            mi_gap = (float(np.nanmax(np.abs(ra.mi[both] - rb.mi[both])))
                      if both.any() and not np.all(np.isnan(ra.mi)) else float("nan"))
            print(
                f"{method_dir.name:>12}: largest |x_adv difference| "
                f"{float(np.max(np.abs(ra.x_adv - rb.x_adv))):.3g}, success flags differing "
                f"{int(np.sum(ra.success != rb.success))}/{len(ra.success)}, largest MI "
                f"difference where both succeed {mi_gap:.3g}, ASR "
                f"{ra.attack_success_rate:.1%} / {rb.attack_success_rate:.1%}"
            )
    print("== rows (mean over seeds): test reconstruction error A, B, relative gap")
    rows_b = {row["method"]: row for row in report_b["rows"]}
    for row in report_a["rows"]:
        other = rows_b.get(row["method"])
        if other is None:
            continue
        ea, eb = row["test_error"], other["test_error"]
        print(f"{row['method']:>20}: {ea:.5f}  {eb:.5f}  {100 * abs(ea - eb) / ea:.1f}%")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", help="a table4 or demo run directory")
    parser.add_argument("run_b", help="another run of the same config")
    args = parser.parse_args()
    compare(args.run_a, args.run_b)


if __name__ == "__main__":
    main()
