"""Table 6: the concrete autoencoder retrained on MINE-UAE-augmented data.

Section 5.5 of the paper. For each replicate (seed S, S+1, ...): train the concrete
autoencoder (Balın et al., 2019) on the originals (``original``); attack it with
MINE-UAE, one UAE per training sample (the random view, as the model has no
convolution; the reconstruction criterion with the model in inference mode, i.e.
through its M selected features); retrain it from scratch on the originals plus the
UAEs (failed ones replicated). ``original-same-steps`` is a control the paper lacks:
the originals alone for as many gradient steps, of as many samples each, as the
augmented run took. The published package sizes the batch from the rows it is fed,
``max(rows // 256, 16)``, so with one UAE per sample (2N rows) an epoch has twice the
steps when N < 4,096 (Mice Protein, COIL-20: the batch stays 16) and twice the batch
at the same steps when N >= 4,096 (MNIST, Fashion-MNIST, ISOLET, HAR); the control
trains with the augmented run's batch size for its number of steps (at N < 4,096 the
same batch as ``original``), so it is never ``original`` again.

Rows report the test reconstruction error and the downstream accuracy of Balın et
al.'s protocol (an ExtraTrees classifier with 50 trees on the selected features of
the training rows, scored on the test rows; the only use of labels), mean and
standard deviation over replicates, the ASR on the training set, and the epochs,
gradient steps and runs of the convergence rule of the last model.

Data. ``mice_protein`` takes the loader option ``fill`` (see :mod:`uae_tf.datasets`):
``"published"``, the default, is the data of the paper's numbers; a run with
``fill="observed_mean"`` is not compared with the paper's row.

Presets. ``paper``: the paper's attack (T = 40, 20 MINE steps), every training
sample, the epochs of :func:`autoencoders.concrete.default_epochs` (800 on MNIST, as
Hsu et al.'s script; 300 elsewhere, as Balın et al.) and up to 5 runs of the
convergence rule. ``fast`` (the default, sized for a 2-core CPU): the fast attack
(T = 20, 5 MINE steps) on 32 samples at once, the first 500 training samples, 200
epochs and one run. The temperature still anneals from 10 to 0.1 over that run, but
the selection needs a logit gap of about 13 (``ln(0.998 d)``) to pass the rule's
0.998, at least ~13,000 Adam steps at the published 1e-3, and a run of the fast
preset has fewer: the report shows the mean max probability reached. ``--limit``,
``--epochs``, ``--max-tries`` and ``--attack-batch-size`` override the preset.

Writes, and resumes from, ``OUT``::

    OUT/config.json                      the experiment's settings (refused if changed)
    OUT/seed-S/original/                 model.keras, train.json, config.json
    OUT/seed-S/augment/mine-uae/         uae.npz, summary.json (uae generate)
    OUT/seed-S/mine-uae/                 the retrained model
    OUT/seed-S/original-same-steps/
    OUT/report.json, OUT/report.md, OUT/selected_features.png
"""

import time
from pathlib import Path

import numpy as np

from autoencoders import concrete
from uae_tf import datasets
from uae_tf._argtypes import (
    add_attack_batch_size_argument,
    add_dataset_option_argument,
    add_quiet_argument,
    add_replicate_arguments,
    int_at_least,
)
from uae_tf._validation import check_positive_int
from uae_tf.presets import PRESETS
from uae_tf.reproduce import paper
from uae_tf.reproduce._retraining import (
    generate_row,
    load_train_split,
    same_steps_epochs,
    train_row,
)
from uae_tf.reproduce.reports import cell, markdown_table, new_figure, printer, write_report
from uae_tf.runs import check_config, versions

NAME = "table6"
SUMMARY = ("Table 6: the concrete autoencoder's reconstruction error and accuracy after UAE "
           "augmentation.")

ROWS = ("original", "mine-uae", "original-same-steps")
FIGURES = ("selected_features.png",)
_FORMAT = "uae-tf/table6/v1"

# What each preset sets besides the attack: training samples, epochs, convergence runs.
PRESET_TRAINING = {
    "fast": {"limit": 500, "epochs": 200, "max_tries": 1, "attack_batch_size": 32},
    "paper": {"limit": None, "epochs": None, "max_tries": concrete.MAX_TRIES,
              "attack_batch_size": None},
}


