"""What the supervised experiments (table3, figure3, robustness, adversarial-training,
robust-models) share.

A classifier to attack (given, or trained once into ``OUT/classifier`` and reused
while its settings hold; adversarially trained on request, by Madry et al.'s or
TRADES's objective, with the training adversary's settings and schedule), the test
samples it classifies correctly, the command-line options that go with them, and
the training digits with one conv-autoencoder MINE-UAE each (appendix I, Fig. 9).
"""

import argparse
import functools
from pathlib import Path

import numpy as np

from uae_tf import _validation, datasets
from uae_tf._argtypes import (
    add_quiet_argument,
    add_seed_argument,
    add_steps_arguments,
    int_at_least,
)
from uae_tf._argtypes import initial_perturbation as parse_initial_perturbation
from uae_tf.attacks import PGDAttack
from uae_tf.augmentation import augmentation_pool
from uae_tf.generation import generate
from uae_tf.models.classifiers import predict_labels, train_classifier
from uae_tf.runs import array_sha256, file_sha256, model_file, train_once
from uae_tf.reproduce.reports import distances
from uae_tf.training import load_model_dir, train_autoencoder
from uae_tf.views import VIEWS

CLASSIFIER_DIR = "classifier"


def add_dataset_arguments(parser, what):
    """Adds ``--dataset`` (``what`` it is, for the help) and ``--data-dir``."""
    parser.add_argument(
        "--dataset", default="mnist5k", choices=datasets.DATASETS, metavar="NAME",
        help=f"{what} (default: %(default)s, embedded)",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="tensorflow-datasets cache directory")


def add_classifier_arguments(parser, epochs):
    """Adds ``--model``, ``--dataset``, ``--data-dir`` and ``--classifier-epochs``."""
    parser.add_argument(
        "--model", metavar="PATH",
        help="classifier to attack (a directory from 'uae train --arch classifier', or a "
        ".keras file with logits output); default: train the Carlini-Wagner classifier "
        "into OUT/classifier, or reuse the one there",
    )
    add_dataset_arguments(parser, "dataset whose test split is attacked")
    parser.add_argument(
        "--classifier-epochs", type=int_at_least(1), default=epochs, metavar="E",
        help="epochs when training the classifier (default: %(default)s)",
    )


