"""What the supervised experiments (table3, figure3, robustness) share.

A classifier to attack (given, or trained once into ``OUT/classifier`` and reused),
the test samples it classifies correctly, attacks run in chunks that are written as
they finish (so an interrupted experiment resumes), and figures drawn without pyplot.
"""

import hashlib
import time
from pathlib import Path

import numpy as np

from uae_tf import datasets
from uae_tf._argtypes import int_at_least
from uae_tf._io import write_npz_atomic
from uae_tf.attacks.base import AttackResult
from uae_tf.models.classifiers import predict_labels, train_classifier
from uae_tf.generation import check_config
from uae_tf.training import MODEL_FILE, file_sha256, load_model_dir

CLASSIFIER_DIR = "classifier"
_RESULT_FIELDS = ("x_adv", "success", "mi", "f", "mi_history", "c_history")


def add_classifier_arguments(parser, epochs):
    """Adds ``--model``, ``--dataset``, ``--data-dir`` and ``--classifier-epochs``."""
    parser.add_argument(
        "--model", metavar="PATH",
        help="classifier to attack (a directory from 'uae train --arch classifier', or a "
        ".keras file with logits output); default: train the Carlini-Wagner classifier "
        "into OUT/classifier, or reuse the one there",
    )
    parser.add_argument(
        "--dataset", default="mnist5k", choices=datasets.DATASETS, metavar="NAME",
        help="dataset whose test split is attacked (default: %(default)s, embedded)",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="tensorflow-datasets cache directory")
    parser.add_argument(
        "--classifier-epochs", type=int_at_least(1), default=epochs, metavar="E",
        help="epochs when training the classifier (default: %(default)s)",
    )


def add_run_arguments(parser, seed_of):
    """Adds ``--seed`` (the seed of ``seed_of``), ``--quiet`` and ``--out``."""
    parser.add_argument(
        "--seed", type=int_at_least(0), default=0, metavar="S",
        help=f"seed of {seed_of} (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--out", required=True, metavar="DIR", help="results directory")


def classifier(out, model=None, dataset="mnist5k", epochs=None, seed=0, data_dir=None,
               verbose=0, name=CLASSIFIER_DIR, x=None, y=None):
    """Returns ``(model, facts)``: the classifier to attack and what identifies it.

    Args:
        out: The experiment's directory.
        model: Path of a saved classifier, or ``None`` to train the Carlini-Wagner
            classifier into ``out/name`` (reused when already there).
        dataset: Dataset to train on when training.
        epochs: Training epochs.
        seed: Training seed.
        data_dir: tensorflow-datasets cache directory.
        verbose: Keras ``fit`` verbosity.
        name: Subdirectory of ``out`` for a trained classifier.
        x: Optional training images replacing the train split (see
            :func:`uae_tf.models.train_classifier`).
        y: Their labels.

    Returns:
        The model and a JSON-serializable dict: ``path``, ``sha256`` of the
        ``.keras`` file, and ``test_accuracy`` and ``epochs`` when known.

    Raises:
        uae_tf.generation.ConfigMismatchError: if ``out/name`` holds a classifier
            trained with other settings.
    """
    if model is None:
        path = Path(out) / name
        path.mkdir(parents=True, exist_ok=True)
        check_config(path, {
            "dataset": dataset,
            "epochs": epochs,
            "seed": seed,
            "train_sha256": None if x is None else _array_sha256(x, y),
        })
        if not (path / MODEL_FILE).is_file():
            train_classifier(dataset, epochs=epochs, seed=seed, out=path, data_dir=data_dir,
                             verbose=verbose, x=x, y=y)
    else:
        path = Path(model)
    loaded, record = load_model_dir(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    facts = {"path": str(path), "sha256": file_sha256(model_file)}
    if record is not None:
        facts["test_accuracy"] = record.get("test_accuracy")
        facts["epochs"] = record.get("config", {}).get("epochs")
    return loaded, facts


def classifier_and_samples(args, out, say):
    """The experiment's classifier and the first ``args.n`` test samples it gets right.

    Trains the classifier into ``out`` unless ``args.model`` names one (see
    :func:`classifier`).

    Returns:
        ``(model, model_facts, x, y, indices)``: ``indices`` are the samples' rows in
        the test split.
    """
    say(f"Classifier: {args.model or Path(out) / CLASSIFIER_DIR}")
    model, model_facts = classifier(
        out, args.model, args.dataset, args.classifier_epochs, args.seed, args.data_dir,
        verbose=0 if args.quiet else 2,
    )
    x_test, y_test = datasets.load(args.dataset, "test", data_dir=args.data_dir)
    indices = correctly_classified(model, x_test, y_test, args.n)
    return model, model_facts, x_test[indices], y_test[indices], indices


def correctly_classified(model, x, y, n):
    """Returns the indices of the first ``n`` samples that ``model`` classifies correctly.

    Raises:
        ValueError: if fewer than ``n`` samples are classified correctly.
    """
    correct = np.flatnonzero(predict_labels(model, x) == y)
    if len(correct) < n:
        raise ValueError(
            f"The classifier classifies only {len(correct)} of the {len(x)} test samples "
            f"correctly, fewer than n={n}."
        )
    return correct[:n]


def attack_in_chunks(attack, x, labels, indices, directory, config, chunk_size=8):
    """Runs ``attack`` on ``x`` chunk by chunk, writing each chunk as it finishes.

    Rerun with the same ``config`` after an interruption, it attacks only the chunks
    not on disk; another ``config`` in the same directory is refused.

    Args:
        attack: A callable ``attack(x, labels=..., indices=...) -> AttackResult``.
        x: ``[N, ...]`` samples.
        labels: ``[N]`` labels.
        indices: ``[N]`` dataset rows of the samples (their seeds).
        directory: Where the chunks go.
        config: JSON-serializable facts identifying the run.
        chunk_size: Samples per chunk file.

    Returns:
        ``(result, seconds)``: the joined :class:`AttackResult` and the total wall
        time spent attacking (summed over the chunks, including earlier runs).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    check_config(directory, config)
    results, seconds = [], 0.0
    for start in range(0, len(x), chunk_size):
        path = directory / f"{start:08d}.npz"
        stop = min(start + chunk_size, len(x))
        if path.is_file():
            with np.load(path) as data:
                chunk = {k: data[k] for k in data.files}
        else:
            began = time.perf_counter()
            result = attack(x[start:stop], labels=labels[start:stop], indices=indices[start:stop])
            chunk = {k: getattr(result, k) for k in _RESULT_FIELDS}
            chunk["seconds"] = np.float64(time.perf_counter() - began)
            write_npz_atomic(path, **chunk)
        seconds += float(chunk["seconds"])
        results.append(AttackResult(**{k: chunk[k] for k in _RESULT_FIELDS}))
    return AttackResult.concatenate(results), seconds


def new_figure(**kwargs):
    """Returns a ``matplotlib.figure.Figure`` drawn with Agg, without pyplot.

    Figures made this way never touch pyplot's global backend, so the experiments
    run the same in a terminal without a display and inside a notebook.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _array_sha256(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
