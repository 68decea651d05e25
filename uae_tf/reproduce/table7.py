"""Table 7: SimCLR retrained on MINE-UAE-augmented data (Section 5.6).

For each replicate (seed S, S+1, ...): pre-train SimCLR on the originals
(``original``); make one MINE-UAE per training sample against it with the
contrastive criterion (:class:`uae_tf.criteria.ContrastiveCriterion`: A
augmented pairs per sample, fixed through the attack), T = 20 MinMax iterations
and c decaying with t^(-1/2), as the published SimCLR attack; pre-train SimCLR
from scratch on originals plus UAEs (failed ones replicated) (``mine-uae``); and
``original-same-steps``, the originals for as many gradient steps. Rows report
the test contrastive loss, the linear-probe test accuracy by both protocols of
:func:`uae_tf.models.linear_probe`, the ASR, epochs and gradient steps, as mean
and standard deviation over replicates.

The accuracy compared with the paper's is the ``published`` probe's: the
published MINE-UAE row fine-tunes its linear head on the originals plus the UAEs
with the originals' labels, on random crops and flips, by Nesterov SGD with
cosine decay (IBM/UAE ``Unsupversied/simCLR/README.md`` lines 54-60,
``run_uae.py`` lines 359-362; the published checkpoint ``aug/hub/19532`` is 100
epochs of 100,000 samples in batches of 512), so part of the paper's +1.58% is
supervised augmentation of the probe, not a better encoder. The ``frozen`` probe
(Adam on fixed features of the originals, the same for every row) measures the
encoder alone; the report gives both.

The paper's settings (CIFAR-10, ResNet-18, batch 512, LARS, 1000 and 1500 epochs,
the conv view of the stem, A = 50 pairs, the ``paper`` preset) are for a GPU:
``uae reproduce table7 --dataset cifar10 --preset paper --view conv --pairs 50``.
The CPU default (:data:`CPU`) runs on the embedded mnist5k digits with the small
encoder.

Writes, and resumes from, ``OUT``::

    OUT/config.json                   the settings (refused if changed)
    OUT/seed-S/original/              model.keras, train.json, config.json
    OUT/seed-S/augment/mine-uae/      uae.npz, summary.json
    OUT/seed-S/mine-uae/, OUT/seed-S/original-same-steps/
    OUT/report.json, OUT/report.md
"""

import math
import time
from pathlib import Path

import keras
import numpy as np

from uae_tf import datasets
from uae_tf._argtypes import (
    add_attack_batch_size_argument,
    add_quiet_argument,
    add_replicate_arguments,
    int_at_least,
)
from uae_tf._validation import check_positive_int
from uae_tf.criteria import ContrastiveCriterion
from uae_tf.generation import generate
from uae_tf.models import simclr_training
from uae_tf.models.simclr_training import PROBE_EPOCHS, PROBES
from uae_tf.presets import PRESETS
from uae_tf.reproduce import paper
from uae_tf.reproduce.reports import cell, markdown_table, printer, write_report
from uae_tf.runs import check_config, file_sha256, model_file, train_once, versions
from uae_tf.views import VIEWS

NAME = "table7"
SUMMARY = "Table 7: SimCLR's test contrastive loss and linear-probe accuracy after UAE augmentation."
ROWS = ("original", "mine-uae", "original-same-steps")
STEPS = 20  # The published SimCLR attack's T.
CONST_DECAY_POWER = 0.5  # The published SimCLR attack's c update: 1 - beta / t^(1/2).
FORMAT = "uae-tf/table7/v2"  # v2: both linear probes

# The CPU default: 256 mnist5k digits, the small encoder, 30 epochs, A = 4 pairs and
# the random view (the conv view of the stem costs about 10 s a sample on 2 cores).
CPU = {"limit": 256, "epochs": 30, "augmented_epochs": 30, "pairs": 4, "view": "random",
       "attack_batch_size": 16}


