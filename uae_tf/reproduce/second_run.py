"""Appendix H: a second UAE augmentation run.

The first run is Table 4's MINE-UAE row: UAEs of the training samples against the
autoencoder trained on the originals (``original``), and the architecture retrained
from scratch on originals + first-run UAEs (``first-run``). The second run makes
UAEs of the same training samples against ``first-run`` and retrains from scratch
on originals + first-run UAEs + second-run UAEs (``second-run``, 3N samples; each
failed UAE replaced by its original, as in the first run). Appendix H reports it
for the sparse autoencoder on SVHN: 0.00235 after the first run, 0.00199 after the
second.

The second run takes more gradient steps than the first (3N samples against 2N),
so two controls the paper lacks take as many: ``first-run-same-steps`` (originals +
first-run UAEs) and ``original-same-steps`` (the originals alone). The second
run's attack uses seed ``S + 1`` (as :class:`uae_tf.UAERegeneration` numbers its
regenerations), so its start delta_0 differs from the first run's.

This is built on :func:`uae_tf.generate` and :func:`uae_tf.train_autoencoder` (with
a list of augmentations) rather than :class:`uae_tf.UAERegeneration`, which swaps
the UAEs during one training instead of adding a second set.

CPU default: the first 256 training samples, Table 8's epochs (sparse on MNIST: 50
without UAEs, 80 with), the ``fast`` preset (the random view: the sparse
autoencoder has no convolution). The paper's setting, for a GPU::

    uae reproduce second-run --dataset svhn_cropped --limit 73257 --preset paper \\
        --out runs/second-run

Writes, and resumes from, ``OUT``::

    OUT/config.json
    OUT/seed-S/ROW/                       model directories (ROW: one per row)
    OUT/seed-S/augment/first-run/         UAEs against original
    OUT/seed-S/augment/second-run/        UAEs against first-run
    OUT/report.json, OUT/report.md, OUT/second_run.png
"""

import time

import autoencoders
from uae_tf.reproduce import _retraining, paper
from uae_tf.reproduce.reports import cell, markdown_table, plot_grouped_bars, write_report
from uae_tf.runs import versions

NAME = "second-run"
SUMMARY = "Appendix H: retraining on originals + first-run + second-run UAEs."

ROWS = ("original", "first-run", "second-run", "first-run-same-steps", "original-same-steps")
DEFAULT_LIMIT = 256
FIGURE = "second_run.png"
_FORMAT = "uae-tf/second-run/v1"


