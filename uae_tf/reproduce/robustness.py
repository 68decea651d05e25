"""Appendix I: PGD attack success rate against epsilon, with and without UAE augmentation.

Two Carlini-Wagner classifiers are trained on the same training digits: "Std" on the
originals, "Std-UAE" on the originals plus one MINE-UAE of each (the paper's
augmentation: UAEs from the convolutional autoencoder's reconstruction criterion, a
failed UAE replaced by its original, labels copied from the originals). Both are
then attacked by L-infinity PGD (100 steps of 0.01, appendix I; margin loss) on test
digits that both classify correctly, for each epsilon. A lower ASR is a more robust
model; the paper's Figure 10(a) finds Std-UAE below Std at every epsilon.

Both classifiers take the same number of SGD steps: Std-UAE trains E epochs on the
doubled set, Std 2E epochs on the originals.

MINE-UAEs cost seconds per digit on a CPU, so the default is small, about 12
minutes on 2 CPU cores shared with another job (10 of them making the UAEs): the first 250 mnist5k training digits, their UAEs from the
conv autoencoder (5 epochs on the whole mnist5k training split) with the ``fast``
preset at T = 20 iterations of 1 MINE step and the published code's Glorot-uniform
start of delta, E = 30, then PGD on 100 test digits. The paper used all 60,000 MNIST
digits and 1000 test digits.

Writes OUT/autoencoder/, OUT/uae/ (resumable generation), OUT/std/, OUT/std_uae/,
OUT/pgd/ (results per model and epsilon, resumable), OUT/report.json ({"rows":
[{"model", "epsilon", "asr"}], "config"}), OUT/report.md and OUT/robustness.png.
"""

import time
from pathlib import Path

import numpy as np

from uae_tf import datasets
from uae_tf.attacks import PGDAttack
from uae_tf.reproduce import _supervised
from uae_tf.reproduce.reports import (
    MISSING,
    markdown_table,
    plot_asr_against_epsilon,
    printer,
    write_report,
)
from uae_tf.runs import attack_config, attack_in_chunks, versions

NAME = "robustness"
SUMMARY = "Appendix I: PGD ASR against epsilon for classifiers trained with and without UAEs."

DEFAULT_EPSILONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
DEFAULT_LIMIT = 250
DEFAULT_N = 100
DEFAULT_CLASSIFIER_EPOCHS = 30
DEFAULT_AUTOENCODER_EPOCHS = 5
DEFAULT_STEPS = 20
DEFAULT_MINE_STEPS = 1
PGD_STEPS = 100
PGD_STEP_SIZE = 0.01
CHUNK_SIZE = 128
FIGURE = "robustness.png"
MODELS = {"std": "Std", "std_uae": "Std-UAE"}