def run_table7(dataset="mnist5k", out="table7", preset="fast", seeds=1, limit=None, view=None,
               pairs=None, steps=STEPS, epochs=None, augmented_epochs=None,
               attack_batch_size=None, seed=0, data_dir=None, probe_epochs=PROBE_EPOCHS,
               verbose=True):
    """Runs the Table 7 experiment into ``out`` (resuming what is there) and reports it.

    Args:
        dataset: ``"mnist5k"`` (CPU default) or ``"cifar10"`` (the paper's), or
            another of :mod:`uae_tf.datasets`.
        out: Experiment directory.
        preset: Attack preset (``fast``/``paper``); T is ``steps``.
        seeds: Replicates; replicate r uses seed ``seed + r``.
        limit: First ``limit`` training samples (CPU default 256 except on cifar10).
        view: MINE view (CPU default ``random``; the paper's ``conv``, the stem).
        pairs: A, augmented pairs per sample of the criterion (CPU 4; paper 50).
        steps: T, MinMax iterations (published: 20).
        epochs: Pre-training epochs of ``original`` (CPU 30; cifar10 1000).
        augmented_epochs: Epochs of ``mine-uae`` (CPU 30; cifar10 1500).
        attack_batch_size: Samples attacked at once.
        seed: First seed.
        data_dir: tensorflow-datasets cache directory.
        probe_epochs: Epochs of each linear probe (published: 100, which on the
            paper's 50,000 images in batches of 512 are 9,766 steps, 19,532 with
            the UAEs; on the CPU default's 256 digits in batches of 128, 200 and 400).
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json``.
    """
    if dataset not in datasets.DATASETS:
        raise ValueError(f"dataset must be one of {datasets.DATASETS}. Received: dataset={dataset!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    cpu = dataset != "cifar10"
    view = view or ("random" if cpu else "conv")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}. Received: view={view!r}")
    seeds = check_positive_int(seeds, "seeds")
    config = {
        "dataset": dataset,
        "preset": preset,
        "seeds": [seed + r for r in range(seeds)],
        "limit": limit if limit is not None or not cpu else CPU["limit"],
        "view": view,
        "pairs": check_positive_int(pairs or (CPU["pairs"] if cpu else 50), "pairs"),
        "steps": check_positive_int(steps, "steps"),
        "const_decay_power": CONST_DECAY_POWER,
        "epochs": epochs or (CPU["epochs"] if cpu else simclr_training.default_epochs(dataset)),
        "augmented_epochs": augmented_epochs or (
            CPU["augmented_epochs"] if cpu else simclr_training.default_epochs(dataset, True)),
        "batch_size": simclr_training.default_batch_size(dataset),
        "probe_epochs": check_positive_int(probe_epochs, "probe_epochs"),
        "data_dir": None if data_dir is None else str(data_dir),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, config, format=FORMAT)
    log = printer(verbose)
    started = time.perf_counter()
    x_train, _ = datasets.load(dataset, "train", data_dir=data_dir)
    x_train = x_train[: config["limit"]]
    attack_batch_size = attack_batch_size or CPU["attack_batch_size"]

    records = {row: [] for row in ROWS}
    for run_seed in config["seeds"]:
        run_dir = out / f"seed-{run_seed}"
        train = dict(dataset=dataset, batch_size=config["batch_size"], seed=run_seed,
                     data_dir=data_dir, limit=config["limit"],
                     probe_epochs=config["probe_epochs"])
        records["original"].append(_train(log, run_dir / "original", config["epochs"], train))
        model = keras.saving.load_model(model_file(run_dir / "original"), compile=False)
        log(f"[seed {run_seed}] mine-uae: attacking {len(x_train)} samples")
        began = time.perf_counter()
        results = generate(
            model, x_train, run_dir / "augment" / "mine-uae", preset=preset, view=view,
            batch_size=attack_batch_size, seed=run_seed, verbose=False,
            config={"dataset": dataset, "split": "train", "limit": config["limit"],
                    "model_sha256": file_sha256(model_file(run_dir / "original"))},
            criterion=ContrastiveCriterion(model, pairs=config["pairs"]),
            steps=config["steps"], initial_perturbation="glorot",
            const_decay_power=CONST_DECAY_POWER,
        )
        attack_seconds = results.summary["seconds"]
        log(f"[seed {run_seed}] mine-uae: ASR {results.attack_success_rate:.1%} "
            f"({time.perf_counter() - began:.0f} s)")
        record = _train(log, run_dir / "mine-uae", config["augmented_epochs"], train,
                        augmentation=results)
        records["mine-uae"].append({**record, "asr": results.attack_success_rate,
                                    "attack_seconds_per_sample": attack_seconds / len(x_train)})
        per_epoch = math.ceil(len(x_train) / config["batch_size"])
        records["original-same-steps"].append(_train(
            log, run_dir / "original-same-steps", math.ceil(record["steps"] / per_epoch), train))

    report = _report(records, config, time.perf_counter() - started)
    write_report(out, report, _markdown(report))
    log(f"Wrote {out / 'report.json'} and {out / 'report.md'}.")
    return report


