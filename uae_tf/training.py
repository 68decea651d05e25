"""Trains the paper's autoencoders on a dataset and saves them with what made them.

:func:`train_autoencoder` fits one of the four autoencoders of Section 5.4 on the
train split of a dataset (optionally augmented with UAEs, Section 5.4's
retraining) and, given ``out``, writes::

    OUT/model.keras   the reconstruction model Phi (plain keras.Model)
    OUT/train.json    history, config, versions, seconds, train and test
                      reconstruction errors

Both files are written atomically, so a killed run never leaves a half-written file.
:func:`load_model_dir` reads them back. With ``devices`` (or automatically, when
TensorFlow sees several GPUs) the model is built and compiled under a
``tf.distribute.MirroredStrategy`` and ``fit`` splits each batch across the devices
(see :mod:`uae_tf.distribution`).

Example:

>>> from uae_tf import training
>>> phi, record = training.train_autoencoder(
...     "conv", "mnist5k", epochs=1, out="runs/conv")  # doctest: +SKIP
>>> phi, record = training.load_model_dir("runs/conv")  # doctest: +SKIP
"""

import json
import time
import zipfile
from pathlib import Path

import keras

import autoencoders
from autoencoders import concrete
from uae_tf import datasets, distribution
from uae_tf._batches import shuffled_batches
from uae_tf._io import make_writable_dir, save_keras_atomic, write_json_atomic
from uae_tf._validation import check_choice, check_positive_int, check_seed
from uae_tf.augmentation import UAESequence
from uae_tf.evaluation import feature_selection_accuracy, reconstruction_error
from uae_tf.generation import GenerationResults, load_results
from uae_tf.runs import MODEL_FILE, RECORD_FILE, file_sha256, read_json, versions