def epsilons(text):
    """Parses ``--epsilons``: comma-separated numbers in (0, 1]."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers in (0, 1], got {text!r}"
        )
    return values


def add_uae_classifier_arguments(parser, models, limit, n, epsilons_default, classifier_epochs):
    """Adds the options of the experiments that train a classifier with and without UAEs.

    ``--dataset``/``--data-dir``, ``--limit``, ``--n``, ``--epsilons`` and
    ``--classifier-epochs``; ``models`` names the two classifiers, without and with
    UAEs (``("Std", "Std-UAE")``), for the help.
    """
    plain, with_uaes = models
    add_dataset_arguments(parser, "dataset")
    parser.add_argument(
        "--limit", type=int_at_least(1), default=limit, metavar="M",
        help="train both classifiers on the first M training samples, with M UAEs for "
        f"{with_uaes} (default: %(default)s)",
    )
    parser.add_argument(
        "--n", type=int_at_least(1), default=n, metavar="N",
        help="test samples attacked, classified correctly by both models (default: %(default)s)",
    )
    parser.add_argument(
        "--epsilons", type=epsilons, default=epsilons_default, metavar="E1,E2,...",
        help="L-infinity bounds of the evaluation PGD (default: %s)"
        % ",".join(map(str, epsilons_default)),
    )
    parser.add_argument(
        "--classifier-epochs", type=int_at_least(1), default=classifier_epochs, metavar="E",
        help=f"epochs of {with_uaes}; {plain}, on half the data, trains 2E epochs "
        "(default: %(default)s)",
    )


def add_uae_arguments(parser, autoencoder_epochs, steps, mine_steps, view=None):
    """Adds the options of the training digits' UAEs (:func:`uae_training_set`).

    ``--autoencoder``, ``--autoencoder-epochs``, ``--steps``/``--mine-steps``,
    ``--view`` (if ``view`` names its default) and ``--initial-perturbation``.
    """
    parser.add_argument(
        "--autoencoder", metavar="PATH",
        help="conv autoencoder for the UAEs ('uae train --arch conv' output); default: train "
        "one into OUT/autoencoder, or reuse the one there",
    )
    parser.add_argument(
        "--autoencoder-epochs", type=int_at_least(1), default=autoencoder_epochs, metavar="E",
        help="epochs when training the autoencoder (default: %(default)s)",
    )
    add_steps_arguments(parser, steps, mine_steps, what="per UAE")
    if view is not None:
        parser.add_argument("--view", choices=VIEWS, default=view,
                            help="MINE view of the UAE attack (default: %(default)s)")
    parser.add_argument(
        "--initial-perturbation", type=parse_initial_perturbation, default="glorot",
        metavar="R",
        help="start of delta: 'glorot' (the published code's; default) or a radius in [0, 1]",
    )


def add_adversary_arguments(parser, epsilon, steps, clean_epochs, ramp_epochs, counted_in):
    """Adds the training adversary's options (see :func:`training_adversary`).

    ``--train-epsilon``, ``--train-steps``, ``--train-step-size``, ``--clean-epochs``
    and ``--ramp-epochs``, with these defaults; ``counted_in`` says whose epochs the
    last two count, for the help.
    """
    parser.add_argument(
        "--train-epsilon", type=float, default=epsilon, metavar="EPS",
        help="L-infinity bound of the training PGD (default: %(default)s, Madry's MNIST)",
    )
    parser.add_argument(
        "--train-steps", type=int_at_least(1), default=steps, metavar="K",
        help="steps of the training PGD (default: %(default)s; Madry and TRADES: 40)",
    )
    parser.add_argument(
        "--train-step-size", type=float, metavar="S",
        help="step of the training PGD (default: 2.5 * epsilon / K; Madry and TRADES: 0.01)",
    )
    parser.add_argument(
        "--clean-epochs", type=int_at_least(0), default=clean_epochs, metavar="E",
        help=f"epochs on clean batches before the training PGD starts, counted in {counted_in} "
             "epochs (default: %(default)s; Madry: 0)",
    )
    parser.add_argument(
        "--ramp-epochs", type=int_at_least(0), default=ramp_epochs, metavar="E",
        help="epochs over which the training epsilon then grows linearly to --train-epsilon "
             "(default: %(default)s; Madry: 0)",
    )


def training_adversary(epsilon, steps, step_size, seed, loss="crossentropy"):
    """Keyword arguments of the :class:`uae_tf.PGDAttack` that adversarial training runs.

    Madry et al.'s (``loss="crossentropy"``): a random start in the epsilon ball.
    TRADES's (``loss="kl"``): no random start of its own, as
    :class:`uae_tf.models.TRADESTraining` starts it at x + N(0, 0.001^2).

    Args:
        epsilon: L-infinity bound, in (0, 1].
        steps: PGD steps.
        step_size: Step, or ``None`` for ``2.5 * epsilon / steps``.
        seed: Seed of the random starts.
        loss: ``"crossentropy"`` (Madry) or ``"kl"`` (TRADES).

    Raises:
        ValueError: naming an invalid value.
    """
    epsilon = _validation.check_positive_float(epsilon, "train_epsilon", upper=1.0)
    steps = _validation.check_positive_int(steps, "train_steps")
    return {
        "epsilon": epsilon,
        "steps": steps,
        "step_size": _validation.check_positive_float(
            step_size or 2.5 * epsilon / steps, "train_step_size"),
        "loss": loss,
        "random_start": loss != "kl",
        "seed": seed,
    }


def adversary_schedule(clean_epochs, ramp_epochs, epochs):
    """The clean-start and epsilon-ramp schedule of an ``epochs``-long adversarial training.

    Returns:
        ``{"clean_epochs", "ramp_epochs"}`` for :func:`uae_tf.models.train_classifier`.

    Raises:
        ValueError: if either is negative, or ``clean_epochs`` leaves no adversarial
            epoch.
    """
    schedule = {"clean_epochs": _validation.check_non_negative_int(clean_epochs, "clean_epochs"),
                "ramp_epochs": _validation.check_non_negative_int(ramp_epochs, "ramp_epochs")}
    if clean_epochs >= epochs:
        raise ValueError(
            f"clean_epochs must be below the classifier's epochs ({epochs}), or no epoch is "
            f"adversarial. Received: clean_epochs={clean_epochs!r}"
        )
    return schedule


def add_run_arguments(parser, seed_of):
    """Adds ``--seed`` (the seed of ``seed_of``), ``--quiet`` and ``--out``."""
    add_seed_argument(parser, help=f"seed of {seed_of}")
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="results directory")


def classifier(out, model=None, dataset="mnist5k", epochs=None, seed=0, data_dir=None,
               verbose=0, name=CLASSIFIER_DIR, x=None, y=None, adversary=None,
               schedule=None, trades_beta=None):
    """Returns ``(model, facts)``: the classifier to attack and what identifies it.

    Args:
        out: The experiment's directory.
        model: Path of a saved classifier, or ``None`` to train the Carlini-Wagner
            classifier into ``out/name`` (once: see :func:`uae_tf.runs.train_once`).
        dataset: Dataset to train on when training.
        epochs: Training epochs.
        seed: Training seed.
        data_dir: tensorflow-datasets cache directory.
        verbose: Keras ``fit`` verbosity.
        name: Subdirectory of ``out`` for a trained classifier.
        x: Optional training images replacing the train split (see
            :func:`uae_tf.models.train_classifier`).
        y: Their labels.
        adversary: ``None``, or keyword arguments of :class:`uae_tf.PGDAttack` for
            adversarial training (see :func:`uae_tf.models.train_classifier`).
        schedule: With ``adversary``, optional keyword arguments ``clean_epochs``
            and ``ramp_epochs`` of :func:`uae_tf.models.train_classifier`.
        trades_beta: With ``adversary``, ``None`` for Madry et al.'s training or
            TRADES's beta (see :func:`uae_tf.models.train_classifier`).

    Returns:
        The model and a JSON-serializable dict: ``path``, ``sha256`` of the
        ``.keras`` file, and ``test_accuracy`` and ``epochs`` when known.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out/name`` holds a classifier
            trained with other settings.
    """
    if model is None:
        path = Path(out) / name
        config = {"dataset": dataset, "epochs": epochs, "seed": seed,
                  "train_sha256": None if x is None else array_sha256(x, y)}
        if adversary is not None:
            config["adversary"] = adversary
            config["adversary_schedule"] = schedule = dict(schedule or {})
        if trades_beta is not None:
            config["trades_beta"] = trades_beta
        train_once(
            path,
            config,
            lambda directory: train_classifier(
                dataset, epochs=epochs, seed=seed, out=directory, data_dir=data_dir,
                verbose=verbose, x=x, y=y,
                adversary=None if adversary is None else functools.partial(PGDAttack, **adversary),
                trades_beta=trades_beta, **(schedule or {}),
            ),
        )
    else:
        path = Path(model)
    loaded, record = load_model_dir(path)
    facts = {"path": str(path), "sha256": file_sha256(model_file(path))}
    if record is not None:
        facts["test_accuracy"] = record.get("test_accuracy")
        facts["epochs"] = record.get("config", {}).get("epochs")
    return loaded, facts


def classifier_and_samples(out, n, model, dataset, epochs, seed, data_dir, say, verbose):
    """The experiment's classifier and the first ``n`` test samples it gets right.

    Trains the classifier into ``out`` unless ``model`` names one (see
    :func:`classifier`); ``say`` prints progress.

    Returns:
        ``(model, model_facts, x, y, indices)``: ``indices`` are the samples' rows in
        the test split.
    """
    say(f"Classifier: {model or Path(out) / CLASSIFIER_DIR}")
    model, model_facts = classifier(out, model, dataset, epochs, seed, data_dir,
                                    verbose=2 if verbose else 0)
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir)
    indices = correctly_classified([model], x_test, y_test, n)
    return model, model_facts, x_test[indices], y_test[indices], indices


def correctly_classified(models, x, y, n):
    """Returns the indices of the first ``n`` samples that all ``models`` classify correctly.

    Raises:
        ValueError: if fewer than ``n`` samples are classified correctly, naming ``n``.
    """
    correct = np.ones(len(x), bool)
    for model in models:
        correct &= predict_labels(model, x) == y
    correct = np.flatnonzero(correct)
    if len(correct) < n:
        by = "the classifier classifies" if len(models) == 1 else "all the classifiers classify"
        raise ValueError(
            f"Only {len(correct)} of the {len(x)} test samples are ones {by} correctly, "
            f"fewer than n={n}."
        )
    return correct[:n]


def uae_training_set(out, dataset, data_dir, limit, autoencoder, autoencoder_epochs, steps,
                     mine_steps, initial_perturbation, seed, say, verbose, view="auto"):
    """The training digits and one MINE-UAE of each from the conv autoencoder (appendix I).

    The autoencoder is ``autoencoder`` (a ``uae train --arch conv`` directory) or,
    by default, trained once into ``out/autoencoder`` on the whole train split; the
    UAEs (``fast`` preset with ``steps`` and ``mine_steps``) go to ``out/uae``,
    resumably. A failed UAE is replaced by its original ("replicate to keep
    balance").

    Returns:
        ``(x_train, y_train, x_uae, uaes, ae_file)``: the first ``limit`` training
        samples and labels, their UAEs (failures replaced), the
        :class:`uae_tf.generation.GenerationResults` and the autoencoder's file.
    """
    fit_verbosity = 2 if verbose else 0
    x_train, y_train = datasets.load(dataset, "train", data_dir=data_dir)
    x_train, y_train = x_train[:limit], y_train[:limit]
    if autoencoder is None:
        autoencoder = Path(out) / "autoencoder"
        train_once(
            autoencoder,
            {"arch": "conv", "dataset": dataset, "epochs": autoencoder_epochs, "seed": seed},
            lambda directory: train_autoencoder(
                "conv", dataset, epochs=autoencoder_epochs, seed=seed, out=directory,
                data_dir=data_dir, verbose=fit_verbosity,
            ),
        )
    phi, _ = load_model_dir(autoencoder)
    ae_file = model_file(autoencoder)
    say(f"UAEs for {len(x_train)} training samples from {ae_file} ...")
    uaes = generate(
        phi, x_train, Path(out) / "uae", preset="fast", view=view, seed=seed, verbose=verbose,
        config={"autoencoder_sha256": file_sha256(ae_file),
                "dataset": dataset, "limit": limit},
        steps=steps, similarity={"mine_steps": mine_steps},
        initial_perturbation=initial_perturbation,
    )
    x_uae = augmentation_pool(x_train, uaes.x_adv, uaes.success)
    say(f"  UAE ASR {uaes.attack_success_rate:.1%}, mean L-inf distance "
        f"{distances(x_train, x_uae)['linf'].mean():.3g}")
    return x_train, y_train, x_uae, uaes, ae_file
