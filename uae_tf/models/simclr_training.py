"""Training and evaluating SimCLR: pre-training, the test contrastive loss, the linear probe.

:func:`train_simclr` pre-trains :class:`~uae_tf.models.simclr.SimCLR` on a
dataset's train split (optionally plus one UAE per sample through a
:class:`uae_tf.UAESequence`) and, given ``out``, writes ``OUT/model.keras`` and
``OUT/train.json``. The record holds the test contrastive loss
(:func:`contrastive_loss`) and the linear-evaluation accuracy
(:func:`linear_probe`: a linear classifier on the frozen encoder's features; the
labels are used there only).

Example:

>>> model, record = train_simclr("mnist5k", epochs=10, limit=1000, out="runs/simclr")  # doctest: +SKIP
>>> record["linear_probe"]["test_accuracy"]  # doctest: +SKIP
"""

import time

import keras
import numpy as np
import tensorflow as tf

from uae_tf import datasets
from uae_tf._batches import shuffled_batches
from uae_tf._io import make_writable_dir, save_keras_atomic, write_json_atomic
from uae_tf._validation import check_positive_int, check_seed
from uae_tf.augmentation import UAESequence
from uae_tf.generation import GenerationResults, load_results
from uae_tf.contrastive import nt_xent
from uae_tf.models.simclr import build_simclr
from uae_tf.runs import MODEL_FILE, RECORD_FILE, versions
from uae_tf.training import _augmentation_config

# The paper's recipe (CIFAR-10, ResNet-18, batch 512, LARS: published README) and
# a CPU one (small encoder, Adam).
PAPER_EPOCHS = {"original": 1000, "augmented": 1500}
CPU_EPOCHS = {"original": 15, "augmented": 15}
PAPER_BATCH_SIZE = 512
CPU_BATCH_SIZE = 128
PROBE_EPOCHS = 100


def default_encoder(dataset):
    """``"resnet18"`` for CIFAR-10 (the paper's), ``"small"`` for the others (CPU)."""
    return "resnet18" if dataset == "cifar10" else "small"


def default_epochs(dataset, augmented=False):
    """Pre-training epochs: the published 1000 (1500 with UAEs) on CIFAR-10, else 15."""
    epochs = PAPER_EPOCHS if dataset == "cifar10" else CPU_EPOCHS
    return epochs["augmented" if augmented else "original"]


def default_batch_size(dataset):
    """512 on CIFAR-10 (the paper's), 128 on the others."""
    return PAPER_BATCH_SIZE if dataset == "cifar10" else CPU_BATCH_SIZE


def contrastive_loss(model, x, batch_size=256, seed=0):
    """The mean NT-Xent loss of ``model`` over batches of ``x``, with seeded augmentations.

    Batch i's two views are drawn from the stream ``(seed, i)``, so the value
    depends on the model and ``seed`` only (inference mode: batch-norm statistics
    fixed).

    Args:
        model: A :class:`~uae_tf.models.simclr.SimCLR`.
        x: ``[N, H, W, C]`` images.
        batch_size: Samples per batch (the negatives of each sample).
        seed: Seed of the augmentations.

    Returns:
        The mean over batches, a float.
    """
    @tf.function(reduce_retracing=True)
    def batch_loss(batch, stream):
        doubled = tf.concat([batch, batch], axis=0)
        views = model.augmenter(doubled, seed=tf.stack([tf.constant(int(seed)), stream]))
        z1, z2 = tf.split(model(views, training=False), 2, axis=0)
        return nt_xent(z1, z2, model.temperature)

    losses = [float(batch_loss(tf.constant(x[start:start + batch_size]), tf.constant(i)))
              for i, start in enumerate(range(0, len(x), batch_size))]
    return float(np.mean(losses))


def linear_probe(encoder, x_train, y_train, x_test, y_test, epochs=PROBE_EPOCHS, seed=0):
    """Linear evaluation: a linear classifier trained on the frozen encoder's features.

    Features are computed once (inference mode); the classifier standardizes them
    with the training features' statistics (a ``Normalization`` layer) and a
    ``Dense(num_classes)`` trained by Adam reads them. The labels are used here only.

    Args:
        encoder: The encoder (images -> features).
        x_train, y_train: Training images and labels.
        x_test, y_test: Test images and labels.
        epochs: Epochs of the linear classifier.
        seed: Seed of its initializer and shuffling.

    Returns:
        ``(result, head)``: the dict ``{"train_accuracy", "test_accuracy", "epochs"}``
        and the linear classifier (features -> logits);
        ``keras.Sequential([encoder, head])`` classifies images.
    """
    features = encoder.predict(x_train, batch_size=256, verbose=0)
    test_features = encoder.predict(x_test, batch_size=256, verbose=0)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    head = keras.Sequential([
        keras.Input(features.shape[1:]),
        keras.layers.Normalization(mean=features.mean(axis=0),
                                   variance=features.var(axis=0) + 1e-6),
        keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed)),
    ], name="linear_probe")
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    data, steps = shuffled_batches(features, y_train, batch_size=256, seed=seed)
    head.fit(data, steps_per_epoch=steps, epochs=epochs, shuffle=False, verbose=0)
    return {
        "train_accuracy": float(head.evaluate(features, y_train, verbose=0)[1]),
        "test_accuracy": float(head.evaluate(test_features, y_test, verbose=0)[1]),
        "epochs": epochs,
    }, head


