"""Table 9 (appendix G): sensitivity of MINE-UAE augmentation to alpha and beta.

alpha is the MinMax attack's step size on delta, beta the step of its constant c
(Algorithm 1; the paper uses alpha = 0.01, beta = 0.1 everywhere else). For each
autoencoder of the table (``conv``, the convolutional autoencoder, and
``concrete``, the concrete autoencoder of Table 6) and each (alpha, beta) in
{0.01, 0.05} x {0.05, 0.1, 0.5}, MINE-UAEs of the training samples are made
against the autoencoder trained on the originals (``original``, one model per
architecture for the whole grid), and the architecture is retrained from scratch
on originals + UAEs (``mine-uae-a{alpha}-b{beta}``, as Table 4's ``mine-uae``).
``original-same-steps`` (the control the paper lacks) trains on the originals for
as many gradient steps as an augmented row.

The concrete autoencoder is attacked through the random view (it has no
convolution), selects Table 6's M features (50; 10 on ``mice_protein``), trains
with Table 6's runs of the convergence rule for the preset (fast: 1, paper: up to
5) and reports its downstream accuracy beside the error.

CPU default: both autoencoders, the first 256 training samples, 30 epochs for
every model, the ``fast`` preset and the random view. The paper: MNIST, the
``paper`` preset, the conv view and Table 8's epochs (20 and 30) for the conv
autoencoder, Table 6's (800 on MNIST) for the concrete one -- two runs::

    uae reproduce table9 --dataset mnist --limit 60000 --preset paper --view conv \\
        --archs conv --epochs 20 --augmented-epochs 30 --out runs/table9-conv
    uae reproduce table9 --dataset mnist --limit 60000 --preset paper \\
        --archs concrete --epochs 800 --augmented-epochs 800 --out runs/table9-concrete

Writes, and resumes from, ``OUT``::

    OUT/config.json
    OUT/seed-S/ARCH/original/, OUT/seed-S/ARCH/ROW/, OUT/seed-S/ARCH/original-same-steps/
    OUT/seed-S/ARCH/augment/ROW/      the MINE-UAEs of each (alpha, beta)
    OUT/report.json, OUT/report.md, OUT/table9.png
"""

import argparse
import time

from autoencoders import concrete
from uae_tf import _validation
from uae_tf._argtypes import names_among
from uae_tf.reproduce import _retraining, paper
from uae_tf.reproduce.reports import (
    cell,
    markdown_table,
    plot_grouped_bars,
    write_report,
)
from uae_tf.reproduce.table6 import PRESET_TRAINING
from uae_tf.runs import versions

NAME = "table9"
SUMMARY = ("Table 9: MINE-UAE augmentation of the conv and concrete autoencoders for each "
           "alpha and beta.")

ARCHS = ("conv", "concrete")
ALPHAS = (0.01, 0.05)
BETAS = (0.05, 0.1, 0.5)
DEFAULT_LIMIT = 256
DEFAULT_EPOCHS = 30
FIGURE = "table9.png"
_FORMAT = "uae-tf/table9/v2"


def row_name(alpha, beta):
    """The report row of one (alpha, beta): ``mine-uae-a0.01-b0.1``."""
    return f"mine-uae-a{alpha:g}-b{beta:g}"


