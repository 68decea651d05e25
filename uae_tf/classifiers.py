"""Trains the Carlini-Wagner classifiers that the supervised attacks target.

:func:`train_classifier` fits :func:`autoencoders.classifiers.build_classifier` on the
train split of a dataset, measures its accuracy on the test split and, given ``out``,
writes (atomically, like :func:`uae_tf.training.train_autoencoder`)::

    OUT/model.keras   the classifier (logits output)
    OUT/train.json    history, config, versions, seconds, train and test accuracy

:func:`uae_tf.training.load_model_dir` reads them back.

Example:

>>> from uae_tf.classifiers import train_classifier
>>> model, record = train_classifier("mnist5k", epochs=10, out="runs/cw")  # doctest: +SKIP
>>> record["test_accuracy"]  # doctest: +SKIP
0.97...
"""

import numbers
import time
from pathlib import Path

import keras
import numpy as np

from autoencoders.classifiers import build_classifier
from uae_tf import datasets
from uae_tf._io import write_json_atomic
from uae_tf._provenance import versions
from uae_tf._validation import check_images, check_positive_int
from uae_tf.training import MODEL_FILE, RECORD_FILE, _save_model_atomic

# Carlini and Wagner's train_models.py (the published supervised code reuses it).
DEFAULT_EPOCHS = 50
DEFAULT_BATCH_SIZE = 128


def train_classifier(
    dataset,
    epochs=None,
    batch_size=DEFAULT_BATCH_SIZE,
    seed=0,
    out=None,
    data_dir=None,
    verbose=1,
    limit=None,
    x=None,
    y=None,
):
    """Trains the Carlini-Wagner classifier on a dataset's train split.

    Seeds Python, NumPy and TensorFlow with ``keras.utils.set_random_seed(seed)`` and
    the initializers and dropout with ``seed``, so the same arguments give the same
    model on the same machine.

    Args:
        dataset: One of ``uae_tf.datasets.DATASETS`` with images of at least 14x14
            (``"mnist5k"``, ``"mnist"``, ``"fashion_mnist"``, ``"svhn_cropped"``,
            ``"cifar10"``); its test split gives ``test_accuracy``.
        epochs: Training epochs; default 50, Carlini and Wagner's (about 4 minutes
            on the 4,000 ``mnist5k`` training digits on 2 CPU cores).
        batch_size: Training batch size (Carlini and Wagner: 128).
        seed: Integer seed (>= 0) of the initializers, dropout and shuffling.
        out: Directory to write ``model.keras`` and ``train.json`` into (created if
            missing), or ``None`` to write nothing.
        data_dir: tensorflow-datasets cache directory for the datasets that need one.
        verbose: Keras ``fit`` verbosity: 0 silent, 1 progress bar, 2 one line per
            epoch.
        limit: Train on the first ``limit`` training samples only.
        x: Optional training images ``[N, H, W, C]`` in [0, 1] used instead of the
            dataset's train split (for example the split plus adversarial
            examples); ``dataset`` still names the test split.
        y: Integer labels of ``x`` (required with ``x``).

    Returns:
        ``(model, record)``: the trained classifier (logits) and the dict written to
        ``train.json``: ``history`` (per-epoch loss and accuracy), ``config``
        (``arch="classifier"``, ``variant``, ``dataset``, ``epochs``, ``batch_size``,
        ``seed``, ``data_dir``, ``limit``, ``n_train``), ``versions``, ``seconds`` (wall time of
        ``fit``), ``train_accuracy`` and ``test_accuracy``.

    Raises:
        ValueError: for an unknown ``dataset``, images smaller than 14x14, or an
            invalid ``epochs``, ``batch_size``, ``seed``, ``limit``, ``x`` or ``y``.
        uae_tf.datasets.DatasetUnavailableError: if the dataset is neither cached nor
            downloadable.

    Example:

    >>> model, record = train_classifier("mnist5k", epochs=5, verbose=0)  # doctest: +SKIP
    >>> sorted(record["history"])  # doctest: +SKIP
    ['accuracy', 'loss']
    """
    if dataset not in datasets.DATASETS:
        raise ValueError(f"dataset must be one of {datasets.DATASETS}. Received: dataset={dataset!r}")
    epochs = check_positive_int(DEFAULT_EPOCHS if epochs is None else epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0. Received: seed={seed!r}")
    seed = int(seed)
    if limit is not None:
        limit = check_positive_int(limit, "limit")
    if (x is None) != (y is None):
        raise ValueError("x and y go together: pass both training images and labels, or neither.")
    if out is not None:
        # Created first, so an unusable ``out`` fails before a long training, not after.
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)

    if x is None:
        x, y = datasets.load(dataset, "train", data_dir=data_dir)
    else:
        x = check_images(x, "x")
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"y must have {len(x)} labels, one per image. Received {len(y)}")
    x, y = x[:limit], y[:limit]
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir)
    if x.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"x has samples of shape {x.shape[1:]}, but {dataset!r} has {x_test.shape[1:]}."
        )
    num_classes = int(max(y.max(), y_test.max())) + 1
    keras.utils.set_random_seed(seed)
    model = build_classifier(x.shape[1:], num_classes=max(num_classes, 2), seed=seed)
    start = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)
    seconds = time.perf_counter() - start

    record = {
        "history": {
            name: [float(value) for value in values] for name, values in history.history.items()
        },
        "config": {
            "arch": "classifier",
            "variant": model.name.removeprefix("cw_"),
            "dataset": dataset,
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "data_dir": None if data_dir is None else str(data_dir),
            "limit": limit,
            "n_train": len(x),
        },
        "versions": versions(),
        "seconds": seconds,
        "train_accuracy": accuracy(model, x, y),
        "test_accuracy": accuracy(model, x_test, y_test),
    }
    if out is not None:
        _save_model_atomic(model, out / MODEL_FILE)
        write_json_atomic(out / RECORD_FILE, record)
    return model, record


def predict_labels(model, x, batch_size=256):
    """Returns the ``[N]`` int64 predicted classes (argmax of the logits) of ``x``."""
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1).astype(np.int64)


def accuracy(model, x, y, batch_size=256):
    """Returns the fraction of ``x`` that ``model`` classifies as ``y``."""
    return float(np.mean(predict_labels(model, x, batch_size) == np.asarray(y).reshape(-1)))
