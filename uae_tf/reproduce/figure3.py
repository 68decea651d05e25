"""Figure 3: untargeted supervised examples of MINE-MinMax and PGD for epsilon 0.1 to 1.0.

For each of N correctly classified test digits and each L-infinity bound epsilon in
{0.1, 0.2, ..., 1.0}: the MinMax attack with MINE (C&W margin, kappa = 0, the
supervised step maximizing MI) and PGD (Madry et al., 100 steps of 2.5 * epsilon /
100, margin loss, no random start). Each row of the grid is a sample, each column an
epsilon; unsuccessful examples are crossed out in red. The paper's point: for large
epsilon PGD uses the whole budget and the digit drowns in noise, while MINE keeps
the example similar to the original.

The default (N = 3 digits, T = 100 MinMax iterations, the Carlini-Wagner classifier
trained 15 epochs on mnist5k) took 14 minutes on 2 CPU cores shared with another
job; most of it is the MinMax runs, one XLA compilation per epsilon included.

Writes OUT/classifier/ (unless --model), OUT/minmax/ and OUT/pgd/ (results per
epsilon, resumable), OUT/figure3.png, OUT/report.json ({"rows": [{"method",
"epsilon", "asr", "l2", "linf"}], "config"}) and OUT/report.md.
"""

import time
from pathlib import Path

import numpy as np

from uae_tf._argtypes import int_at_least
from uae_tf.attacks import MinMaxAttack, PGDAttack
from uae_tf.models.classifiers import predict_labels
from uae_tf.criteria import MarginCriterion
from uae_tf.reproduce import _supervised
from uae_tf.reproduce.reports import distances, markdown_table, new_figure, printer, write_report
from uae_tf.runs import attack_config, attack_in_chunks, versions
from uae_tf.views import VIEWS

NAME = "figure3"
SUMMARY = "Figure 3: MINE-MinMax against PGD examples for epsilon 0.1 to 1.0."

EPSILONS = tuple(round(0.1 * k, 1) for k in range(1, 11))
DEFAULT_N = 3
DEFAULT_STEPS = 100
PGD_STEPS = 100
DEFAULT_CLASSIFIER_EPOCHS = 15
CHUNK_SIZE = 8
FIGURE = "figure3.png"
METHODS = ("minmax", "pgd")


def run_figure3(
    out,
    model=None,
    dataset="mnist5k",
    data_dir=None,
    classifier_epochs=DEFAULT_CLASSIFIER_EPOCHS,
    n=DEFAULT_N,
    steps=DEFAULT_STEPS,
    view="auto",
    epsilons=EPSILONS,
    seed=0,
    figure_samples=None,
    verbose=True,
):
    """Runs the Figure 3 experiment into ``out`` (resuming what is there).

    Args:
        out: Experiment directory.
        model: Path of the classifier to attack; default: train the Carlini-Wagner
            classifier into ``out/classifier``, or reuse it.
        dataset: Dataset whose test split is attacked.
        data_dir: tensorflow-datasets cache directory.
        classifier_epochs: Epochs when training the classifier.
        n: Correctly classified test samples, one row of the grid each.
        steps: MinMax iterations per example (PGD runs 100 steps).
        view: Per-sample MINE view (``auto``, ``conv``, ``random``).
        epsilons: L-infinity bounds, one column each (default 0.1, 0.2, ..., 1.0).
        seed: Seed of the classifier and the attacks.
        figure_samples: Rows of the grid, the first samples (default: all ``n``).
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json``: ``rows`` (one per method and
        epsilon: ``method``, ``epsilon``, ``asr``, ``l2``, ``linf``, ``seconds``),
        ``config``, ``seconds`` and ``figure`` (the grid's path).
    """
    began = time.perf_counter()
    epsilons = tuple(epsilons)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = printer(verbose)
    model, model_facts, x, y, indices = _supervised.classifier_and_samples(
        out, n, model, dataset, classifier_epochs, seed, data_dir, say, verbose
    )

    rows, examples, configs = [], {m: [] for m in METHODS}, {}
    for method in METHODS:
        for epsilon in epsilons:
            attack = _attack(method, model, epsilon, steps, view, seed)
            configs.setdefault(method, attack.get_config())
            config = {
                "model_sha256": model_facts["sha256"],
                "dataset": dataset,
                "indices": indices.tolist(),
                "attack": attack_config(attack),
            }
            result, seconds = attack_in_chunks(
                attack, x, out / method / f"eps_{epsilon:.1f}", config, CHUNK_SIZE,
                indices=indices, labels=y,
            )
            success = predict_labels(model, result.x_adv) != y
            distance = distances(x, result.x_adv)
            rows.append({
                "method": method,
                "epsilon": epsilon,
                "asr": float(np.mean(success)),
                "l2": float(np.mean(distance["l2"])),
                "linf": float(np.mean(distance["linf"])),
                "seconds": seconds,
            })
            examples[method].append((result.x_adv, success))
            say(f"{method} epsilon={epsilon:.1f}: ASR {rows[-1]['asr']:.0%}, mean L2 "
                f"{rows[-1]['l2']:.3g} ({seconds:.0f} s)")

    shown = n if figure_samples is None else min(n, figure_samples)
    _plot(out / FIGURE, x[:shown],
          {m: [(x_adv[:shown], success[:shown]) for x_adv, success in per_epsilon]
           for m, per_epsilon in examples.items()}, epsilons)
    report = {
        "rows": rows,
        "config": {
            "dataset": dataset,
            "n": n,
            "indices": indices.tolist(),
            "epsilons": list(epsilons),
            "minmax_steps": steps,
            "pgd_steps": PGD_STEPS,
            "view": view,
            "seed": seed,
            "classifier": model_facts,
            "attacks": {m: {k: v for k, v in c.items() if k != "epsilon"} for m, c in configs.items()},
            "versions": versions(),
        },
        "figure": str(out / FIGURE),
        "seconds": time.perf_counter() - began,
    }
    write_report(out, report, _markdown(report))
    say(f"Wrote {out / FIGURE}, report.json and report.md.")
    return report