def run_table6(
    dataset,
    out,
    features=None,
    preset="fast",
    seeds=1,
    limit="preset",
    epochs=None,
    augmented_epochs=None,
    max_tries=None,
    initial_perturbation="glorot",
    attack_batch_size=None,
    seed=0,
    data_dir=None,
    verbose=True,
    dataset_options=None,
):
    """Runs the Table 6 experiment into ``out`` (resuming what is there) and reports it.

    Args:
        dataset: A dataset of :mod:`uae_tf.datasets` (the paper's: ``mnist``,
            ``fashion_mnist``, ``isolet``, ``coil20``, ``mice_protein``, ``har``;
            offline: ``mnist5k``, ``digits``).
        out: Experiment directory.
        features: M, the features selected (default: 50, 10 for ``mice_protein``).
        preset: ``"fast"`` or ``"paper"``: the attack settings and the training
            defaults of :data:`PRESET_TRAINING`.
        seeds: Replicates; replicate r uses seed ``seed + r`` for training and attack.
        limit: Use the first ``limit`` training samples; ``None`` all of them;
            ``"preset"`` the preset's (fast: 500; paper: all).
        epochs: Epochs of ``original`` (default: the preset's, fast 200; paper:
            ``autoencoders.concrete.default_epochs(dataset)``).
        augmented_epochs: Epochs of ``mine-uae`` (default: as ``original``).
        max_tries: Runs of the convergence rule at most (default: the preset's).
        initial_perturbation: delta_0 of the attack (see :class:`uae_tf.MinMaxAttack`).
        attack_batch_size: Samples attacked at once; does not change the results
            (default: fast 32; paper the attack's: 1 on a CPU for the conv view,
            from the free memory on a GPU).
        seed: First seed.
        data_dir: Cache directory of the downloaded datasets.
        verbose: Print progress, one line per step.
        dataset_options: The dataset's loader options (:func:`uae_tf.datasets.options`),
            e.g. ``{"fill": "observed_mean"}``; default its defaults (the published
            loader's).

    Returns:
        The report dict written to ``out/report.json``.
    """
    if dataset not in datasets.DATASETS:
        raise ValueError(f"dataset must be one of {datasets.DATASETS}. Received: {dataset!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: {preset!r}")
    seeds = check_positive_int(seeds, "seeds")
    defaults = PRESET_TRAINING[preset]
    limit = defaults["limit"] if limit == "preset" else limit
    epochs = epochs or defaults["epochs"] or concrete.default_epochs(dataset)
    augmented_epochs = augmented_epochs or epochs
    max_tries = check_positive_int(max_tries or defaults["max_tries"], "max_tries")
    attack_batch_size = attack_batch_size or defaults["attack_batch_size"]
    features = check_positive_int(features or concrete.default_num_features(dataset), "features")
    options = datasets.resolve_options(dataset, **(dataset_options or {}))
    config = {
        "dataset": dataset,
        # Only for datasets with options, so that the configs of the others stay.
        **({"dataset_options": options} if options else {}),
        "features": features,
        "preset": preset,
        "seeds": [seed + r for r in range(seeds)],
        "limit": limit,
        "epochs": epochs,
        "augmented_epochs": augmented_epochs,
        "max_tries": max_tries,
        "view": "random",
        "initial_perturbation": initial_perturbation,
        "data_dir": None if data_dir is None else str(data_dir),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, config, format=_FORMAT)
    log = printer(verbose)
    started = time.perf_counter()

    x_train = load_train_split(dataset, limit, data_dir, options)
    records = {row: [] for row in ROWS}
    asr = []
    for run_seed in config["seeds"]:
        run_dir = out / f"seed-{run_seed}"
        train = dict(arch="concrete", dataset=dataset, features=features,
                     max_tries=max_tries, seed=run_seed, data_dir=data_dir, limit=limit,
                     **({"dataset_options": options} if options else {}))
        records["original"].append(train_row(log, run_dir / "original", epochs, train))
        results = generate_row(
            log, run_dir / "original", x_train, run_dir / "augment" / "mine-uae", "mine-uae",
            "mine", run_seed, dataset, limit, attack_batch_size, verbose,
            dataset_options=options, preset=preset, view="random",
            initial_perturbation=initial_perturbation)
        asr.append(results.attack_success_rate)
        augmented = train_row(log, run_dir / "mine-uae", augmented_epochs, train,
                              augmentation=results)
        records["mine-uae"].append(augmented)
        records["original-same-steps"].append(train_row(
            log, run_dir / "original-same-steps", *_same_steps(augmented, len(x_train), train)))

    report = _report(records, asr, config, time.perf_counter() - started)
    _figure(out, x_train.shape[1:], config["seeds"][0], records)
    write_report(out, report, _markdown(report))
    log(f"Wrote {out / 'report.json'}, {out / 'report.md'} and {', '.join(FIGURES)}.")
    return report