def run_second_run(
    dataset,
    out,
    arch="sparse",
    preset="fast",
    seeds=1,
    seed=0,
    limit=DEFAULT_LIMIT,
    view="random",
    epochs=None,
    augmented_epochs=None,
    initial_perturbation="glorot",
    steps=None,
    attack_batch_size=None,
    data_dir=None,
    verbose=True,
):
    """Runs the appendix H experiment into ``out`` (resuming what is there) and reports it.

    Args:
        dataset: A dataset of :mod:`uae_tf.datasets`.
        out: Experiment directory.
        arch: An autoencoder of ``autoencoders.ARCHITECTURES`` (paper: sparse).
        preset: Attack settings (``fast``/``paper``).
        seeds: Replicates; replicate r uses seed ``seed + r`` (its second-run
            attack ``seed + r + 1``).
        seed: First seed.
        limit: Use the first ``limit`` training samples.
        view: MINE view (``auto``, ``conv``, ``random``).
        epochs: Epochs of ``original`` (default: Table 8).
        augmented_epochs: Epochs of ``first-run`` and ``second-run`` (default:
            Table 8's augmented column).
        initial_perturbation: delta_0 of the attacks.
        steps: MinMax iterations T of the MINE-UAE attacks (default: the preset's).
        attack_batch_size: Samples attacked at once (default: the attack's).
        data_dir: tensorflow-datasets cache directory.
        verbose: Print progress, one line per step.

    Returns:
        The report dict written to ``out/report.json``.
    """
    config = _retraining.experiment_config(
        dataset, arch, preset, seeds, seed, limit, view, epochs, augmented_epochs,
        initial_perturbation, data_dir, steps=steps)
    out, log, started, x_train = _retraining.begin(out, config, _FORMAT, verbose)
    n, batch_size = len(x_train), config["batch_size"]
    attack = dict(method="mine", dataset=dataset, limit=limit,
                  attack_batch_size=attack_batch_size, verbose=verbose, steps=steps,
                  preset=preset, view=view, initial_perturbation=initial_perturbation)

    records = {row: [] for row in ROWS}
    for run_seed in config["seeds"]:
        run_dir = out / f"seed-{run_seed}"
        train = dict(arch=arch, dataset=dataset, batch_size=batch_size, seed=run_seed,
                     data_dir=data_dir, limit=limit)
        records["original"].append(
            _retraining.train_row(log, run_dir / "original", config["epochs"], train))
        first = _retraining.generate_row(log, run_dir / "original", x_train,
                                         run_dir / "augment" / "first-run", "first-run",
                                         seed=run_seed, **attack)
        record = _retraining.train_row(log, run_dir / "first-run", config["augmented_epochs"],
                                       train, augmentation=first)
        records["first-run"].append({**record, "asr": first.attack_success_rate})
        second = _retraining.generate_row(log, run_dir / "first-run", x_train,
                                          run_dir / "augment" / "second-run", "second-run",
                                          seed=run_seed + 1, **attack)
        record = _retraining.train_row(log, run_dir / "second-run", config["augmented_epochs"],
                                       train, augmentation=[first, second])
        records["second-run"].append({**record, "asr": second.attack_success_rate})
        trained_steps = record["steps"]  # Gradient steps of an augmented row.
        records["first-run-same-steps"].append(_retraining.train_row(
            log, run_dir / "first-run-same-steps",
            _retraining.same_steps_epochs(trained_steps, 2 * n, batch_size), train, augmentation=first))
        records["original-same-steps"].append(_retraining.train_row(
            log, run_dir / "original-same-steps",
            _retraining.same_steps_epochs(trained_steps, n, batch_size), train))

    rows = _retraining.summarize(records, ROWS, "original")
    report = {
        "rows": rows,
        "config": config,
        "paper": paper.SECOND_RUN,
        "n_train": n,
        "seconds": time.perf_counter() - started,
        "versions": versions(),
    }
    plot_grouped_bars(
        out / FIGURE, list(ROWS), {"test error": [row["test_error"] for row in rows]},
        f"Appendix H: {arch} autoencoder on {dataset}, {n} samples",
    )
    write_report(out, report, _markdown(report))
    log(f"Wrote {out / 'report.json'}, {out / 'report.md'} and {FIGURE}.")
    return report


def _markdown(report):
    config = report["config"]
    published = report["paper"]["rows"]
    table = [
        [row["method"], f"{row['test_error']:.6f}", cell(row["test_error_std"], ".2g"),
         f"{row['improvement_pct']:+.1f}%", cell(row["asr"], ".1%"), row["epochs"],
         row["steps"], cell(published.get(row["method"]), ".5f")]
        for row in report["rows"]
    ]
    rows = {row["method"]: row for row in report["rows"]}
    gain = 100 * (1 - rows["second-run"]["test_error"] / rows["first-run"]["test_error"])
    lines = [
        f"# Appendix H: a second UAE augmentation run ({config['arch']}, {config['dataset']})",
        "",
        f"{report['n_train']} training samples, {len(config['seeds'])} replicate(s) (seeds "
        f"{config['seeds']}); {config['epochs']} epochs for `original`, "
        f"{config['augmented_epochs']} for `first-run` (2N samples) and `second-run` "
        f"(3N: originals + first-run + second-run UAEs); MINE-UAEs with preset "
        f"`{config['preset']}`, view `{config['view']}`, start "
        f"`{config['initial_perturbation']}`. ASR of `second-run`: its own UAEs, against "
        "`first-run`. The same-steps rows take as many gradient steps as `second-run`.",
        "",
        *markdown_table(
            ["method", "test error", "std", "improvement", "ASR", "epochs", "steps",
             f"paper ({report['paper']['arch']}, {report['paper']['dataset']})"],
            table,
        ),
        "",
        f"Second run against first run: {gain:+.1f}% (paper: "
        f"{100 * (1 - published['second-run'] / published['first-run']):+.1f}%). The "
        "paper's numbers are SVHN with its full training set; compare directions, not "
        "values.",
        "",
        f"![Appendix H]({FIGURE})",
        "",
        f"Total time {report['seconds']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser):
    """Adds the options of ``uae reproduce second-run``."""
    _retraining.add_arguments(parser, DEFAULT_LIMIT, None, None)
    parser.add_argument("--arch", choices=autoencoders.ARCHITECTURES, default="sparse",
                        help="autoencoder architecture (default: %(default)s, as the paper)")


def run(args):
    """Runs ``uae reproduce second-run`` from parsed arguments."""
    report = run_second_run(**_retraining.common_kwargs(args), arch=args.arch)
    return {"out": str(args.out), "rows": report["rows"], "seconds": report["seconds"]}