def run_table9(
    dataset,
    out,
    preset="fast",
    seeds=1,
    seed=0,
    limit=DEFAULT_LIMIT,
    view="random",
    epochs=DEFAULT_EPOCHS,
    augmented_epochs=DEFAULT_EPOCHS,
    alphas=ALPHAS,
    betas=BETAS,
    archs=ARCHS,
    initial_perturbation="glorot",
    steps=None,
    attack_batch_size=None,
    data_dir=None,
    verbose=True,
):
    """Runs the Table 9 experiment into ``out`` (resuming what is there) and reports it.

    Args:
        dataset: A dataset of :mod:`uae_tf.datasets`.
        out: Experiment directory.
        preset: Attack settings other than alpha and beta (``fast``/``paper``);
            also the concrete autoencoder's runs of the convergence rule (Table 6's).
        seeds: Replicates; replicate r uses seed ``seed + r``.
        seed: First seed.
        limit: Use the first ``limit`` training samples.
        view: MINE view of the conv autoencoder's attacks (``auto``, ``conv``,
            ``random``); the concrete autoencoder's are always ``random``.
        epochs: Epochs of ``original``.
        augmented_epochs: Epochs of the augmented rows.
        alphas: Step sizes of delta (paper: 0.01, 0.05).
        betas: Steps of c (paper: 0.05, 0.1, 0.5).
        archs: The autoencoders, of ``("conv", "concrete")``.
        initial_perturbation: delta_0 of the attacks.
        steps: MinMax iterations T of the MINE-UAE attacks (default: the preset's).
        attack_batch_size: Samples attacked at once (default: the attack's).
        data_dir: tensorflow-datasets cache directory.
        verbose: Print progress, one line per step.

    Returns:
        The report dict written to ``out/report.json``: ``rows`` maps each
        architecture run to its rows (see :func:`_retraining.summarize`; the
        augmented ones with ``alpha`` and ``beta``).
    """
    alphas = sorted({_validation.check_positive_float(a, "alpha") for a in alphas})
    betas = sorted({_validation.check_positive_float(b, "beta") for b in betas})
    unknown = [arch for arch in archs if arch not in ARCHS]
    if unknown or not archs:
        raise ValueError(f"archs must be a non-empty subset of {ARCHS}. Received: {archs!r}")
    archs = [arch for arch in ARCHS if arch in archs]
    grid = [(a, b) for a in alphas for b in betas]
    extra = {}
    if "concrete" in archs:
        extra = {"features": concrete.default_num_features(dataset),
                 "max_tries": PRESET_TRAINING[preset]["max_tries"]}
    config = _retraining.experiment_config(
        dataset, None, preset, seeds, seed, limit, view, epochs, augmented_epochs,
        initial_perturbation, data_dir, steps=steps, archs=archs, alphas=alphas, betas=betas,
        **extra)
    out, log, started, x_train = _retraining.begin(out, config, _FORMAT, verbose)

    rows = ["original", *(row_name(a, b) for a, b in grid), "original-same-steps"]
    summaries = {}
    for arch in archs:
        records = {row: [] for row in rows}
        for run_seed in config["seeds"]:
            run_dir = out / f"seed-{run_seed}" / arch
            train = dict(arch=arch, dataset=dataset, seed=run_seed, data_dir=data_dir,
                         limit=limit)
            if arch == "concrete":
                train.update(features=config["features"], max_tries=config["max_tries"])
            else:
                train.update(batch_size=config["batch_size"])
            base = _retraining.train_row(log, run_dir / "original", epochs, train)
            records["original"].append(base)
            for alpha, beta in grid:
                row = row_name(alpha, beta)
                results = _retraining.generate_row(
                    log, run_dir / "original", x_train, run_dir / "augment" / row,
                    f"{arch} {row}", "mine", run_seed, dataset, limit, attack_batch_size,
                    verbose, steps=steps, preset=preset,
                    view="random" if arch == "concrete" else view,
                    initial_perturbation=initial_perturbation, step_size=alpha, beta=beta,
                )
                record = _retraining.train_row(log, run_dir / row, augmented_epochs, train,
                                               augmentation=results)
                records[row].append({**record, "asr": results.attack_success_rate})
            records["original-same-steps"].append(_retraining.train_row(
                log, run_dir / "original-same-steps",
                _retraining.same_steps_epochs(record["steps"], len(x_train),
                                              base["config"]["batch_size"]),
                train,
            ))
        summary = _retraining.summarize(records, rows, "original")
        for row, (alpha, beta) in zip(summary[1:], grid):
            row.update(alpha=alpha, beta=beta)
        summaries[arch] = summary

    report = {
        "rows": summaries,
        "config": config,
        "paper": {"dataset": paper.TABLE9["dataset"],
                  **{arch: [{"alpha": a, "beta": b, "test_error": e}
                            for (a, b), e in paper.TABLE9[arch].items()] for arch in ARCHS}},
        "n_train": len(x_train),
        "seconds": time.perf_counter() - started,
        "versions": versions(),
    }
    _figure(out / FIGURE, report)
    write_report(out, report, _markdown(report))
    log(f"Wrote {out / 'report.json'}, {out / 'report.md'} and {FIGURE}.")
    return report


def _figure(path, report):
    """Grouped bars: one group per (architecture, alpha), one bar per beta."""
    config = report["config"]
    groups, bars = [], {f"β = {beta:g}": [] for beta in config["betas"]}
    for arch, summary in report["rows"].items():
        errors = {(r["alpha"], r["beta"]): r["test_error"] for r in summary if "alpha" in r}
        for alpha in config["alphas"]:
            groups.append(f"{arch}, α = {alpha:g}")
            for beta in config["betas"]:
                bars[f"β = {beta:g}"].append(errors[(alpha, beta)])
    reference = None
    if len(report["rows"]) == 1:
        reference = ("original", next(iter(report["rows"].values()))[0]["test_error"])
    plot_grouped_bars(path, groups, bars, f"Table 9 on {config['dataset']}, "
                      f"{report['n_train']} samples", reference=reference)


