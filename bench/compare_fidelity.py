"""Before/after figures of issue 10, points 1 and 2: the start of delta and the kept iterate.

Trains the paper's conv autoencoder on the embedded MNIST subset, attacks the first
N training digits (fast preset, random view, the same seed and samples) with the
four combinations of

* ``initial_perturbation``: ``0`` (Algorithm 1 as printed, the old default) or
  ``"glorot"`` (the published code's start, the new default), and
* ``selection``: ``"algorithm1"`` (the most negative MI among f <= 0 iterates, the
  old rule) or ``"published"`` (f <= 0 and MI > 0, the smallest MI kept, the new
  default),

and prints per combination: the ASR, the mean MI of the kept iterates (successful
samples), the mean L-infinity and L2 norms of delta = x_adv - x, the mean L2 that
the attack's iterations add over the start (``||x_adv - (x + delta_0)||``, with
delta_0 taken from the same attack run with a vanishing step), and, with
``--retrain-epochs``, the test reconstruction error of a conv autoencoder retrained
from scratch on the N originals plus their augmentations (failures replicated), per
retraining seed, next to ``original`` (the originals twice) and ``start-only``
(delta_0 alone, kept where the criterion holds).

Usage::

    python bench/compare_fidelity.py --n 64 --epochs 3 --retrain-epochs 30
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import datasets, presets  # noqa: E402
from uae_tf.attacks import MinMaxAttack  # noqa: E402
from uae_tf.augmentation import augmentation_pool  # noqa: E402
from uae_tf.criteria import ReconstructionCriterion  # noqa: E402

COMBINATIONS = [(0.0, "algorithm1"), (0.0, "published"), ("glorot", "algorithm1"),
                ("glorot", "published")]


def _attack(model, samples, args, **settings):
    preset = presets.get_preset("fast")
    preset["similarity"]["view"] = "random"
    attack = MinMaxAttack(ReconstructionCriterion(model), batch_size=args.batch_size,
                          seed=args.seed, **{**preset, **settings})
    return attack(samples)


def _test_error(x_train, x_test, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = autoencoders.build("conv", x_train.shape[1:], seed=seed)
    model.fit(x_train, x_train, epochs=epochs, batch_size=32, verbose=0)
    return float(model.evaluate(x_test, x_test, batch_size=500, verbose=0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="training of the attacked AE")
    parser.add_argument("--batch-size", type=int, default=32, help="samples attacked at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain-epochs", type=int, default=0,
                        help="retrain a conv AE on originals + augmentations (0: skip)")
    parser.add_argument("--retrain-seeds", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    x, _ = datasets.load("mnist5k", "train")
    x_test = datasets.load("mnist5k", "test")[0][:500]
    keras.utils.set_random_seed(args.seed)
    trainer = autoencoders.build("conv", x.shape[1:], seed=args.seed)
    trainer.fit(x, x, epochs=args.epochs, batch_size=100, verbose=0)
    model = autoencoders.reconstruction_model(trainer)
    samples = x[: args.n]
    seeds = range(args.retrain_seeds)

    print(f"conv AE ({args.epochs} epochs) on mnist5k, first {args.n} training digits, fast "
          f"preset, random view, seed {args.seed}")
    print("| start | selection | ASR | mean MI (kept) | mean Linf(delta) | mean L2(delta) "
          "| mean L2 added by the iterations | test MSE after retraining (per seed) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    augmentations = {}
    for start, selection in COMBINATIONS:
        result = _attack(model, samples, args, initial_perturbation=start, selection=selection)
        began = _attack(model, samples, args, initial_perturbation=start, step_size=1e-12,
                        steps=1).x_adv
        delta = (result.x_adv - samples).reshape(args.n, -1)
        ok = result.success
        row = {
            "start": start, "selection": selection, "asr": result.attack_success_rate,
            "mean_mi_kept": float(result.mi[ok].mean()) if ok.any() else None,
            "mean_linf": float(np.abs(delta).max(axis=1).mean()),
            "mean_l2": float(np.linalg.norm(delta, axis=1).mean()),
            "mean_l2_iterations": float(np.linalg.norm(
                (result.x_adv - began).reshape(args.n, -1), axis=1).mean()),
        }
        augmentations[(start, selection)] = augmentation_pool(samples, result.x_adv, ok)
        if start == "glorot" and selection == "published":
            start_ok = _attack(model, samples, args, step_size=1e-12, steps=1,
                               selection="algorithm1").success
            augmentations["start-only"] = augmentation_pool(samples, began, start_ok)
        rows.append(row)
    if args.retrain_epochs:
        augmentations["original"] = samples
        errors = {key: [_test_error(np.concatenate([samples, aug]), x_test, args.retrain_epochs,
                                    seed) for seed in seeds]
                  for key, aug in augmentations.items()}
    for row in rows:
        key = (row["start"], row["selection"])
        row["test_mse"] = errors[key] if args.retrain_epochs else None
        mi = "n/a" if row["mean_mi_kept"] is None else f"{row['mean_mi_kept']:.4f}"
        mse = ", ".join(f"{e:.5f}" for e in row["test_mse"]) if row["test_mse"] else "-"
        print(f"| {row['start']} | {row['selection']} | {row['asr']:.1%} | {mi} "
              f"| {row['mean_linf']:.2e} | {row['mean_l2']:.2e} | {row['mean_l2_iterations']:.2e} "
              f"| {mse} |", flush=True)
    if args.retrain_epochs:
        for key in ("original", "start-only"):
            print(f"| {key} | | | | | | | {', '.join(f'{e:.5f}' for e in errors[key])} |")
            rows.append({"row": key, "test_mse": errors[key]})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