def train_autoencoder(
    arch,
    dataset,
    epochs=None,
    batch_size=None,
    seed=0,
    out=None,
    data_dir=None,
    verbose=1,
    limit=None,
    augmentation=None,
    callbacks=None,
    transform=None,
    devices=None,
):
    """Trains one of the paper's autoencoders on a dataset's train split.

    With ``augmentation`` (UAEs or GA samples of the train split, from
    :func:`uae_tf.generate`) the model trains from scratch on the originals plus
    one augmentation each through a :class:`uae_tf.UAESequence`: failed UAEs and
    samples the results do not cover are replicated, as in the paper. With
    ``transform`` (Table 5's conventional augmentation) every batch is transformed
    on the fly, epoch by epoch, through a :class:`uae_tf.UAESequence`.

    ``seed`` alone fixes the randomness: the model's initializers (and the
    adversarial autoencoder's prior samples) and the shuffling of every epoch; the
    global Python, NumPy and TensorFlow random state is neither read nor changed.
    The same arguments give the same weights and history on the same machine.

    On several devices (``devices``; by default every GPU when TensorFlow sees two
    or more) the model is built and compiled under a
    ``tf.distribute.MirroredStrategy``: each batch of ``batch_size`` is split
    across the replicas and their gradients summed, which is the one-device step
    up to the order of float sums when a batch splits evenly (a batch that does
    not, such as a smaller last one, is averaged per replica). The data, its
    shuffles and the initial weights are the one-device run's. The dense and conv
    autoencoders follow the one-device loss history (measured on two logical
    CPUs: within 1e-7 relative); the sparse one's KL penalty is a statistic of
    each replica's share of the batch, and the adversarial one pairs each share
    with its own prior samples for the discriminator, so these follow it only
    closely (see the README's "Scaling out").

    Args:
        arch: One of ``autoencoders.ARCHITECTURES``: ``"dense"``, ``"sparse"``,
            ``"conv"``, ``"adversarial"``.
        dataset: One of ``uae_tf.datasets.DATASETS``, e.g. ``"mnist5k"``.
        epochs: Training epochs; default the paper's Table 8 value,
            ``autoencoders.default_epochs(arch, dataset, augmented)``.
        batch_size: Training batch size; default ``autoencoders.default_batch_size``
            (100, as published).
        seed: Integer seed (>= 0) of the initializers, shuffling and any other
            randomness.
        out: Directory to write ``model.keras`` and ``train.json`` into (created if
            missing), or ``None`` to write nothing.
        data_dir: tensorflow-datasets cache directory for the datasets that need one.
        verbose: Keras ``fit`` verbosity: 0 silent, 1 progress bar, 2 one line per
            epoch.
        limit: Train on the first ``limit`` samples of the split only.
        augmentation: Results of :func:`uae_tf.generate` over the same train
            split (rows matched by dataset index): a
            :class:`uae_tf.generation.GenerationResults` or its directory (loaded
            once here), a list of them (several augmentations per sample, appendix
            H), or ``None``. The record's ``config.augmentation`` (path, method, n,
            asr, sha256 of ``uae.npz``; a list for a list) comes from it.
        callbacks: Extra Keras callbacks for ``fit``.
        transform: ``None``, or a :class:`uae_tf.ConventionalAugmentation` applied to
            every training batch (inputs and targets alike), seeded by ``(seed,
            epoch, batch)``; recorded as ``config.transform`` (absent without one).
        devices: The devices to train on (see
            :func:`uae_tf.distribution.get_strategy`): ``None`` (automatic: every GPU
            when there are two or more, else one device), an int N (1: one device;
            N >= 2: the first N GPUs, or CPUs without a GPU) or names such as
            ``"GPU:0,GPU:1"``. Recorded as ``config.devices`` when given (absent
            otherwise, so configs of runs made before it stay as they were).

    Returns:
        ``(phi, record)``: the trained reconstruction model Phi (a plain
        ``keras.Model``) and the dict written to ``train.json``: ``history`` (per-epoch
        losses), ``config`` (``arch``, ``dataset``, ``epochs``, ``batch_size``,
        ``seed``, ``data_dir``, ``limit``, ``augmentation``), ``versions``,
        ``seconds`` (wall time of ``fit``), ``steps`` (gradient steps taken),
        ``replicas`` and ``devices`` (what it trained on, see
        :func:`uae_tf.distribution.describe`),
        ``train_reconstruction_error`` on the originals and
        ``test_reconstruction_error`` on the test split (see
        :func:`uae_tf.evaluation.reconstruction_error`).

    Raises:
        ValueError: for an unknown ``arch`` or ``dataset``, or an invalid ``epochs``,
            ``batch_size``, ``seed`` or ``devices`` (e.g. more devices than
            TensorFlow sees).
        uae_tf.datasets.DatasetUnavailableError: if the dataset is neither cached nor
            downloadable.

    Example:

    >>> phi, record = train_autoencoder("dense", "digits", epochs=2)  # doctest: +SKIP
    >>> sorted(record["history"])  # doctest: +SKIP
    ['loss']
    """
    check_choice(arch, autoencoders.ARCHITECTURES, "arch")
    check_choice(dataset, datasets.DATASETS, "dataset")
    if epochs is None:
        epochs = autoencoders.default_epochs(arch, dataset, augmented=augmentation is not None)
    epochs = check_positive_int(epochs, "epochs")
    if batch_size is None:
        batch_size = autoencoders.default_batch_size
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    devices = distribution.normalize(devices)
    strategy = distribution.get_strategy(devices)
    if out is not None:
        out = make_writable_dir(out)  # A read-only or full ``out`` fails before training.

    if limit is not None:
        limit = check_positive_int(limit, "limit")
    x, _ = datasets.load(dataset, "train", data_dir=data_dir)
    x = x[:limit]
    augmentation_config = None
    if augmentation is not None:
        several = isinstance(augmentation, (list, tuple))
        augmentation = [one if isinstance(one, GenerationResults) else load_results(one)
                        for one in (augmentation if several else [augmentation])]
        augmentation_config = [_augmentation_config(one, dataset) for one in augmentation]
        if not several:
            augmentation, augmentation_config = augmentation[0], augmentation_config[0]
        data = UAESequence.from_results(x, augmentation, batch_size=batch_size, seed=seed,
                                        transform=transform)
    elif transform is not None:
        data = UAESequence(x, None, batch_size=batch_size, seed=seed, transform=transform)
    if augmentation is not None or transform is not None:
        # The sequence shuffles from the seed; fit's shuffle would permute its batches
        # with the global `random` state.
        fit_args = {"x": data, "shuffle": False}
        steps_per_epoch = len(data)
    else:
        data, steps_per_epoch = shuffled_batches(x, batch_size=batch_size, seed=seed)
        # Shuffled from the seed already; fit's own shuffle would use the global seed.
        fit_args = {"x": data, "steps_per_epoch": steps_per_epoch, "shuffle": False}
    x_test, _ = datasets.load(dataset, "test", data_dir=data_dir)
    with strategy.scope():
        model = autoencoders.build(arch, x.shape[1:], seed=seed)
    start = time.perf_counter()
    history = model.fit(**fit_args, epochs=epochs, verbose=verbose, callbacks=callbacks)
    seconds = time.perf_counter() - start
    phi = autoencoders.reconstruction_model(model)

    record = {
        "history": {
            name: [float(value) for value in values] for name, values in history.history.items()
        },
        "config": {
            "arch": arch,
            "dataset": dataset,
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "data_dir": None if data_dir is None else str(data_dir),
            "limit": limit,
            "augmentation": augmentation_config,
        },
        "versions": versions(),
        "seconds": seconds,
        "steps": epochs * steps_per_epoch,
        **distribution.describe(strategy),
        "n_train": len(x),
        "train_reconstruction_error": reconstruction_error(phi, x),
        "test_reconstruction_error": reconstruction_error(phi, x_test),
    }
    if transform is not None:
        record["config"]["transform"] = transform.get_config()
    if devices is not None:
        record["config"]["devices"] = _devices_config(devices)
    if out is not None:
        save_keras_atomic(phi, out / MODEL_FILE)
        write_json_atomic(out / RECORD_FILE, record)
    return phi, record


