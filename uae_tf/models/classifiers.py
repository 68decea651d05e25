"""The Carlini-Wagner classifiers the paper attacks (Section 5.1, supervised setting).

The paper's supervised experiments (Table 3, Figures 2 and 3) attack "the pretrained
MNIST and CIFAR-10 deep neural network classifiers used in [Carlini and Wagner,
2017]". The published ``train_models.py`` builds both from one template::

    Conv2D(a, 3x3) relu -> Conv2D(a, 3x3) relu -> MaxPool(2)
    -> Conv2D(b, 3x3) relu -> Conv2D(b, 3x3) relu -> MaxPool(2)
    -> Flatten -> Dense(d) relu -> Dropout(0.5) -> Dense(d) relu -> Dense(classes)

with ``(a, b, d) = (32, 64, 200)`` for MNIST and ``(64, 128, 256)`` for CIFAR-10,
``valid`` padding, and logits as output (the margin criterion needs logits). It is
trained with softmax cross-entropy by SGD (learning rate 0.01, Keras 2 ``decay``
1e-6, momentum 0.9, Nesterov), batch 128, 50 epochs.

:func:`build_classifier` builds it; :func:`train_classifier` fits it on the train
split of a dataset, measures its accuracy on the test split and, given ``out``,
writes (atomically, like :func:`uae_tf.training.train_autoencoder`)::

    OUT/model.keras   the classifier (logits output)
    OUT/train.json    history, config, versions, seconds, train and test accuracy

:func:`uae_tf.training.load_model_dir` reads them back.

Example:

>>> from uae_tf.models import train_classifier
>>> model, record = train_classifier("mnist5k", epochs=10, out="runs/cw")  # doctest: +SKIP
>>> record["test_accuracy"]  # doctest: +SKIP
0.97...
"""

import time

import keras
import numpy as np
import tensorflow as tf

from autoencoders._common import check_input_shape, kernel_initializer
from uae_tf import datasets
from uae_tf._batches import shuffled_batches
from uae_tf._io import make_writable_dir, save_keras_atomic, write_json_atomic
from uae_tf._validation import (
    check_choice,
    check_images,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from uae_tf.runs import MODEL_FILE, RECORD_FILE, versions

VARIANTS = ("auto", "mnist", "cifar")

# (filters of the first block, filters of the second block, dense units).
_WIDTHS = {"mnist": (32, 64, 200), "cifar": (64, 128, 256)}

# Smallest height/width the stack accepts: two valid 3x3 convs (-4), pool (/2),
# two more (-4) and a pool leave at least 1 pixel (16 -> 12 -> 6 -> 2 -> 1).
MIN_SIZE = 16

DEFAULT_LEARNING_RATE = 0.01
DEFAULT_DECAY = 1e-6
DEFAULT_MOMENTUM = 0.9
# Carlini and Wagner's train_models.py (the published supervised code reuses it).
DEFAULT_EPOCHS = 50
DEFAULT_BATCH_SIZE = 128


def build_classifier(input_shape, num_classes=10, seed=None, variant="auto"):
    """Builds the compiled Carlini-Wagner classifier (logits output).

    Args:
        input_shape: ``(height, width, channels)`` of one sample, height and width at
            least 16 (MNIST: ``(28, 28, 1)``, CIFAR-10: ``(32, 32, 3)``).
        num_classes: Number of classes (the width of the logits), >= 2.
        seed: Integer seed of the weight initializers and of the dropout layer, or
            ``None``.
        variant: ``"mnist"`` (conv 32-32, 64-64, dense 200-200), ``"cifar"`` (conv
            64-64, 128-128, dense 256-256) or ``"auto"``: ``"mnist"`` for one-channel
            inputs, ``"cifar"`` for colour ones.

    Returns:
        A ``keras.Model`` named ``cw_mnist`` or ``cw_cifar``, compiled with SGD
        (learning rate 0.01 with the Keras 2 decay 1e-6 as an ``InverseTimeDecay``,
        momentum 0.9, Nesterov),
        ``SparseCategoricalCrossentropy(from_logits=True)`` and accuracy; train it
        with ``model.fit(x, y, batch_size=128, ...)`` (integer labels).

    Raises:
        ValueError: for an invalid ``input_shape``, ``num_classes`` or ``variant``.

    Example:

    >>> model = build_classifier((28, 28, 1), seed=0)
    >>> model.output_shape
    (None, 10)
    """
    input_shape = check_input_shape(input_shape, "classifier")
    if len(input_shape) != 3:
        raise ValueError(
            "The classifier needs input_shape=(height, width, channels). "
            f"Received: input_shape={input_shape}"
        )
    if min(input_shape[:2]) < MIN_SIZE:
        raise ValueError(
            f"The Carlini-Wagner classifier needs images of at least {MIN_SIZE}x{MIN_SIZE} "
            "(four valid 3x3 convolutions and two 2x2 poolings). Received: "
            f"input_shape={input_shape}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}. Received: variant={variant!r}")
    if variant == "auto":
        variant = "mnist" if input_shape[-1] == 1 else "cifar"
    first, second, units = _WIDTHS[variant]

    inputs = keras.Input(shape=input_shape, name="x")
    h = inputs
    for i, filters in enumerate((first, first, second, second)):
        h = keras.layers.Conv2D(filters, (3, 3), activation="relu",
                                kernel_initializer=kernel_initializer(seed, i),
                                name=f"conv{i + 1}")(h)
        if i % 2:
            h = keras.layers.MaxPooling2D((2, 2), name=f"pool{i // 2 + 1}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_initializer(seed, 4),
                           name="dense1")(h)
    h = keras.layers.Dropout(0.5, seed=seed, name="dropout")(h)
    h = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_initializer(seed, 5),
                           name="dense2")(h)
    logits = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer(seed, 6),
                                name="logits")(h)
    model = keras.Model(inputs, logits, name=f"cw_{variant}")
    model.compile(**_compile_arguments())
    return model


