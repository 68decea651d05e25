"""Fig. 9 (appendix H.1): PGD adversarial training with and without UAEs.

Two Carlini-Wagner classifiers are adversarially trained (Madry et al.: every batch
replaced by L-infinity PGD examples against the model being trained, from a random
start in the epsilon ball, cross-entropy loss; see
:class:`uae_tf.models.AdversarialTraining`):
"Adv. training" on the training digits, "Adv. training-UAE" on the digits plus one
MINE-UAE of each from the convolutional autoencoder (the appendix I augmentation,
made as ``uae reproduce robustness`` makes it; a failed UAE replaced by its original,
labels copied). Both take the same number of SGD steps: Adv. training-UAE trains E
epochs on the doubled set, Adv. training 2E epochs on the originals. Both are then
attacked by L-infinity PGD as the paper's Fig. 9 (100 steps of 2.5 epsilon / 100,
margin loss, no random start) on test digits both classify correctly, for each
epsilon; lower ASR is more robust. The paper reports, on MNIST at epsilon = 0.4,
an ASR of 100% for Adv. training and below 40% with UAEs.

CPU default (see the README, "Fig. 9"): the first 500 mnist5k training digits,
their UAEs from the conv autoencoder (5 epochs on the whole mnist5k training split;
``fast`` preset, T = 20 iterations of 1 MINE step, the conv view, as ``robustness``:
with the random view these settings make no UAE at all -- 0 of 142 measured), E = 15, a
training adversary of 10 PGD steps of 2.5 epsilon / 10 at epsilon = 0.3, PGD on 100
test digits. Madry et al.'s MNIST training adversary is 40 steps of 0.01
(``--train-steps 40 --train-step-size 0.01``) and the paper used all 60,000 digits.

Deviation, for the CPU default only: both classifiers first train on clean batches
for a third of their SGD steps, then epsilon grows linearly to 0.3 over the next
third (``--clean-epochs 5 --ramp-epochs 5``, counted in Adv. training-UAE's epochs;
Adv. training gets twice as many of its own). Madry et al. (100,000 steps) train
at the full epsilon from the first step; at the default's 120 SGD steps that stays
at chance -- both classifiers at 10% test accuracy, their loss at log 10, measured.
``--clean-epochs 0 --ramp-epochs 0`` is the published schedule. The report flags a
classifier at chance: its ASR says nothing.

Writes OUT/autoencoder/, OUT/uae/ (resumable generation), OUT/adv/, OUT/adv_uae/,
OUT/pgd/ (results per model and epsilon, resumable), OUT/report.json, OUT/report.md
and OUT/adversarial_training.png.
"""

import time
from pathlib import Path

import numpy as np

from uae_tf import _validation, datasets
from uae_tf.attacks import PGDAttack
from uae_tf.reproduce import _supervised, paper
from uae_tf.reproduce.reports import (
    MISSING,
    markdown_table,
    plot_asr_against_epsilon,
    printer,
    write_report,
)
from uae_tf.reproduce.robustness import CHUNK_SIZE, PGD_STEPS
from uae_tf.runs import attack_config, attack_in_chunks, check_config, versions
from uae_tf.views import VIEWS

NAME = "adversarial-training"
SUMMARY = "Fig. 9: PGD ASR against epsilon after adversarial training with and without UAEs."

DEFAULT_EPSILONS = (0.1, 0.2, 0.3, 0.4)
DEFAULT_LIMIT = 500
DEFAULT_N = 100
DEFAULT_CLASSIFIER_EPOCHS = 15
DEFAULT_AUTOENCODER_EPOCHS = 5
DEFAULT_STEPS = 20
DEFAULT_MINE_STEPS = 1
DEFAULT_TRAIN_EPSILON = 0.3
DEFAULT_TRAIN_STEPS = 10
DEFAULT_CLEAN_EPOCHS = 5
DEFAULT_RAMP_EPOCHS = 5
FIGURE = "adversarial_training.png"
MODELS = {"adv": "Adv. training", "adv_uae": "Adv. training-UAE"}
_FORMAT = "uae-tf/adversarial-training/v1"