def run_robustness(
    out,
    dataset="mnist5k",
    data_dir=None,
    limit=DEFAULT_LIMIT,
    n=DEFAULT_N,
    epsilons=DEFAULT_EPSILONS,
    classifier_epochs=DEFAULT_CLASSIFIER_EPOCHS,
    autoencoder=None,
    autoencoder_epochs=DEFAULT_AUTOENCODER_EPOCHS,
    steps=DEFAULT_STEPS,
    mine_steps=DEFAULT_MINE_STEPS,
    initial_perturbation="glorot",
    seed=0,
    verbose=True,
):
    """Runs the appendix I robustness experiment into ``out`` (resuming what is there).

    Every model trained into ``out`` is trained once and reused while its settings
    hold; rerun with other settings (``autoencoder_epochs``, say), it is refused with
    :class:`uae_tf.runs.ConfigMismatchError` naming what changed.

    Args:
        out: Experiment directory.
        dataset: Dataset (train split for the classifiers and UAEs, test split for PGD).
        data_dir: tensorflow-datasets cache directory.
        limit: Train both classifiers on the first ``limit`` training samples,
            with as many UAEs for Std-UAE.
        n: Test samples attacked, classified correctly by both models.
        epsilons: L-infinity bounds of PGD.
        classifier_epochs: Epochs of Std-UAE; Std, on half the data, trains twice
            as many (the same SGD steps).
        autoencoder: Path of the conv autoencoder for the UAEs (``uae train --arch
            conv`` output); default: train one into ``out/autoencoder``, or reuse it.
        autoencoder_epochs: Epochs when training the autoencoder.
        steps: MinMax iterations per UAE.
        mine_steps: MINE steps per iteration.
        initial_perturbation: Start of delta, ``"glorot"`` or a radius in [0, 1].
        seed: Seed of the models and attacks.
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json``: ``rows`` (one per model and
        epsilon: ``model``, ``epsilon``, ``asr``, ``seconds``), ``config`` and
        ``seconds``.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of other settings.
        ValueError: if fewer than ``n`` test samples are classified correctly by both.
    """
    began = time.perf_counter()
    epsilons = tuple(sorted(set(epsilons)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = printer(verbose)
    fit_verbosity = 2 if verbose else 0
    x_train, y_train, x_uae, uaes, ae_file = _supervised.uae_training_set(
        out, dataset, data_dir, limit, autoencoder, autoencoder_epochs, steps, mine_steps,
        initial_perturbation, seed, say, verbose,
    )

    training_sets = {
        "std": (x_train, y_train, 2 * classifier_epochs),
        "std_uae": (np.concatenate([x_train, x_uae]), np.concatenate([y_train, y_train]),
                    classifier_epochs),
    }
    models, facts = {}, {}
    for name, (x, y, epochs) in training_sets.items():
        say(f"Training {MODELS[name]} on {len(x)} samples, {epochs} epochs ...")
        models[name], facts[name] = _supervised.classifier(
            out, None, dataset, epochs, seed, data_dir, verbose=fit_verbosity, name=name,
            x=x, y=y,
        )
        say(f"  test accuracy {facts[name]['test_accuracy']:.2%}")

    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir)
    indices = _supervised.correctly_classified(list(models.values()), x_test, y_test, n)
    x, y = x_test[indices], y_test[indices]

    rows = []
    for name, model in models.items():
        for epsilon in epsilons:
            attack = PGDAttack(model, epsilon=epsilon, steps=PGD_STEPS,
                               step_size=min(PGD_STEP_SIZE, epsilon), seed=seed)
            config = {"model_sha256": facts[name]["sha256"], "indices": indices.tolist(),
                      "attack": attack_config(attack)}
            result, seconds = attack_in_chunks(
                attack, x, out / "pgd" / name / f"eps_{epsilon:g}", config, CHUNK_SIZE,
                indices=indices, labels=y,
            )
            rows.append({"model": name, "epsilon": epsilon,
                         "asr": result.attack_success_rate, "seconds": seconds})
        say(f"{MODELS[name]}: PGD ASR " + ", ".join(
            f"{r['epsilon']:g}: {r['asr']:.0%}" for r in rows if r["model"] == name))

    plot_asr_against_epsilon(out / FIGURE, rows, MODELS, "PGD against models trained with and without UAEs")
    report = {
        "rows": rows,
        "config": {
            "dataset": dataset,
            "limit": limit,
            "n": n,
            "indices": indices.tolist(),
            "epsilons": list(epsilons),
            "pgd": {"steps": PGD_STEPS, "step_size": PGD_STEP_SIZE, "loss": "margin"},
            "classifier_epochs": {"std": 2 * classifier_epochs, "std_uae": classifier_epochs},
            "autoencoder": str(ae_file),
            "uae": {"asr": uaes.attack_success_rate, "preset": "fast", "steps": steps,
                    "mine_steps": mine_steps,
                    "initial_perturbation": initial_perturbation},
            "classifiers": facts,
            "seed": seed,
            "versions": versions(),
        },
        "seconds": time.perf_counter() - began,
    }
    write_report(out, report, _markdown(report))
    say(f"Wrote {out / 'report.json'}, report.md and {FIGURE}.")
    return report


def add_arguments(parser):
    """Adds the experiment's options to ``parser``."""
    _supervised.add_uae_classifier_arguments(parser, ("Std", "Std-UAE"), DEFAULT_LIMIT,
                                             DEFAULT_N, DEFAULT_EPSILONS,
                                             DEFAULT_CLASSIFIER_EPOCHS)
    _supervised.add_uae_arguments(parser, DEFAULT_AUTOENCODER_EPOCHS, DEFAULT_STEPS,
                                  DEFAULT_MINE_STEPS)
    _supervised.add_run_arguments(parser, seed_of="the models and attacks")


def run(args):
    """``uae reproduce robustness``: runs :func:`run_robustness` from parsed arguments."""
    report = run_robustness(
        args.out, dataset=args.dataset, data_dir=args.data_dir, limit=args.limit,
        n=args.n, epsilons=args.epsilons, classifier_epochs=args.classifier_epochs,
        autoencoder=args.autoencoder, autoencoder_epochs=args.autoencoder_epochs,
        steps=args.steps, mine_steps=args.mine_steps,
        initial_perturbation=args.initial_perturbation, seed=args.seed, verbose=not args.quiet,
    )
    return {"out": str(args.out), "rows": report["rows"], "seconds": report["seconds"]}



def _markdown(report):
    config = report["config"]
    asr = {(r["model"], r["epsilon"]): r["asr"] for r in report["rows"]}
    accuracy = {name: config["classifiers"][name].get("test_accuracy") for name in MODELS}
    uae = config["uae"]
    rows = [
        [label, MISSING if accuracy[name] is None else f"{accuracy[name]:.2%}",
         *(f"{asr[(name, e)]:.0%}" for e in config["epsilons"])]
        for name, label in MODELS.items()
    ]
    lines = [
        "# Appendix I: robustness after UAE augmentation",
        "",
        f"Classifiers trained on the first {config['limit']} training samples of "
        f"`{config['dataset']}` (Std {config['classifier_epochs']['std']} epochs, Std-UAE "
        f"{config['classifier_epochs']['std_uae']}: the same SGD steps); Std-UAE also on one "
        f"MINE-UAE per sample ({uae['steps']} MinMax iterations of {uae['mine_steps']} MINE "
        f"step{'s' if uae['mine_steps'] > 1 else ''}, start {uae['initial_perturbation']!r}; "
        f"UAE ASR {uae['asr']:.1%}, failures replaced by their originals). PGD: L-infinity, "
        f"{config['pgd']['steps']} steps of {config['pgd']['step_size']}, margin loss, on "
        f"{config['n']} test samples both classify correctly.",
        "",
        *markdown_table(["model", "test accuracy", *(f"ε = {e:g}" for e in config["epsilons"])],
                        rows),
        "",
        "The cells are PGD attack success rates (lower is more robust). The paper "
        "(Figure 10(a), full MNIST) reports Std-UAE below Std at every epsilon.",
        "",
        f"![ASR against epsilon]({FIGURE})",
        "",
    ]
    return "\n".join(lines)