def train_simclr(dataset, epochs=None, batch_size=None, seed=0, out=None, data_dir=None,
                 verbose=1, limit=None, augmentation=None, callbacks=None, encoder=None,
                 optimizer=None, probe_epochs=PROBE_EPOCHS):
    """Pre-trains SimCLR on a dataset's train split; evaluates the loss and the linear probe.

    Args:
        dataset: One of ``uae_tf.datasets.DATASETS``.
        epochs: Pre-training epochs (default :func:`default_epochs`).
        batch_size: Batch size, the negatives of each pair (default
            :func:`default_batch_size`).
        seed: Seed of the initializers, augmentations and shuffling.
        out: Directory for ``model.keras`` and ``train.json``, or ``None``.
        data_dir: tensorflow-datasets cache directory.
        verbose: Keras ``fit`` verbosity.
        limit: Train on the first ``limit`` samples only (the probe too).
        augmentation: UAEs of those samples (:class:`uae_tf.generation.GenerationResults`
            or its directory): train on originals plus UAEs, failed ones replicated.
        callbacks: Extra Keras callbacks.
        encoder: ``"small"`` or ``"resnet18"`` (default :func:`default_encoder`).
        optimizer: ``"adam"`` or ``"lars"`` (default: LARS for ResNet-18, else Adam).
        probe_epochs: Epochs of the linear probe.

    Returns:
        ``(model, record)``: the :class:`~uae_tf.models.simclr.SimCLR` and the dict
        written to ``train.json`` (``history``, ``config``, ``versions``, ``seconds``,
        ``steps``, ``n_train``, ``test_contrastive_loss``, ``linear_probe``).
    """
    if dataset not in datasets.DATASETS:
        raise ValueError(f"dataset must be one of {datasets.DATASETS}. Received: dataset={dataset!r}")
    epochs = check_positive_int(
        epochs or default_epochs(dataset, augmented=augmentation is not None), "epochs")
    batch_size = check_positive_int(batch_size or default_batch_size(dataset), "batch_size")
    seed = check_seed(seed)
    encoder = encoder or default_encoder(dataset)
    optimizer = optimizer or ("lars" if encoder == "resnet18" else "adam")
    if out is not None:
        out = make_writable_dir(out)  # A read-only or full ``out`` fails before training.
    if limit is not None:
        limit = check_positive_int(limit, "limit")
    x, y = datasets.load(dataset, "train", data_dir=data_dir)
    x, y = x[:limit], y[:limit]
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir)
    augmentation_config = None
    if augmentation is not None:
        if not isinstance(augmentation, GenerationResults):
            augmentation = load_results(augmentation)
        augmentation_config = _augmentation_config(augmentation, dataset)
        data = UAESequence.from_results(x, augmentation, batch_size=batch_size, seed=seed)
        fit_args, steps_per_epoch = {"x": data}, len(data)
    else:
        data, steps_per_epoch = shuffled_batches(x, batch_size=batch_size, seed=seed)
        fit_args = {"x": data, "steps_per_epoch": steps_per_epoch, "shuffle": False}
    total_steps = epochs * steps_per_epoch
    model = build_simclr(x.shape[1:], seed=seed, encoder=encoder, optimizer=optimizer,
                         learning_rate=1.0 * batch_size / 256 if optimizer == "lars" else None,
                         total_steps=total_steps, warmup_steps=min(10, epochs) * steps_per_epoch
                         if optimizer == "lars" else 0)
    start = time.perf_counter()
    history = model.fit(**fit_args, epochs=epochs, verbose=verbose, callbacks=callbacks)
    seconds = time.perf_counter() - start
    probe, _ = linear_probe(model.encoder, x, y, x_test, y_test, epochs=probe_epochs, seed=seed)
    record = {
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "config": {"arch": "simclr", "dataset": dataset, "encoder": encoder,
                   "optimizer": optimizer, "epochs": epochs, "batch_size": batch_size,
                   "seed": int(seed), "data_dir": None if data_dir is None else str(data_dir),
                   "limit": limit, "augmentation": augmentation_config},
        "versions": versions(),
        "seconds": seconds,
        "steps": total_steps,
        "n_train": len(x),
        "test_contrastive_loss": contrastive_loss(model, x_test, batch_size, seed),
        "linear_probe": probe,
    }
    if out is not None:
        save_keras_atomic(model, out / MODEL_FILE)
        write_json_atomic(out / RECORD_FILE, record)
    return model, record