def run_adversarial_training(
    out,
    dataset="mnist5k",
    data_dir=None,
    limit=DEFAULT_LIMIT,
    n=DEFAULT_N,
    epsilons=DEFAULT_EPSILONS,
    classifier_epochs=DEFAULT_CLASSIFIER_EPOCHS,
    train_epsilon=DEFAULT_TRAIN_EPSILON,
    train_steps=DEFAULT_TRAIN_STEPS,
    train_step_size=None,
    clean_epochs=DEFAULT_CLEAN_EPOCHS,
    ramp_epochs=DEFAULT_RAMP_EPOCHS,
    autoencoder=None,
    autoencoder_epochs=DEFAULT_AUTOENCODER_EPOCHS,
    steps=DEFAULT_STEPS,
    mine_steps=DEFAULT_MINE_STEPS,
    view="auto",
    initial_perturbation="glorot",
    seed=0,
    verbose=True,
):
    """Runs the Fig. 9 experiment into ``out`` (resuming what is there) and reports it.

    Args:
        out: Experiment directory.
        dataset: Dataset (train split for the classifiers and UAEs, test split for PGD).
        data_dir: tensorflow-datasets cache directory.
        limit: Train both classifiers on the first ``limit`` training samples, with
            as many UAEs for Adv. training-UAE.
        n: Test samples attacked, classified correctly by both models.
        epsilons: L-infinity bounds of the evaluation PGD.
        classifier_epochs: Epochs of Adv. training-UAE; Adv. training, on half the
            data, trains twice as many (the same SGD steps).
        train_epsilon: L-infinity bound of the training adversary (Madry: 0.3).
        train_steps: PGD steps of the training adversary (Madry: 40).
        train_step_size: Its step (default ``2.5 * train_epsilon / train_steps``;
            Madry: 0.01).
        clean_epochs: Epochs (of Adv. training-UAE; Adv. training takes twice as
            many of its own, the same SGD steps) on clean batches before the
            adversary starts (Madry: 0).
        ramp_epochs: Epochs, counted the same way, over which the training epsilon
            then grows linearly from 0 to ``train_epsilon`` (Madry: 0).
        autoencoder: Path of the conv autoencoder for the UAEs; default: train one
            into ``out/autoencoder``, or reuse it.
        autoencoder_epochs: Epochs when training the autoencoder.
        steps: MinMax iterations per UAE.
        mine_steps: MINE steps per iteration.
        view: MINE view of the UAE attack (default ``auto``: the conv autoencoder's
            conv view; the random view at one MINE step makes no UAE).
        initial_perturbation: Start of delta, ``"glorot"`` or a radius in [0, 1].
        seed: Seed of the models and attacks.
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json``: ``rows`` (one per model and
        epsilon: ``model``, ``epsilon``, ``asr``, ``seconds``), ``config``,
        ``paper``, ``warnings`` (e.g. a classifier at chance) and ``seconds``.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of other settings.
        ValueError: if fewer than ``n`` test samples are classified correctly by both,
            or if ``clean_epochs`` leaves no adversarial epoch.
    """
    began = time.perf_counter()
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}. Received: {view!r}")
    epsilons = tuple(sorted(set(epsilons)))
    classifier_epochs = _validation.check_positive_int(classifier_epochs, "classifier_epochs")
    schedule = _supervised.adversary_schedule(clean_epochs, ramp_epochs, classifier_epochs)
    adversary = _supervised.training_adversary(train_epsilon, train_steps, train_step_size, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, {"dataset": dataset, "limit": limit, "n": n,
                       "classifier_epochs": classifier_epochs, "adversary": adversary,
                       "adversary_schedule": schedule,
                       "autoencoder": None if autoencoder is None else str(autoencoder),
                       "autoencoder_epochs": autoencoder_epochs, "steps": steps,
                       "mine_steps": mine_steps, "view": view,
                       "initial_perturbation": initial_perturbation, "seed": seed},
                 format=_FORMAT)
    say = printer(verbose)
    x_train, y_train, x_uae, uaes, ae_file = _supervised.uae_training_set(
        out, dataset, data_dir, limit, autoencoder, autoencoder_epochs, steps, mine_steps,
        initial_perturbation, seed, say, verbose, view=view,
    )

    # Adv. training sees half the samples, so twice the epochs: the same SGD steps.
    training_sets = {
        "adv": (x_train, y_train, 2),
        "adv_uae": (np.concatenate([x_train, x_uae]), np.concatenate([y_train, y_train]), 1),
    }
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir)
    chance = 1.0 / len(np.unique(y_test))
    models, facts, warnings = {}, {}, []
    for name, (x, y, times) in training_sets.items():
        epochs = times * classifier_epochs
        say(f"Adversarially training {MODELS[name]} on {len(x)} samples, {epochs} epochs ...")
        models[name], facts[name] = _supervised.classifier(
            out, None, dataset, epochs, seed, data_dir, verbose=2 if verbose else 0,
            name=name, x=x, y=y, adversary=adversary,
            schedule={key: times * value for key, value in schedule.items()},
        )
        accuracy = facts[name]["test_accuracy"]
        say(f"  test accuracy {accuracy:.2%}")
        if accuracy <= 1.5 * chance:
            warnings.append(
                f"{MODELS[name]} is at chance (test accuracy {accuracy:.1%}, chance "
                f"{chance:.0%}): its ASR says nothing about robustness. Train longer, on "
                "more samples, or with a clean start and an epsilon ramp."
            )
            say(f"  WARNING: {warnings[-1]}")

    indices = _supervised.correctly_classified(list(models.values()), x_test, y_test, n)
    x, y = x_test[indices], y_test[indices]

    rows = []
    for name, model in models.items():
        for epsilon in epsilons:
            # The paper's Fig. 9 PGD: 100 steps of 2.5 epsilon / 100 (PGDAttack's default).
            attack = PGDAttack(model, epsilon=epsilon, steps=PGD_STEPS, seed=seed)
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

    plot_asr_against_epsilon(out / FIGURE, rows, MODELS,
                             "PGD against adversarially trained models, with and without UAEs")
    report = {
        "rows": rows,
        "config": {
            "dataset": dataset,
            "limit": limit,
            "n": n,
            "indices": indices.tolist(),
            "epsilons": list(epsilons),
            "pgd": {"steps": PGD_STEPS, "step_size": "2.5 epsilon / steps", "loss": "margin"},
            "adversary": adversary,
            "adversary_schedule": {
                name: {key: times * value for key, value in schedule.items()}
                for name, (_, _, times) in training_sets.items()
            },
            "classifier_epochs": {"adv": 2 * classifier_epochs, "adv_uae": classifier_epochs},
            "autoencoder": str(ae_file),
            "uae": {"asr": uaes.attack_success_rate, "preset": "fast", "steps": steps,
                    "mine_steps": mine_steps, "view": view,
                    "initial_perturbation": initial_perturbation},
            "classifiers": facts,
            "seed": seed,
            "versions": versions(),
        },
        "paper": paper.FIGURE9,
        "warnings": warnings,
        "seconds": time.perf_counter() - began,
    }
    write_report(out, report, _markdown(report))
    say(f"Wrote {out / 'report.json'}, report.md and {FIGURE}.")
    return report