def add_arguments(parser):
    """Adds the experiment's options to ``parser``."""
    _supervised.add_classifier_arguments(parser, DEFAULT_CLASSIFIER_EPOCHS)
    parser.add_argument(
        "--n", type=int_at_least(1), default=DEFAULT_N, metavar="N",
        help="correctly classified test samples, one row each (default: %(default)s)",
    )
    parser.add_argument(
        "--steps", type=int_at_least(1), default=DEFAULT_STEPS, metavar="T",
        help="MinMax iterations per example (default: %(default)s); PGD runs 100 steps",
    )
    parser.add_argument(
        "--view", choices=VIEWS, default="auto",
        help="per-sample MINE view (default: auto, the conv view)",
    )
    parser.add_argument(
        "--epsilons", type=_supervised.epsilons, default=EPSILONS, metavar="E1,E2,...",
        help="L-infinity bounds, one column each (default: 0.1,0.2,...,1.0)",
    )
    _supervised.add_run_arguments(parser, seed_of="the classifier and of the attacks")


def run(args):
    """``uae reproduce figure3``: runs :func:`run_figure3` from parsed arguments."""
    report = run_figure3(
        args.out, model=args.model, dataset=args.dataset, data_dir=args.data_dir,
        classifier_epochs=args.classifier_epochs, n=args.n, steps=args.steps,
        view=args.view, epsilons=args.epsilons, seed=args.seed, verbose=not args.quiet,
    )
    return {"out": str(args.out), "figure": report["figure"], "seconds": report["seconds"]}


def _attack(method, model, epsilon, steps, view, seed):
    if method == "pgd":
        return PGDAttack(model, epsilon=epsilon, steps=PGD_STEPS, seed=seed)
    return MinMaxAttack(MarginCriterion(model), similarity={"name": "mine", "view": view},
                        steps=steps, epsilon=epsilon, seed=seed)


def _plot(path, x, examples, epsilons):
    """The grid: a block of rows per method, a column per epsilon, failures crossed out."""
    n, cols = len(x), len(epsilons) + 1
    fig = new_figure(figsize=(1.0 * cols, 1.05 * n * len(examples) + 0.6), layout="constrained")
    axes = fig.subplots(n * len(examples), cols, squeeze=False)
    cmap = "gray" if x.shape[-1] == 1 else None
    for block, (method, per_epsilon) in enumerate(examples.items()):
        for i in range(n):
            row = axes[block * n + i]
            row[0].imshow(np.squeeze(x[i], -1) if cmap else x[i], cmap=cmap, vmin=0, vmax=1)
            label = "MINE-MinMax" if method == "minmax" else "PGD"
            row[0].set_ylabel(label if i == 0 else "", fontsize=8)
            for j, (x_adv, success) in enumerate(per_epsilon, start=1):
                image = np.squeeze(x_adv[i], -1) if cmap else x_adv[i]
                row[j].imshow(image, cmap=cmap, vmin=0, vmax=1)
                if not success[i]:
                    for ends in (([0, 1], [0, 1]), ([0, 1], [1, 0])):
                        row[j].plot(*ends, color="red", linewidth=2, transform=row[j].transAxes)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_title("original", fontsize=8)
    for j, epsilon in enumerate(epsilons, start=1):
        axes[0][j].set_title(f"ε = {epsilon:.1f}", fontsize=8)
    fig.savefig(path, dpi=100)


def _markdown(report):
    config = report["config"]
    by_key = {(r["method"], r["epsilon"]): r for r in report["rows"]}
    rows = []
    for epsilon in config["epsilons"]:
        mm, pgd = by_key[("minmax", epsilon)], by_key[("pgd", epsilon)]
        rows.append([f"{epsilon:.1f}", f"{mm['asr']:.0%}", f"{mm['l2']:.3g}",
                     f"{mm['linf']:.3g}", f"{pgd['asr']:.0%}", f"{pgd['l2']:.3g}",
                     f"{pgd['linf']:.3g}"])
    lines = [
        "# Figure 3: MINE-MinMax against PGD",
        "",
        f"{config['n']} correctly classified test samples of `{config['dataset']}`; MinMax "
        f"{config['minmax_steps']} iterations, PGD {config['pgd_steps']} steps. ASR from the "
        "classifier's predictions; L2 and L-infinity distances are means over all samples.",
        "",
        *markdown_table(["epsilon", "MinMax ASR", "MinMax L2", "MinMax Linf", "PGD ASR",
                         "PGD L2", "PGD Linf"], rows),
        "",
        f"![Figure 3]({FIGURE})",
        "",
    ]
    return "\n".join(lines)