def train_concrete(
    dataset,
    epochs=None,
    batch_size=None,
    seed=0,
    out=None,
    data_dir=None,
    verbose=1,
    limit=None,
    augmentation=None,
    callbacks=None,
    features=None,
    max_tries=concrete.MAX_TRIES,
    devices=None,
    dataset_options=None,
):
    """Trains the concrete autoencoder (Section 5.5) on a dataset's train split.

    As the published package: batch ``max(N // 256, 16)`` for the N rows fed (2N
    with UAEs), the temperature annealed over all the steps of a run, and the
    convergence rule of :func:`autoencoders.concrete.fit_until_converged` (train
    again with doubled epochs while the mean max selection probability is below
    0.998). With ``augmentation``, the training rows are the originals plus one
    augmentation each, as in :func:`train_autoencoder`. The labels serve only the
    downstream evaluation: an ExtraTrees classifier on the selected features of the
    original training rows, scored on the test split.

    Args:
        dataset: One of ``uae_tf.datasets.DATASETS`` (tabular or images; images are
            flattened inside the model).
        epochs: Epochs of the first run; default
            ``autoencoders.concrete.default_epochs(dataset)``.
        batch_size: Training batch size; default ``max(rows // 256, 16)``.
        seed: Integer seed (>= 0) of the initializers, Gumbel noise, dropout,
            shuffling and classifier.
        out: Directory for ``model.keras`` and ``train.json``, or ``None``.
        data_dir: tensorflow-datasets / download cache directory.
        verbose: Keras ``fit`` verbosity.
        limit: Train on the first ``limit`` samples of the split only.
        augmentation: Results of :func:`uae_tf.generate` over the same train split,
            or their directory, or ``None``.
        callbacks: Extra Keras callbacks for ``fit``.
        features: M, the features selected; default 50, 10 for ``mice_protein``.
        max_tries: Runs of the convergence rule at most (published: 5).
        devices: The devices to train on, as for :func:`train_autoencoder`. Under
            several replicas each draws the dropout masks of its share of the
            batch from the same seeded stream: the run is reproducible, but its
            masks are not the one-device run's.
        dataset_options: The dataset's options (:func:`uae_tf.datasets.options`),
            e.g. ``{"fill": "observed_mean"}`` for ``mice_protein``; default its
            defaults. Recorded, resolved, as ``config.dataset_options`` for a
            dataset that has options.

    Returns:
        ``(model, record)``: the trained concrete autoencoder (it is Phi) and the
        dict written to ``train.json``: as :func:`train_autoencoder`'s (``config``
        adds ``features``, ``max_tries``, ``dataset_options`` and, when given,
        ``devices``; ``steps`` and
        ``history`` are the last run's), plus ``tries`` (one dict per run of the
        convergence rule), ``epochs_trained``, ``selected_features``, ``mean_max_probability`` and
        ``test_accuracy`` (ExtraTrees on the selected features).

    Raises:
        ValueError: for an unknown ``dataset`` or invalid numbers.
        uae_tf.datasets.DatasetUnavailableError: if the dataset is neither cached nor
            downloadable.

    Example:

    >>> model, record = train_concrete("digits", epochs=5, features=10)  # doctest: +SKIP
    >>> record["selected_features"]  # doctest: +SKIP
    [36, 21, ...]
    """
    check_choice(dataset, datasets.DATASETS, "dataset")
    options = datasets.resolve_options(dataset, **(dataset_options or {}))
    epochs = check_positive_int(epochs or concrete.default_epochs(dataset), "epochs")
    features = check_positive_int(features or concrete.default_num_features(dataset), "features")
    max_tries = check_positive_int(max_tries, "max_tries")
    seed = check_seed(seed)
    devices = distribution.normalize(devices)
    strategy = distribution.get_strategy(devices)
    if out is not None:
        out = make_writable_dir(out)  # A read-only or full ``out`` fails before training.
    if limit is not None:
        limit = check_positive_int(limit, "limit")
    x, y = datasets.load(dataset, "train", data_dir=data_dir, **options)
    x, y = x[:limit], y[:limit]
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir, **options)
    augmentation_config = None
    if augmentation is not None:
        if not isinstance(augmentation, GenerationResults):
            augmentation = load_results(augmentation)
        augmentation_config = _augmentation_config(augmentation, dataset, options)
    rows = len(x) * (1 if augmentation is None else 2)
    batch_size = check_positive_int(batch_size or concrete.default_batch_size(rows), "batch_size")
    if augmentation is not None:
        data = UAESequence.from_results(x, augmentation, batch_size=batch_size, seed=seed)
        fit_args = {"x": data, "shuffle": False}
        steps_per_epoch = len(data)
    else:
        data, steps_per_epoch = shuffled_batches(x, batch_size=batch_size, seed=seed)
        fit_args = {"x": data, "steps_per_epoch": steps_per_epoch, "shuffle": False}

    def build(annealing_steps):
        with strategy.scope():
            # Whole epochs per call of the train function: the same updates as one
            # step per call (tests/test_concrete.py), several times faster for this
            # small model, whose steps are mostly Python and dispatch.
            return concrete.build_concrete(x.shape[1:], num_features=features,
                                           annealing_steps=annealing_steps, seed=seed,
                                           steps_per_execution=steps_per_epoch)

    def fit(model, run_epochs):
        return model.fit(**fit_args, epochs=run_epochs, verbose=verbose, callbacks=callbacks)

    start = time.perf_counter()
    model, history, tries = concrete.fit_until_converged(build, fit, epochs, steps_per_epoch,
                                                         max_tries=max_tries)
    seconds = time.perf_counter() - start
    selected = concrete.selected_features(model)
    record = {
        "history": {
            name: [float(value) for value in values] for name, values in history.history.items()
        },
        "config": {
            "arch": "concrete",
            "dataset": dataset,
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "data_dir": None if data_dir is None else str(data_dir),
            "limit": limit,
            "augmentation": augmentation_config,
            "features": features,
            "max_tries": max_tries,
            **({"dataset_options": options} if options else {}),
        },
        "versions": versions(),
        "seconds": seconds,
        "steps": tries[-1]["steps"],
        **distribution.describe(strategy),
        "epochs_trained": tries[-1]["epochs"],
        "tries": tries,
        "n_train": len(x),
        "selected_features": selected.tolist(),
        "mean_max_probability": tries[-1]["mean_max_probability"],
        "train_reconstruction_error": reconstruction_error(model, x),
        "test_reconstruction_error": reconstruction_error(model, x_test),
        "test_accuracy": feature_selection_accuracy(x, y, x_test, y_test, selected, seed=seed),
    }
    if devices is not None:
        record["config"]["devices"] = _devices_config(devices)
    if out is not None:
        save_keras_atomic(model, out / MODEL_FILE)
        write_json_atomic(out / RECORD_FILE, record)
    return model, record