def _compile_arguments():
    """The optimizer, loss and metrics of Carlini and Wagner's training, fresh."""
    # Keras 2's ``decay`` scaled the rate by 1 / (1 + decay * iterations).
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        DEFAULT_LEARNING_RATE, decay_steps=1, decay_rate=DEFAULT_DECAY
    )
    return {
        "optimizer": keras.optimizers.SGD(schedule, momentum=DEFAULT_MOMENTUM, nesterov=True),
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "metrics": ["accuracy"],
    }


def train_classifier(
    dataset,
    epochs=None,
    batch_size=None,
    seed=0,
    out=None,
    data_dir=None,
    verbose=1,
    limit=None,
    x=None,
    y=None,
    adversary=None,
    clean_epochs=0,
    ramp_epochs=0,
    trades_beta=None,
):
    """Trains the Carlini-Wagner classifier on a dataset's train split.

    ``seed`` alone fixes the randomness: the initializers, the dropout masks and the
    shuffling of every epoch; the global Python, NumPy and TensorFlow random state
    is neither read nor changed. The same arguments give the same model on the same
    machine.

    Args:
        dataset: One of ``uae_tf.datasets.DATASETS`` with images of at least 16x16
            (``"mnist5k"``, ``"mnist"``, ``"fashion_mnist"``, ``"svhn_cropped"``,
            ``"cifar10"``); its test split gives ``test_accuracy``.
        epochs: Training epochs; default 50, Carlini and Wagner's (about 4 minutes
            on the 4,000 ``mnist5k`` training digits on 2 CPU cores).
        batch_size: Training batch size; default 128, Carlini and Wagner's.
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
        adversary: ``None``, or a callable ``adversary(model)`` returning an attack
            of ``model`` for :class:`AdversarialTraining` (for example
            ``functools.partial(uae_tf.PGDAttack, epsilon=0.3, steps=40,
            step_size=0.01, loss="crossentropy", random_start=True)``, Madry et
            al.'s MNIST setting): every batch replaced by the attack's examples
            against the model being trained. The attack's ``get_config()`` is
            recorded as ``config.adversary``.
        clean_epochs: With ``adversary``, train the first ``clean_epochs`` epochs on
            the clean batches (default 0; see :class:`AdversarialTraining`).
        ramp_epochs: With ``adversary``, then grow epsilon linearly from 0 to the
            attack's over ``ramp_epochs`` epochs (default 0: the full epsilon at
            once). Both are recorded as ``config.adversary_schedule``.
        trades_beta: With ``adversary``, ``None`` (default) trains Madry et al.'s
            objective (:class:`AdversarialTraining`); a float beta trains TRADES's
            (:class:`TRADESTraining`; Zhang et al.'s MNIST beta is 1.0, and the
            adversary should maximize the KL: ``PGDAttack(loss="kl")``). Recorded
            as ``config.trades_beta``.

    Returns:
        ``(model, record)``: the trained classifier (logits) and the dict written to
        ``train.json``: ``history`` (per-epoch loss and accuracy), ``config``
        (``arch="classifier"``, ``variant``, ``dataset``, ``epochs``, ``batch_size``,
        ``seed``, ``data_dir``, ``limit``, ``n_train``), ``versions``, ``seconds`` (wall time of
        ``fit``), ``train_accuracy`` and ``test_accuracy``.

    Raises:
        ValueError: for an unknown ``dataset``, images smaller than 16x16, or an
            invalid ``epochs``, ``batch_size``, ``seed``, ``limit``, ``x``, ``y``,
            ``clean_epochs``, ``ramp_epochs`` (non-zero without ``adversary``) or
            ``trades_beta`` (not positive, or without ``adversary``).
        uae_tf.datasets.DatasetUnavailableError: if the dataset is neither cached nor
            downloadable.

    Example:

    >>> model, record = train_classifier("mnist5k", epochs=5, verbose=0)  # doctest: +SKIP
    >>> sorted(record["history"])  # doctest: +SKIP
    ['accuracy', 'loss']
    """
    check_choice(dataset, datasets.DATASETS, "dataset")
    epochs = check_positive_int(DEFAULT_EPOCHS if epochs is None else epochs, "epochs")
    batch_size = check_positive_int(
        DEFAULT_BATCH_SIZE if batch_size is None else batch_size, "batch_size")
    seed = check_seed(seed)
    if limit is not None:
        limit = check_positive_int(limit, "limit")
    schedule = {"clean_epochs": check_non_negative_int(clean_epochs, "clean_epochs"),
                "ramp_epochs": check_non_negative_int(ramp_epochs, "ramp_epochs")}
    if adversary is None and any(schedule.values()):
        raise ValueError(
            f"clean_epochs and ramp_epochs schedule adversarial training; pass an adversary "
            f"too. Received: clean_epochs={clean_epochs!r}, ramp_epochs={ramp_epochs!r}, "
            "adversary=None"
        )
    if trades_beta is not None:
        if adversary is None:
            raise ValueError("trades_beta weighs TRADES's robust term; pass an adversary too. "
                             f"Received: trades_beta={trades_beta!r}, adversary=None")
        trades_beta = check_positive_float(trades_beta, "trades_beta")
    if (x is None) != (y is None):
        raise ValueError("x and y go together: pass both training images and labels, or neither.")
    if out is not None:
        out = make_writable_dir(out)  # A read-only or full ``out`` fails before training.

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
    model = build_classifier(x.shape[1:], num_classes=max(num_classes, 2), seed=seed)
    data, steps_per_epoch = shuffled_batches(x, y, batch_size=batch_size, seed=seed)
    trained, attack = model, None
    if adversary is not None:
        attack = adversary(model)
        steps = {"clean_steps": schedule["clean_epochs"] * steps_per_epoch,
                 "ramp_steps": schedule["ramp_epochs"] * steps_per_epoch}
        trained = (AdversarialTraining(model, attack, seed=seed, **steps) if trades_beta is None
                   else TRADESTraining(model, attack, beta=trades_beta, seed=seed, **steps))
    start = time.perf_counter()
    history = trained.fit(data, steps_per_epoch=steps_per_epoch, epochs=epochs, shuffle=False,
                          verbose=verbose)
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
    if attack is not None:
        record["config"]["adversary"] = attack.get_config()
        record["config"]["adversary_schedule"] = schedule
    if trades_beta is not None:
        record["config"]["trades_beta"] = trades_beta
    if out is not None:
        save_keras_atomic(model, out / MODEL_FILE)
        write_json_atomic(out / RECORD_FILE, record)
    return model, record