def _same_steps(augmented, n_train, train):
    """The control's epochs and settings: the augmented run's steps at its batch size.

    The batch is named in the settings only where it is not the default for the
    originals (N >= 4,096), so the configs of smaller runs stay as they were.
    """
    batch_size = augmented["config"]["batch_size"]
    if batch_size != concrete.default_batch_size(n_train):
        train = {**train, "batch_size": batch_size}
    return same_steps_epochs(augmented["steps"], n_train, batch_size), train


def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def _report(records, asr, config, seconds):
    base = float(np.mean([r["test_reconstruction_error"] for r in records["original"]]))
    rows = []
    for method in ROWS:
        runs = records[method]
        error, error_std = _mean_std([r["test_reconstruction_error"] for r in runs])
        accuracy, accuracy_std = _mean_std([r["test_accuracy"] for r in runs])
        rows.append({
            "method": method,
            "test_error": error,
            "test_error_std": error_std,
            "improvement_pct": 100.0 * (base - error) / base,
            "accuracy": accuracy,
            "accuracy_std": accuracy_std,
            "asr": float(np.mean(asr)) if method == "mine-uae" else None,
            "epochs": runs[0]["epochs_trained"],
            "steps": runs[0]["steps"],
            "runs": len(runs[0]["tries"]),
            "converged": [r["tries"][-1]["converged"] for r in runs],
            "mean_max_probability": float(np.mean([r["mean_max_probability"] for r in runs])),
            "selected_features": runs[0]["selected_features"],
            "train_seconds": float(np.mean([r["seconds"] for r in runs])),
        })
    paper_dataset = paper.TABLE6_DATASET.get(config["dataset"])
    if config.get("dataset_options", {}).get("fill", "published") != "published":
        paper_dataset = None  # another fill than the paper's data: no comparison
    return {
        "rows": rows,
        "config": config,
        "paper": {"dataset": paper_dataset, "rows": paper.TABLE6.get(paper_dataset)},
        "n_train": records["original"][0]["n_train"],
        "seconds": seconds,
        "versions": versions(),
    }