def _augmentation_config(results, dataset, options=None):
    """The record's provenance of ``results``, checked against the dataset trained on."""
    made_on = (results.config.get("dataset"), results.config.get("split"))
    if made_on[0] is not None and made_on != (dataset, "train"):
        raise ValueError(
            f"{results.path} holds augmentations of {made_on[0]!r} ({made_on[1]} split); "
            f"expected the train split of {dataset!r}."
        )
    expected = datasets.resolve_options(dataset, **(options or {}))
    if made_on[0] is not None and expected:
        made_with = datasets.recorded_options(dataset, results.config.get("dataset_options"))
        if made_with != expected:
            raise ValueError(
                f"{results.path} holds augmentations of {dataset!r} loaded with options "
                f"{made_with}; expected {expected}. Generate them again with these options."
            )
    return {
        "path": str(results.path),
        "method": results.method,
        "n": len(results),
        "asr": results.attack_success_rate,
        "uae_sha256": results.sha256,
    }


def _devices_config(devices):
    """The record's ``config.devices``: the count asked for, or the device names as a list."""
    return devices if isinstance(devices, int) else list(devices)


def retrain(model, augment, epochs=None, seed=None, out=None, verbose=1, callbacks=None,
            devices=None, allow_other_model=False):
    """Trains the architecture of a saved model from scratch on originals plus augmentation.

    The training set, batch size and (by default) seed are the saved model's, read
    from its ``train.json``; epochs default to the "augmented" column of Table 8. A
    concrete autoencoder keeps its M features, and its batch size follows the
    doubled training set (``max(2N // 256, 16)``, as published).

    Args:
        model: Directory written by :func:`train_autoencoder` (``uae train``).
        augment: Results of :func:`uae_tf.generate` over that model's training
            set (``uae generate --split train``): a
            :class:`uae_tf.generation.GenerationResults` or its directory, loaded
            once.
        epochs: Training epochs (default: Table 8's augmented value).
        seed: Seed (default: the saved model's).
        out: Output directory, as for :func:`train_autoencoder`.
        verbose: Keras ``fit`` verbosity.
        callbacks: Extra Keras callbacks (e.g. :class:`uae_tf.UAERegeneration`).
        devices: The devices to train on, as for :func:`train_autoencoder`; not
            read from the saved model's record (the model is trained from scratch,
            on whatever devices this machine has).
        allow_other_model: Retrain on UAEs made against another model than
            ``model``. By default a generation whose config records the
            ``model_sha256`` of another file than ``model``'s ``model.keras`` (as
            ``uae generate`` records it) is refused: UAEs are specific to the
            model they fooled. Results that record no model hash are not checked.

    Returns:
        ``(phi, record)`` as :func:`train_autoencoder`.

    Raises:
        FileNotFoundError: if ``model`` has no ``train.json`` or ``augment`` no results.
        ValueError: if the augmentation was made on another dataset or split, or
            against another model (unless ``allow_other_model``), or ``devices``
            is invalid.
    """
    record_file = Path(model) / RECORD_FILE
    if not record_file.is_file():
        raise FileNotFoundError(
            f"No {RECORD_FILE} in {model}: retrain needs the directory `uae train` wrote, "
            "whose record names the architecture and data."
        )
    try:
        config = read_json(record_file, "training record")["config"]
        arch, dataset = config["arch"], config["dataset"]
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"{record_file} is not a training record (no config naming arch and dataset): "
            f"{type(error).__name__}: {error}"
        ) from error
    if arch != "concrete" and arch not in autoencoders.ARCHITECTURES:
        raise ValueError(
            f"{record_file} is the record of a {arch!r} model; retrain handles the "
            f"autoencoders {autoencoders.ARCHITECTURES + ('concrete',)}."
        )
    if not isinstance(augment, GenerationResults):
        augment = load_results(augment)
    _check_made_against(augment, Path(model) / MODEL_FILE, allow_other_model)
    if arch == "concrete":
        return train_concrete(
            dataset, epochs=epochs, seed=config.get("seed", 0) if seed is None else seed,
            out=out, data_dir=config.get("data_dir"), verbose=verbose,
            limit=config.get("limit"), augmentation=augment, callbacks=callbacks,
            features=config.get("features"),
            max_tries=config.get("max_tries", concrete.MAX_TRIES), devices=devices,
            dataset_options=datasets.recorded_options(dataset, config.get("dataset_options")),
        )
    return train_autoencoder(
        arch,
        dataset,
        epochs=epochs,
        batch_size=config.get("batch_size"),
        seed=config.get("seed", 0) if seed is None else seed,
        out=out,
        data_dir=config.get("data_dir"),
        verbose=verbose,
        limit=config.get("limit"),
        augmentation=augment,
        callbacks=callbacks,
        devices=devices,
    )