def _train(log, out, epochs, train, augmentation=None):
    """Pre-trains SimCLR into ``out`` once (see :func:`uae_tf.runs.train_once`)."""
    config = {**train, "epochs": epochs,
              "augmentation": None if augmentation is None else augmentation.sha256}
    log(f"[seed {train['seed']}] {out.name}: pre-training SimCLR, {epochs} epochs")
    record, trained = train_once(out, config, lambda directory: simclr_training.train_simclr(
        epochs=epochs, out=directory, augmentation=augmentation, verbose=0, **train))
    probes = ", ".join(f"{record['linear_probe'][p]['test_accuracy']:.2%} ({p})" for p in PROBES)
    log(f"[seed {train['seed']}] {out.name}: test loss {record['test_contrastive_loss']:.4f}, "
        f"linear probe {probes} "
        f"{'(%.0f s)' % record['seconds'] if trained else '(done before)'}")
    return record


def _mean_std(values):
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def _report(records, config, seconds):
    base = np.mean([r["test_contrastive_loss"] for r in records["original"]])
    rows = []
    for method in ROWS:
        loss, loss_std = _mean_std([r["test_contrastive_loss"] for r in records[method]])
        accuracy, accuracy_std = _mean_std(
            [r["linear_probe"]["published"]["test_accuracy"] for r in records[method]])
        frozen, frozen_std = _mean_std(
            [r["linear_probe"]["frozen"]["test_accuracy"] for r in records[method]])
        asr = [r["asr"] for r in records[method] if "asr" in r]
        cost = [r["attack_seconds_per_sample"] for r in records[method]
                if "attack_seconds_per_sample" in r]
        rows.append({
            "method": method, "test_loss": loss, "test_loss_std": loss_std,
            "loss_improvement_pct": 100.0 * (base - loss) / base,
            "accuracy": accuracy, "accuracy_std": accuracy_std,
            "frozen_accuracy": frozen, "frozen_accuracy_std": frozen_std,
            "probe_train_samples": records[method][0]["linear_probe"]["published"]["n_train"],
            "asr": float(np.mean(asr)) if asr else None,
            "attack_seconds_per_sample": float(np.mean(cost)) if cost else None,
            "epochs": records[method][0]["config"]["epochs"],
            "steps": records[method][0]["steps"],
            "train_seconds": float(np.mean([r["seconds"] for r in records[method]])),
        })
    return {"rows": rows, "config": config, "paper": paper.TABLE7,
            "n_train": records["original"][0]["n_train"], "seconds": seconds,
            "versions": versions()}