def _markdown(report):
    config = report["config"]
    betas = [f"β = {beta:g}" for beta in config["betas"]]
    lines = [
        f"# Table 9: alpha and beta of MINE-UAE augmentation ({config['dataset']})",
        "",
        f"{report['n_train']} training samples, {len(config['seeds'])} replicate(s) (seeds "
        f"{config['seeds']}); {config['epochs']} epochs for `original`, "
        f"{config['augmented_epochs']} for the augmented models; MINE-UAEs with preset "
        f"`{config['preset']}` (alpha and beta replaced), start "
        f"`{config['initial_perturbation']}`, view `{config['view']}` for the conv "
        "autoencoder and `random` for the concrete one"
        + (f" (M = {config['features']} features, at most {config['max_tries']} run(s) of "
           "the convergence rule)" if "features" in config else "")
        + ". Cells: test reconstruction error after MINE-UAE augmentation (improvement over "
        "`original`, ASR).",
    ]
    for arch, summary in report["rows"].items():
        ours = {(r["alpha"], r["beta"]): r for r in summary if "alpha" in r}
        rows = {row["method"]: row for row in summary}
        table = [
            [f"α = {alpha:g}", *(
                f"{ours[(alpha, beta)]['test_error']:.6f} "
                f"({ours[(alpha, beta)]['improvement_pct']:+.1f}%, ASR "
                f"{cell(ours[(alpha, beta)]['asr'], '.0%')})" for beta in config["betas"])]
            for alpha in config["alphas"]
        ]
        controls = []
        for name in ("original", "original-same-steps"):
            row = rows[name]
            accuracy = f", accuracy {row['accuracy']:.2%}" if "accuracy" in row else ""
            controls.append(f"`{name}` {row['test_error']:.6f} ({row['improvement_pct']:+.1f}%, "
                            f"{row['epochs']} epochs, {row['steps']} steps{accuracy})")
        lines += ["", f"## {arch} autoencoder", "", *markdown_table(["", *betas], table), "",
                  "; ".join(controls) + ". `original-same-steps` takes as many steps as an "
                  "augmented row."]
    published = [
        [f"α = {alpha:g}", *(cell(paper.TABLE9[arch].get((alpha, beta)), ".5f")
                             for arch in ARCHS for beta in config["betas"])]
        for alpha in sorted({a for a, _ in paper.TABLE9["conv"]} | set(config["alphas"]))
    ]
    missing = [arch for arch in ARCHS if arch not in report["rows"]]
    lines += [
        "",
        f"The paper ({report['paper']['dataset']}, full training set; compare directions, "
        "not values):",
        "",
        *markdown_table(["", *(f"{arch}, {b}" for arch in ARCHS for b in betas)], published),
        "",
        *([f"Not run here (`--archs`): {', '.join(missing)}.", ""] if missing else []),
        f"![Table 9]({FIGURE})",
        "",
        f"Total time {report['seconds']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def _positive_floats(text):
    """Parses a comma-separated list of positive numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def add_arguments(parser):
    """Adds the options of ``uae reproduce table9``."""
    _retraining.add_arguments(parser, DEFAULT_LIMIT, DEFAULT_EPOCHS, DEFAULT_EPOCHS)
    parser.add_argument("--alphas", type=_positive_floats, default=ALPHAS, metavar="A1,A2",
                        help="step sizes of delta (default: %s)" % ",".join(map(str, ALPHAS)))
    parser.add_argument("--betas", type=_positive_floats, default=BETAS, metavar="B1,B2",
                        help="steps of c (default: %s)" % ",".join(map(str, BETAS)))
    parser.add_argument("--archs", type=names_among(ARCHS), default=ARCHS, metavar="A1,A2",
                        help="autoencoders: conv, concrete or both (default: %s)"
                        % ",".join(ARCHS))


def run(args):
    """Runs ``uae reproduce table9`` from parsed arguments."""
    report = run_table9(**_retraining.common_kwargs(args), alphas=args.alphas, betas=args.betas,
                        archs=args.archs)
    return {"out": str(args.out), "rows": report["rows"], "seconds": report["seconds"]}