def _check_made_against(results, model_path, allow_other_model):
    """Raises a ValueError if ``results`` record a model hash other than ``model_path``'s."""
    made_against = results.config.get("model_sha256")
    if made_against is None or allow_other_model or not model_path.is_file():
        return
    actual = file_sha256(model_path)
    if made_against != actual:
        raise ValueError(
            f"{results.path} holds augmentations made against another model than "
            f"{model_path} (model_sha256 {made_against[:12]}..., this file's "
            f"{actual[:12]}...): UAEs are specific to the model they fool. Generate them "
            "against this model, or pass --allow-other-model (allow_other_model=True) to "
            "retrain on them anyway."
        )


def load_model_dir(path):
    """Loads a model saved by :func:`train_autoencoder` (or ``uae train``).

    Args:
        path: A directory holding ``model.keras`` (and usually ``train.json``), or a
            ``.keras`` file; a ``train.json`` beside the file is read too.

    Returns:
        ``(phi, record)``: the reconstruction model (loaded without its optimizer, for
        inference and attacks) and the ``train.json`` dict, or ``None`` when there is
        no ``train.json``.

    Raises:
        FileNotFoundError: if ``path`` does not exist, or is a directory without
            ``model.keras``.
        ValueError: if ``path`` is a file that is not a ``.keras`` file, or the
            ``.keras`` file or ``train.json`` cannot be read.

    Example:

    >>> phi, record = load_model_dir("runs/conv")  # doctest: +SKIP
    >>> record["config"]["arch"]  # doctest: +SKIP
    'conv'
    """
    path = Path(path)
    expected = (
        f"a directory holding {MODEL_FILE} (as written by `uae train --out DIR`) or a "
        ".keras file"
    )
    if path.is_dir():
        model_file = path / MODEL_FILE
        if not model_file.is_file():
            raise FileNotFoundError(f"No {MODEL_FILE} in {path}: expected {expected}.")
    elif path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path} is not a .keras file: expected {expected}.")
        model_file = path
    else:
        raise FileNotFoundError(f"Model path {path} does not exist: expected {expected}.")

    unreadable = (
        f"{model_file} is not a readable Keras model (a .keras zip archive saved by "
        "keras.Model.save)"
    )
    # Keras reports a file that is not a zip archive as "File not found", so check first.
    if not zipfile.is_zipfile(model_file):
        raise ValueError(f"{unreadable}: it is not a zip archive (corrupt or truncated file?)")
    try:
        model = keras.saving.load_model(model_file, compile=False)
    except Exception as error:  # A corrupt or foreign archive fails in many ways, all alike.
        raise ValueError(f"{unreadable}: {type(error).__name__}: {error}") from error

    record_file = model_file.parent / RECORD_FILE
    record = None
    if record_file.is_file():
        try:
            record = json.loads(record_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{record_file} is not a readable training record: {error}") from error
    return model, record

