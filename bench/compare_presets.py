"""Compare the ``fast`` preset with ``paper`` on the same samples.

Trains the paper's conv autoencoder on the embedded MNIST subset, attacks the first
N training digits with both presets (same seed, same samples) and prints, per
preset: attack success rate, the attack's mean MI over successful samples, the mean
L2 and L-infinity norms of the perturbations, and seconds per sample.

The two presets' MI values are each the estimate of a statistics network trained
for that preset's number of Adam steps (800 vs 100 at lr 1.5e-5), so they measure
the network's progress as much as the UAE: the column to compare across presets is
the ASR, the MI within a preset.

Usage::

    python bench/compare_presets.py --n 16 --epochs 5
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import datasets, presets  # noqa: E402
from uae_tf.attacks import MinMaxAttack  # noqa: E402
from uae_tf.criteria import ReconstructionCriterion  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    x, _ = datasets.load("mnist5k", "train")
    keras.utils.set_random_seed(args.seed)
    trainer = autoencoders.build("conv", x.shape[1:], seed=args.seed)
    trainer.fit(x, x, epochs=args.epochs, batch_size=100, verbose=0)
    model = autoencoders.reconstruction_model(trainer)
    samples = x[: args.n]

    rows = []
    print(f"conv AE ({args.epochs} epochs) on mnist5k, first {args.n} training digits, "
          f"seed {args.seed}")
    print("| preset | ASR | mean MI (successful) | mean L2(delta) | mean Linf(delta) | s/sample |")
    print("|---|---|---|---|---|---|")
    for name in ("fast", "paper"):
        attack = MinMaxAttack(ReconstructionCriterion(model), batch_size=args.batch_size,
                              seed=args.seed, **presets.get_preset(name))
        attack(samples[:1])  # compile outside the timing
        began = time.perf_counter()
        result = attack(samples)
        seconds = (time.perf_counter() - began) / args.n
        delta = (result.x_adv - samples).reshape(args.n, -1)
        ok = result.success
        row = {
            "preset": name,
            "asr": result.attack_success_rate,
            "mean_mi_successful": float(result.mi[ok].mean()) if ok.any() else None,
            "mean_l2": float(np.linalg.norm(delta, axis=1).mean()),
            "mean_linf": float(np.abs(delta).max(axis=1).mean()),
            "seconds_per_sample": seconds,
        }
        rows.append(row)
        mi = "n/a" if row["mean_mi_successful"] is None else f"{row['mean_mi_successful']:.4f}"
        print(f"| {name} | {row['asr']:.1%} | {mi} | {row['mean_l2']:.2e} "
              f"| {row['mean_linf']:.2e} | {seconds:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