class AdversarialTraining(keras.Model):
    """Trains a classifier on adversarial examples of each batch (Madry et al., 2018).

    Each training step starts from a uniform draw in the attack's epsilon ball
    around the batch when the attack's ``random_start`` is set (from a seed
    generator of ``seed``; Madry et al.'s start), runs the attack's ``perturb``
    against the classifier's current weights and takes the
    optimizer's step on the classifier's loss at those examples; the clean batch is
    not trained on. Compiled like :func:`build_classifier`, without XLA (on a CPU
    XLA's convolution gradients are slower than TensorFlow's kernels).

    An optional epsilon schedule (not in Madry et al., who train from the start at
    the full epsilon for 100,000 steps): the first ``clean_steps`` optimizer steps
    train on the clean batch, and epsilon then grows linearly to the attack's over
    ``ramp_steps`` steps (the step size in proportion). A short training at the full
    epsilon from random weights can stay at chance (the loss stuck at log 10);
    a clean start and a ramp avoid that (the curriculum of Gowal et al., 2018, and
    Cai et al., 2018).

    Args:
        classifier: A classifier returning logits (the one the attack attacks).
        attack: An object with ``perturb(x, labels, start, epsilon)``, ``epsilon`` and
            ``random_start``, e.g. a :class:`uae_tf.PGDAttack` of ``classifier``.
        seed: Seed of the random starts.
        clean_steps: Optimizer steps on clean batches first (default 0).
        ramp_steps: Optimizer steps over which epsilon then grows linearly from 0
            to ``attack.epsilon`` (default 0: the full epsilon at once).
    """

    def __init__(self, classifier, attack, seed=0, clean_steps=0, ramp_steps=0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.attack = attack
        self.clean_steps = check_non_negative_int(clean_steps, "clean_steps")
        self.ramp_steps = check_non_negative_int(ramp_steps, "ramp_steps")
        self.starts = keras.random.SeedGenerator(seed)
        self.compile(**_compile_arguments(), jit_compile=False)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def epsilon_at(self, step):
        """The training epsilon at optimizer step ``step`` (0-based), as a float32 tensor."""
        step = tf.cast(step, tf.float32) - self.clean_steps
        fraction = tf.clip_by_value((step + 1.0) / max(self.ramp_steps, 1), 0.0, 1.0)
        return tf.where(step < 0, 0.0, self.attack.epsilon * fraction)

    def adversarial_examples(self, x, y):
        """The attack's examples of the batch at the current step's epsilon (x while clean)."""
        epsilon = self.epsilon_at(self.optimizer.iterations)
        start = self._start(x, epsilon)

        def adversarial():
            return self.attack.perturb(x, y, start=start, epsilon=epsilon)

        return keras.ops.stop_gradient(tf.cond(epsilon > 0, adversarial, lambda: x))

    def _start(self, x, epsilon):
        """Madry et al.'s start: uniform in the epsilon ball (or x without ``random_start``)."""
        # Drawn at every step, so the draws do not depend on the schedule.
        noise = keras.random.uniform(keras.ops.shape(x), -1.0, 1.0, seed=self.starts)
        return x + epsilon * noise if self.attack.random_start else None

    def train_step(self, data):
        x, y = data
        return super().train_step((self.adversarial_examples(x, y), y))


class TRADESTraining(AdversarialTraining):
    """Trains a classifier by TRADES (Zhang et al., 2019): clean loss plus a robust KL term.

    Each step finds x' by the attack from TRADES's start x + N(0, 0.001^2) (the
    attack should maximize KL(f(x) || f(x')): ``PGDAttack(loss="kl")``, Zhang et
    al.'s MNIST setting 40 steps of 0.01 at epsilon 0.3) and minimizes
    ``CE(f(x), y) + beta * KL(f(x) || f(x'))``, the batch mean of each (the
    published ``trades.py``'s ``trades_loss``; gradients through both terms).
    The clean-start and epsilon-ramp schedule of :class:`AdversarialTraining`
    applies (while clean, x' = x and the KL term is 0). ``history`` reports the
    total ``loss`` and the clean ``accuracy``.

    Args:
        classifier: A classifier returning logits.
        attack: An object with ``perturb(x, labels, start, epsilon)`` and
            ``epsilon``, e.g. ``PGDAttack(classifier, loss="kl")``.
        beta: Weight of the robust term (1/lambda in TRADES; MNIST 1.0, CIFAR-10 6.0).
        seed: Seed of the starts.
        clean_steps: Optimizer steps on clean batches first (default 0).
        ramp_steps: Optimizer steps over which epsilon then grows to the attack's.
    """

    START_STDDEV = 0.001  # trades.py: x_natural + 0.001 * randn.

    def __init__(self, classifier, attack, beta=1.0, seed=0, clean_steps=0, ramp_steps=0,
                 **kwargs):
        super().__init__(classifier, attack, seed=seed, clean_steps=clean_steps,
                         ramp_steps=ramp_steps, **kwargs)
        self.beta = check_positive_float(beta, "beta")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _start(self, x, epsilon):
        return x + self.START_STDDEV * keras.random.normal(keras.ops.shape(x), seed=self.starts)

    def train_step(self, data):
        x, y = data
        x_adv = self.adversarial_examples(x, y)
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            adversarial_logits = self.classifier(x_adv, training=True)
            natural = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(y, tf.int32), logits))
            clean_log_probs = tf.nn.log_softmax(logits)
            robust = tf.reduce_mean(tf.reduce_sum(
                tf.exp(clean_log_probs) * (clean_log_probs - tf.nn.log_softmax(adversarial_logits)),
                axis=-1))
            loss = natural + self.beta * robust
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(y, logits)
        return {metric.name: metric.result() for metric in self.metrics}


def predict_labels(model, x, batch_size=256):
    """Returns the ``[N]`` int64 predicted classes (argmax of the logits) of ``x``."""
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1).astype(np.int64)


def accuracy(model, x, y, batch_size=256):
    """Returns the fraction of ``x`` that ``model`` classifies as ``y``."""
    return float(np.mean(predict_labels(model, x, batch_size) == np.asarray(y).reshape(-1)))