def _markdown(report):
    config = report["config"]
    published = report["paper"]["rows"]
    rows = [[row["method"], f"{row['test_loss']:.4f}", cell(row["test_loss_std"], ".2g"),
             f"{row['loss_improvement_pct']:+.1f}%", f"{row['accuracy']:.2%}",
             cell(row["accuracy_std"], ".2%"), row["probe_train_samples"],
             f"{row['frozen_accuracy']:.2%}", cell(row["frozen_accuracy_std"], ".2%"),
             cell(row["asr"], ".1%"), row["epochs"],
             row["steps"], cell(published.get(row["method"], {}).get("test_loss"), ".5f"),
             cell(published.get(row["method"], {}).get("accuracy"), ".2%"),
             cell(published.get(row["method"], {}).get("asr"), ".0%")]
            for row in report["rows"]]
    lines = [
        f"# Table 7: SimCLR on {config['dataset']}",
        "",
        f"{report['n_train']} training samples, {len(config['seeds'])} replicate(s) (seeds "
        f"{config['seeds']}); batch {config['batch_size']}; MINE-UAEs from the contrastive "
        f"criterion ({config['pairs']} augmented pairs per sample), T = {config['steps']}, "
        f"c decay t^-{config['const_decay_power']}, preset `{config['preset']}`, view "
        f"`{config['view']}`. Loss: NT-Xent (tau 0.5, the published code's sum of both "
        "directions) on the test split with seeded augmentations. ASR: training samples "
        "whose UAE has no larger contrastive loss.",
        "",
        "Accuracy, two linear probes on the frozen encoder, "
        f"{config['probe_epochs']} epochs each (`uae_tf.models.linear_probe`):",
        "",
        "- **published** (the paper's protocol, beside its column): a zero-initialized "
        "linear head fine-tuned on random crops and flips by Nesterov SGD (lr 0.1 x "
        "batch / 256, cosine decay), on the originals and, for `mine-uae`, their UAEs "
        "with the originals' labels (failed UAEs replaced by their originals); "
        "\"probe samples\" counts them. Part of a `mine-uae` gain here is supervised "
        "augmentation of the probe, as in the paper.",
        "- **frozen**: a linear classifier trained by Adam on fixed, standardized "
        "features of the originals, the same data for every row: the encoder alone.",
        "",
        *markdown_table(["method", "test loss", "std", "loss improvement",
                         "accuracy (published probe)", "std", "probe samples",
                         "accuracy (frozen probe)", "std", "ASR", "epochs", "steps",
                         "paper loss (CIFAR-10)", "paper accuracy", "paper ASR"], rows),
        "",
        report["paper"]["note"],
        "",
        f"Total time {report['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser):
    """Adds the options of ``uae reproduce table7``."""
    parser.add_argument("--dataset", choices=datasets.DATASETS, default="mnist5k", metavar="NAME",
                        help="mnist5k (CPU default) or cifar10 (the paper's)")
    add_replicate_arguments(parser)
    parser.add_argument("--limit", type=int_at_least(1), metavar="N",
                        help="use the first N training samples (default: 256; cifar10: all)")
    parser.add_argument("--view", choices=VIEWS,
                        help="MINE view (default: random; cifar10: conv, the encoder's stem)")
    parser.add_argument("--pairs", type=int_at_least(2), metavar="A",
                        help="augmented pairs per sample in the criterion (default: 4; "
                        "cifar10: 50, as published)")
    parser.add_argument("--steps", type=int_at_least(1), default=STEPS, metavar="T",
                        help="MinMax iterations (default: %(default)s, as published)")
    parser.add_argument("--epochs", type=int_at_least(1), metavar="N",
                        help="pre-training epochs of 'original' (default: 30; cifar10: 1000)")
    parser.add_argument("--augmented-epochs", type=int_at_least(1), metavar="N",
                        help="epochs of 'mine-uae' (default: 30; cifar10: 1500)")
    parser.add_argument("--probe-epochs", type=int_at_least(1), default=PROBE_EPOCHS, metavar="N",
                        help="epochs of each linear probe (default: %(default)s, as published)")
    add_attack_batch_size_argument(parser, default="16")
    parser.add_argument("--data-dir", metavar="DIR", help="tensorflow-datasets cache directory")
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="experiment directory")


def run(args):
    """Runs ``uae reproduce table7`` from parsed arguments."""
    report = run_table7(
        args.dataset, args.out, preset=args.preset, seeds=args.seeds, limit=args.limit,
        view=args.view, pairs=args.pairs, steps=args.steps, epochs=args.epochs,
        augmented_epochs=args.augmented_epochs, attack_batch_size=args.attack_batch_size,
        seed=args.seed, data_dir=args.data_dir, probe_epochs=args.probe_epochs,
        verbose=not args.quiet,
    )
    return {"out": str(args.out), "rows": report["rows"], "seconds": report["seconds"]}