def _markdown(report):
    config = report["config"]
    asr = {(r["model"], r["epsilon"]): r["asr"] for r in report["rows"]}
    accuracy = {name: config["classifiers"][name].get("test_accuracy") for name in MODELS}
    uae, adversary = config["uae"], config["adversary"]
    published = report["paper"]["mnist"]
    at = published["epsilon"]
    paper_cells = {"adv": f"{published['adv-training']:.0%}",
                   "adv_uae": f"< {published['adv-training-uae-below']:.0%}"}
    rows = [
        [label, MISSING if accuracy[name] is None else f"{accuracy[name]:.2%}",
         *(f"{asr[(name, e)]:.0%}" for e in config["epsilons"]), paper_cells[name]]
        for name, label in MODELS.items()
    ]
    schedule = config["adversary_schedule"]["adv_uae"]
    if any(schedule.values()):
        ramp = (f"on clean batches for the first {schedule['clean_epochs']} of "
                f"{config['classifier_epochs']['adv_uae']} epochs of Adv. training-UAE (and twice "
                f"that of Adv. training), epsilon then ramped linearly over "
                f"{schedule['ramp_epochs']} (twice that); not in Madry et al.")
    else:
        ramp = "at the full epsilon from the first step, as Madry et al."
    lines = [
        "# Fig. 9: adversarial training with and without UAEs",
        "",
        *(f"**Warning: {warning}**\n" for warning in report.get("warnings", [])),
        f"Carlini-Wagner classifiers adversarially trained on the first {config['limit']} "
        f"training samples of `{config['dataset']}` (PGD at epsilon "
        f"{adversary['epsilon']:g}, {adversary['steps']} steps of {adversary['step_size']:.3g}, "
        f"cross-entropy, random start; Adv. training {config['classifier_epochs']['adv']} "
        f"epochs, Adv. training-UAE {config['classifier_epochs']['adv_uae']} on twice the "
        f"samples: the same SGD steps; {ramp}); Adv. training-UAE also on one MINE-UAE per sample "
        f"from the conv autoencoder ({uae['steps']} MinMax iterations of {uae['mine_steps']} "
        f"MINE step(s), view `{uae['view']}`, start {uae['initial_perturbation']!r}; UAE ASR "
        f"{uae['asr']:.1%}, failures replaced by their originals). Evaluation PGD: "
        f"L-infinity, {config['pgd']['steps']} steps of 2.5 epsilon / {config['pgd']['steps']}, "
        f"margin loss, on {config['n']} test samples both classify correctly.",
        "",
        *markdown_table(["model", "test accuracy", *(f"ε = {e:g}" for e in config["epsilons"]),
                         f"paper, MNIST, ε = {at:g}"], rows),
        "",
        "The cells are PGD attack success rates (lower is more robust). The paper gives "
        "Fig. 9 as a plot; its text: on MNIST at ε = 0.4, Adv. training 100% and "
        "Adv. training-UAE below 40%; on CIFAR-10 at ε = 16/255, about 8 points lower "
        "with UAEs.",
        "",
        f"![ASR against epsilon]({FIGURE})",
        "",
        f"Total time {report['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser):
    """Adds the experiment's options to ``parser``."""
    _supervised.add_uae_classifier_arguments(
        parser, ("Adv. training", "Adv. training-UAE"), DEFAULT_LIMIT, DEFAULT_N,
        DEFAULT_EPSILONS, DEFAULT_CLASSIFIER_EPOCHS)
    _supervised.add_adversary_arguments(
        parser, DEFAULT_TRAIN_EPSILON, DEFAULT_TRAIN_STEPS, DEFAULT_CLEAN_EPOCHS,
        DEFAULT_RAMP_EPOCHS, counted_in="Adv. training-UAE")
    _supervised.add_uae_arguments(parser, DEFAULT_AUTOENCODER_EPOCHS, DEFAULT_STEPS,
                                  DEFAULT_MINE_STEPS, view="auto")
    _supervised.add_run_arguments(parser, seed_of="the models and attacks")


def run(args):
    """``uae reproduce adversarial-training``: runs :func:`run_adversarial_training`."""
    report = run_adversarial_training(
        args.out, dataset=args.dataset, data_dir=args.data_dir, limit=args.limit, n=args.n,
        epsilons=args.epsilons, classifier_epochs=args.classifier_epochs,
        train_epsilon=args.train_epsilon, train_steps=args.train_steps,
        train_step_size=args.train_step_size, clean_epochs=args.clean_epochs,
        ramp_epochs=args.ramp_epochs, autoencoder=args.autoencoder,
        autoencoder_epochs=args.autoencoder_epochs, steps=args.steps,
        mine_steps=args.mine_steps, view=args.view,
        initial_perturbation=args.initial_perturbation, seed=args.seed, verbose=not args.quiet,
    )
    return {"out": str(args.out), "rows": report["rows"], "seconds": report["seconds"]}
