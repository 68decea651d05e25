"""Training and evaluating SimCLR: pre-training, the test contrastive loss, the linear probe.

:func:`train_simclr` pre-trains :class:`~uae_tf.models.simclr.SimCLR` on a
dataset's train split (optionally plus one UAE per sample through a
:class:`uae_tf.UAESequence`) and, given ``out``, writes ``OUT/model.keras`` and
``OUT/train.json``. The record holds the test contrastive loss
(:func:`contrastive_loss`) and the linear-evaluation accuracy of both probe
protocols (:func:`linear_probe`: a linear classifier on the frozen encoder; the
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
from uae_tf._validation import check_choice, check_positive_int, check_seed
from uae_tf.augmentation import UAESequence
from uae_tf.generation import GenerationResults, load_results
from uae_tf.contrastive import apply_parameters, draw_crop_and_flip, nt_xent
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
# The linear probe's protocols (see linear_probe): the published fine-tuning of the
# head, the default where a result is compared with the paper's, and a linear
# classifier trained by Adam on fixed features of the originals.
PROBES = ("published", "frozen")
# The published fine-tuning command (IBM/UAE Unsupversied/simCLR/README.md, lines
# 54-60): momentum optimizer, learning rate 0.1 per 256 samples of a batch, no
# weight decay, no warm-up, 100 epochs of batches of 512.
PROBE_LEARNING_RATE = 0.1
PROBE_MOMENTUM = 0.9
FROZEN_PROBE_BATCH_SIZE = 256


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


def linear_probe(encoder, x_train, y_train, x_test, y_test, protocol="published",
                 epochs=PROBE_EPOCHS, batch_size=None, seed=0):
    """Linear evaluation: a linear classifier on the frozen encoder, by one of two protocols.

    ``"published"`` is the paper's: the published MINE-UAE row fine-tunes only a
    linear head on the frozen ResNet (``run_uae.py --train_mode=finetune
    --fine_tune_after_block=4 --zero_init_logits_layer=True --optimizer=momentum
    --learning_rate=0.1 --weight_decay=0.0 --train_epochs=100
    --train_batch_size=512 --warmup_epochs=0 --uae_path=...``, IBM/UAE
    ``Unsupversied/simCLR/README.md`` lines 54-60), so:

    * the training images are what the caller passes: for the published MINE-UAE
      row, the originals plus their UAEs with the originals' labels copied
      (``run_uae.py`` lines 359-362; :func:`train_simclr` passes them);
    * every step draws a fresh random resized crop and flip of each image
      (:func:`uae_tf.contrastive.draw_crop_and_flip`; ``data.py`` lines 125-139:
      the fine-tuning preprocessing without colour distortion); test images are
      used whole, as the published code does for images of 32 pixels or fewer
      (``data.py`` lines 174-177);
    * the encoder runs in inference mode, its batch-norm statistics fixed
      (``model.py`` lines 61-67); the head, a ``Dense(num_classes)`` with bias on
      the encoder's features (no projection head, no normalization), starts at zero
      (``model.py`` lines 169-180) and is the only thing trained (lines 97-102);
    * softmax cross-entropy, SGD with Nesterov momentum 0.9 (``model_util.py``
      lines 86-90), learning rate 0.1 x batch / 256, cosine decay to 0 over all the
      steps, no warm-up (lines 59-83), no weight decay.

    ``"frozen"`` (uae-tf's before issue 27): the features are computed once
    (inference mode, no augmentation); a ``Normalization`` layer standardizes them
    with the training features' statistics and a ``Dense(num_classes)`` trained by
    Adam (1e-3) reads them.

    The labels are used here only.

    Args:
        encoder: The encoder (images -> features).
        x_train, y_train: Training images and labels.
        x_test, y_test: Test images and labels.
        protocol: ``"published"`` (default) or ``"frozen"``.
        epochs: Epochs over ``x_train`` (published: 100).
        batch_size: Samples per step; default 512 (published) or 256 (frozen).
        seed: Seed of the initializer (frozen), the shuffling and the crops.

    Returns:
        ``(result, head)``: the dict ``{"protocol", "train_accuracy",
        "test_accuracy", "epochs", "batch_size", "steps", "n_train"}`` (train
        accuracy on the unaugmented training images) and the linear classifier
        (features -> logits); ``keras.Sequential([encoder, head])`` classifies images.

    Example:

    >>> result, head = linear_probe(model.encoder, x, y, x_test, y_test)  # doctest: +SKIP
    >>> result["test_accuracy"]  # doctest: +SKIP
    """
    check_choice(protocol, PROBES, "protocol")
    epochs = check_positive_int(epochs, "epochs")
    default_batch = PAPER_BATCH_SIZE if protocol == "published" else FROZEN_PROBE_BATCH_SIZE
    batch_size = check_positive_int(batch_size or default_batch, "batch_size")
    seed = check_seed(seed)
    if len(y_train) != len(x_train):
        raise ValueError(f"y_train must have {len(x_train)} labels, one per image. "
                         f"Received {len(y_train)}")
    features = encoder.predict(x_train, batch_size=256, verbose=0)
    test_features = encoder.predict(x_test, batch_size=256, verbose=0)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if protocol == "published":
        head, steps = _fine_tune_head(encoder, x_train, y_train, features.shape[1:], num_classes,
                                      epochs, batch_size, seed)
    else:
        head, steps = _fit_on_features(features, y_train, num_classes, epochs, batch_size, seed)
    return {
        "protocol": protocol,
        "train_accuracy": _accuracy(head, features, y_train),
        "test_accuracy": _accuracy(head, test_features, y_test),
        "epochs": epochs,
        "batch_size": batch_size,
        "steps": steps,
        "n_train": len(x_train),
    }, head


def _accuracy(head, features, labels):
    logits = head.predict(features, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels).reshape(-1)))


def _fit_on_features(features, labels, num_classes, epochs, batch_size, seed):
    """The ``frozen`` probe: Normalization + Dense trained by Adam on fixed features."""
    head = keras.Sequential([
        keras.Input(features.shape[1:]),
        keras.layers.Normalization(mean=features.mean(axis=0),
                                   variance=features.var(axis=0) + 1e-6),
        keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed)),
    ], name="linear_probe")
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data, steps = shuffled_batches(features, labels, batch_size=batch_size, seed=seed)
    head.fit(data, steps_per_epoch=steps, epochs=epochs, shuffle=False, verbose=0)
    return head, epochs * steps


def _fine_tune_head(encoder, x, labels, feature_shape, num_classes, epochs, batch_size, seed):
    """The ``published`` probe: a zero-initialized head fine-tuned on crops and flips."""
    head = keras.Sequential([
        keras.Input(feature_shape),
        keras.layers.Dense(num_classes, kernel_initializer="zeros"),
    ], name="linear_probe")
    data, steps_per_epoch = shuffled_batches(x, labels, batch_size=batch_size, seed=seed)
    total = epochs * steps_per_epoch
    optimizer = keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(PROBE_LEARNING_RATE * batch_size / 256, total),
        momentum=PROBE_MOMENTUM, nesterov=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    image_shape = x.shape[1:]

    @tf.function(reduce_retracing=True)
    def step(images, targets, index):
        crops = draw_crop_and_flip(tf.stack([tf.constant(seed, tf.int32), index]),
                                   tf.shape(images)[0], image_shape)
        features = encoder(apply_parameters(images, crops), training=False)
        with tf.GradientTape() as tape:
            value = loss(targets, head(features, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, head.trainable_variables),
                                      head.trainable_variables))

    for index, (images, targets) in enumerate(data.take(total)):
        step(images, targets, tf.constant(index, tf.int32))
    return head, total


def train_simclr(dataset, epochs=None, batch_size=None, seed=0, out=None, data_dir=None,
                 verbose=1, limit=None, augmentation=None, callbacks=None, encoder=None,
                 optimizer=None, probe_epochs=PROBE_EPOCHS):
    """Pre-trains SimCLR on a dataset's train split; evaluates the loss and both linear probes.

    Args:
        dataset: One of ``uae_tf.datasets.DATASETS``.
        epochs: Pre-training epochs (default :func:`default_epochs`).
        batch_size: Batch size, the negatives of each pair (default
            :func:`default_batch_size`); the ``published`` probe's batch too.
        seed: Seed of the initializers, augmentations and shuffling.
        out: Directory for ``model.keras`` and ``train.json``, or ``None``.
        data_dir: tensorflow-datasets cache directory.
        verbose: Keras ``fit`` verbosity.
        limit: Train on the first ``limit`` samples only (the probes too).
        augmentation: UAEs of those samples (:class:`uae_tf.generation.GenerationResults`
            or its directory): train on originals plus UAEs, failed ones replicated.
            The ``published`` probe then trains on the same originals plus UAEs with
            the originals' labels, as the published MINE-UAE row; the ``frozen``
            probe on the originals alone.
        callbacks: Extra Keras callbacks.
        encoder: ``"small"`` or ``"resnet18"`` (default :func:`default_encoder`).
        optimizer: ``"adam"`` or ``"lars"`` (default: LARS for ResNet-18, else Adam).
        probe_epochs: Epochs of each linear probe.

    Returns:
        ``(model, record)``: the :class:`~uae_tf.models.simclr.SimCLR` and the dict
        written to ``train.json`` (``history``, ``config``, ``versions``, ``seconds``,
        ``steps``, ``n_train``, ``test_contrastive_loss``, ``linear_probe``: one
        result of :func:`linear_probe` per protocol of :data:`PROBES`).
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
    # What each probe trains on: the published one on what pre-training saw.
    probe_data = {"published": (x, y), "frozen": (x, y)}
    if augmentation is not None:
        if not isinstance(augmentation, GenerationResults):
            augmentation = load_results(augmentation)
        augmentation_config = _augmentation_config(augmentation, dataset)
        data = UAESequence.from_results(x, augmentation, y=y, batch_size=batch_size, seed=seed)
        fit_args, steps_per_epoch = {"x": data}, len(data)
        probe_data["published"] = (data.x_pool, data.y)
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
    probes = {
        protocol: linear_probe(model.encoder, *probe_data[protocol], x_test, y_test,
                               protocol=protocol, epochs=probe_epochs, seed=seed,
                               batch_size=batch_size if protocol == "published" else None)[0]
        for protocol in PROBES
    }
    record = {
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "config": {"arch": "simclr", "dataset": dataset, "encoder": encoder,
                   "optimizer": optimizer, "epochs": epochs, "batch_size": batch_size,
                   "seed": int(seed), "data_dir": None if data_dir is None else str(data_dir),
                   "limit": limit, "augmentation": augmentation_config,
                   "probe_epochs": probe_epochs},
        "versions": versions(),
        "seconds": seconds,
        "steps": total_steps,
        "n_train": len(x),
        "test_contrastive_loss": contrastive_loss(model, x_test, batch_size, seed),
        "linear_probe": probes,
    }
    if out is not None:
        save_keras_atomic(model, out / MODEL_FILE)
        write_json_atomic(out / RECORD_FILE, record)
    return model, record