def _figure(out, sample_shape, run_seed, records):
    """The features ``original`` and ``mine-uae`` select (seed ``run_seed``).

    Images: the selected pixels on the image grid. Tabular data: the selected
    columns on a strip of the d features.
    """
    d = int(np.prod(sample_shape))
    image = len(sample_shape) == 3 and sample_shape[-1] == 1
    panels = [(label, records[row][0]["selected_features"])
              for label, row in (("original", "original"), ("MINE-UAE", "mine-uae"))]
    fig = new_figure(figsize=(7, 3.6) if image else (9, 2.4), layout="constrained")
    axes = fig.subplots(1 if image else 2, 2 if image else 1, squeeze=False).ravel()
    for ax, (label, selected) in zip(axes, panels):
        mask = np.zeros(d)
        mask[selected] = 1.0
        if image:
            ax.imshow(mask.reshape(sample_shape[:2]), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.imshow(mask[None, :], cmap="gray_r", vmin=0, vmax=1, aspect="auto")
            ax.set_yticks([])
            ax.set_xlabel("feature index")
        ax.set_title(f"{label}: {len(set(selected))} distinct of {len(selected)} selected",
                     fontsize=9)
    grid = "x".join(str(s) for s in sample_shape[:2]) if image else f"{d} features"
    fig.suptitle(f"Selected features ({grid}), seed {run_seed}", fontsize=10)
    fig.savefig(out / FIGURES[0], dpi=110)


def _markdown(report):
    config = report["config"]
    published = report["paper"]["rows"] or {}
    rows = []
    for row in report["rows"]:
        theirs = published.get(row["method"], {})
        rows.append([
            row["method"], f"{row['test_error']:.5f}", cell(row["test_error_std"], ".2g"),
            f"{row['improvement_pct']:+.1f}%", f"{row['accuracy']:.2%}",
            cell(row["accuracy_std"], ".2%"), cell(row["asr"], ".1%"), row["epochs"],
            row["steps"],
            f"{row['runs']} ({'yes' if all(row['converged']) else 'no'}, "
            f"{row['mean_max_probability']:.3f})",
            cell(theirs.get("test_error"), ".5f"), cell(theirs.get("accuracy"), ".2%"),
            cell(theirs.get("asr"), ".2%"),
        ])
    lines = [
        f"# Table 6: concrete autoencoder on {config['dataset']}, M = {config['features']}",
        "",
        f"{report['n_train']} training samples (each with one UAE in `mine-uae`), "
        f"{len(config['seeds'])} replicate(s) (seeds {config['seeds']}), preset "
        f"`{config['preset']}`, view `random`, initial perturbation "
        f"`{config['initial_perturbation']}`; {config['epochs']} epochs for `original`, "
        f"{config['augmented_epochs']} for `mine-uae`, at most {config['max_tries']} run(s) of "
        "the convergence rule. Test error: mean squared reconstruction error on the test "
        "split. Accuracy: ExtraTrees (50 trees) on the selected features, test split. ASR: "
        "fraction of training samples whose UAE reconstructs no worse than the original.",
        "",
        *markdown_table(
            ["method", "test error", "std", "improvement", "accuracy", "std", "ASR", "epochs",
             "steps", "runs (converged, mean max p)",
             f"paper error ({report['paper']['dataset'] or 'n/a'})", "paper accuracy",
             "paper ASR"],
            rows,
        ),
        "",
        "`std` is over replicates (`–` with one). `epochs` and `steps` are the last run's of "
        "the convergence rule (train again with doubled epochs while the mean max selection "
        "probability is below 0.998). `original-same-steps` trains on the originals alone for "
        "as many gradient steps, at the same batch size, as `mine-uae`. The paper trains on "
        "all training samples for hundreds of epochs; compare the rows' order, not the "
        "digits, on other settings."
        + (f" Dataset options: {config['dataset_options']}."
           if config.get("dataset_options") else ""),
        "",
        *[f"![{name}]({name})" for name in FIGURES],
        "",
        f"Total time {report['seconds']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser):
    """Adds the options of ``uae reproduce table6``."""
    parser.add_argument("--dataset", required=True, choices=datasets.DATASETS, metavar="NAME",
                        help=f"dataset: {', '.join(datasets.DATASETS)}")
    parser.add_argument("--features", type=int_at_least(1), metavar="M",
                        help="features selected (default: 50, 10 for mice_protein)")
    add_replicate_arguments(parser)
    parser.add_argument("--limit", type=int_at_least(1), metavar="N",
                        help="use the first N training samples (default: fast 500, paper all)")
    parser.add_argument("--epochs", type=int_at_least(1), metavar="N",
                        help="epochs of 'original' (default: fast 200; paper 800 on MNIST, "
                        "else 300)")
    parser.add_argument("--augmented-epochs", type=int_at_least(1), metavar="N",
                        help="epochs of 'mine-uae' (default: as --epochs)")
    parser.add_argument("--max-tries", type=int_at_least(1), metavar="N",
                        help="runs of the convergence rule at most (default: fast 1, paper 5)")
    add_attack_batch_size_argument(parser, default="fast 32; paper the attack's: 1 on a CPU "
                                   "for the conv view, from the free memory on a GPU")
    parser.add_argument("--data-dir", metavar="DIR", help="cache directory of the datasets")
    add_dataset_option_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="experiment directory")


def run(args):
    """Runs ``uae reproduce table6`` from parsed arguments."""
    report = run_table6(
        args.dataset, args.out, features=args.features, preset=args.preset, seeds=args.seeds,
        limit="preset" if args.limit is None else args.limit, epochs=args.epochs,
        augmented_epochs=args.augmented_epochs, max_tries=args.max_tries,
        attack_batch_size=args.attack_batch_size, seed=args.seed, data_dir=args.data_dir,
        verbose=not args.quiet, dataset_options=dict(args.dataset_options),
    )
    if not args.quiet:
        print(f"\n{'method':<20} {'test error':>11} {'improvement':>12} {'accuracy':>9} {'ASR':>7}")
        for row in report["rows"]:
            print(f"{row['method']:<20} {row['test_error']:>11.6f} "
                  f"{row['improvement_pct']:>+11.1f}% {row['accuracy']:>8.2%} "
                  f"{cell(row['asr'], '.1%'):>7}")
    return {"out": str(args.out), "rows": report["rows"]}
