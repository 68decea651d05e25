"""Concrete autoencoder of the paper's Section 5.5 (Balın, Abid and Zou, ICML 2019).

An unsupervised feature selector: a :class:`ConcreteSelect` layer picks M of the d
input features (a Gumbel-softmax relaxation of a one-hot choice per selected feature
while training, the argmax at inference), and a dense decoder reconstructs all d
features from them. As in the published ``concrete-autoencoder`` package (the one
Hsu et al. used): logits ``[M, d]`` initialized Glorot normal, temperature annealed
exponentially from 10 to 0.1 over all training steps, decoder Dense(320) ->
LeakyReLU(0.2) -> Dropout(0.1) -> Dense(320) -> LeakyReLU(0.2) -> Dropout(0.1) ->
Dense(d), Adam 1e-3, mean squared error, batch ``max(N // 256, 16)``, and the
convergence rule of :func:`fit_until_converged`.

Differences from the published Keras 2 layer, each deliberate:

* The temperature is a function of a step counter kept as a non-trainable weight,
  so the schedule survives ``.keras`` save/load, and it advances on training calls
  only (the published ``K.update`` also advanced it on validation and prediction
  calls made while the learning phase was set).
* The Gumbel noise comes from a seeded ``keras.random.SeedGenerator``.
* :meth:`ConcreteSelect.transform` returns the selected *columns* of x (the published
  ``transform`` indexes rows).
* Images are flattened inside the model (the published scripts reshape MNIST to
  ``[N, 784]`` first), so the model takes a dataset's samples as they are.

Example:

>>> model = build_concrete((77,), num_features=10, annealing_steps=1000, seed=0)
>>> concrete_select(model).selected_features().shape
(10,)
"""

import keras
import numpy as np
from keras import ops

from autoencoders._common import check_input_shape, input_dim, kernel_initializer

START_TEMPERATURE = 10.0
MIN_TEMPERATURE = 0.1
# The published convergence rule: the mean over the M selection neurons of their
# largest selection probability must reach this, else train again, epochs doubled.
MEAN_MAX_TARGET = 0.998
MAX_TRIES = 5
HIDDEN_UNITS = 320
LAYER_NAME = "concrete_select"


def default_num_features(dataset):
    """M of the paper: 10 for Mice Protein (77 features), 50 for every other dataset."""
    return 10 if dataset == "mice_protein" else 50


# Training epochs. Balın et al.'s experiments and their package use 300; Hsu et al.'s
# published script trains the MNIST model (and imports Fashion-MNIST) for 800.
_EPOCHS = {"mnist": 800, "fashion_mnist": 800, "mnist5k": 800}
_DEFAULT_EPOCHS = 300


def default_epochs(dataset, augmented=False):
    """Training epochs of the concrete autoencoder on ``dataset``.

    800 for ``mnist``, ``fashion_mnist`` and ``mnist5k`` (Hsu et al.'s published
    MNIST script), 300 for every other dataset (Balın et al.'s experiments and the
    package's default; the published code gives no epochs for Mice Protein, ISOLET,
    COIL-20 or HAR); the same with UAEs (``augmented``). With UAEs the rows fed
    double, and :func:`default_batch_size` with them: an epoch has twice the steps
    below 4,096 originals, twice the batch at the same steps from 4,096 on. The
    convergence rule may double the epochs (see :func:`fit_until_converged`).
    """
    del augmented
    return _EPOCHS.get(dataset, _DEFAULT_EPOCHS)


def default_batch_size(n):
    """The published package's batch size for ``n`` rows fed: ``max(n // 256, 16)``.

    The package computes it from the rows ``fit`` is given, so Hsu et al.'s augmented
    runs (originals and UAEs concatenated) used ``max(2N // 256, 16)``: 16 as for
    the originals when N < 4,096, twice the originals' batch from N = 4,096 on.
    """
    return max(int(n) // 256, 16)


@keras.saving.register_keras_serializable(package="uae_tf")
class ConcreteSelect(keras.layers.Layer):
    """Selects ``num_features`` of the input's columns (Balın et al., 2019).

    Training: each selection neuron m draws a relaxed one-hot vector
    ``softmax((logits[m] + g) / T)`` over the d inputs, ``g`` Gumbel noise, and
    outputs its dot product with x. The temperature follows
    ``T(t) = max(T_min, T_0 * (T_min / T_0) ** (t / annealing_steps))`` for the t-th
    training call, exponential from ``T_0`` to ``T_min`` over ``annealing_steps``
    steps (the published ``alpha = exp(log(T_min / T_0) / steps)`` per step).
    Inference (``training`` false or unset): the one-hot argmax of each row of
    the logits, so the output is exactly the selected columns of x.

    Args:
        num_features: M, the number of features selected.
        annealing_steps: Training steps over which the temperature falls from
            ``start_temperature`` to ``min_temperature``: epochs x steps per epoch.
        start_temperature: T_0 (published: 10).
        min_temperature: T_min (published: 0.1).
        seed: Integer seed of the logits' initializer and of the Gumbel noise, or
            ``None``.
        **kwargs: Base layer arguments (``name``...).

    Input shape: ``[B, d]``. Output shape: ``[B, num_features]``.

    Example:

    >>> layer = ConcreteSelect(2, annealing_steps=100, seed=0)
    >>> y = layer(np.eye(5, dtype="float32"))  # inference: selected columns
    >>> y.shape
    TensorShape([5, 2])
    """

    def __init__(self, num_features, annealing_steps, start_temperature=START_TEMPERATURE,
                 min_temperature=MIN_TEMPERATURE, seed=None, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_features", num_features), ("annealing_steps", annealing_steps)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive int. Received: {arg}={value!r}")
        if not 0 < min_temperature <= start_temperature:
            raise ValueError(
                "Temperatures must satisfy 0 < min_temperature <= start_temperature. "
                f"Received: start_temperature={start_temperature!r}, "
                f"min_temperature={min_temperature!r}"
            )
        self.num_features = int(num_features)
        self.annealing_steps = int(annealing_steps)
        self.start_temperature = float(start_temperature)
        self.min_temperature = float(min_temperature)
        self.seed = None if seed is None else int(seed)
        self._noise_seed = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                "ConcreteSelect takes [batch, features] inputs. Received: "
                f"input_shape={input_shape}"
            )
        num_inputs = int(input_shape[-1])
        if self.num_features > num_inputs:
            raise ValueError(
                f"num_features must be at most the {num_inputs} input features. Received: "
                f"num_features={self.num_features}"
            )
        self.logits = self.add_weight(
            name="logits", shape=(self.num_features, num_inputs),
            initializer=keras.initializers.GlorotNormal(seed=self.seed), trainable=True,
        )
        # Training calls so far: the temperature is a function of it, and it is saved.
        self.step = self.add_weight(name="step", shape=(), initializer="zeros",
                                    trainable=False, dtype="float32")

    def temperature(self, step=None):
        """The temperature at training call ``step`` (default: the current one)."""
        step = self.step if step is None else step
        progress = ops.minimum(ops.cast(step, "float32") / self.annealing_steps, 1.0)
        ratio = self.min_temperature / self.start_temperature
        return self.start_temperature * ops.power(ratio, progress)

    def call(self, x, training=None):
        if training:
            self.step.assign_add(1.0)
            uniform = keras.random.uniform(ops.shape(self.logits), minval=keras.config.epsilon(),
                                           maxval=1.0, seed=self._noise_seed)
            gumbel = -ops.log(-ops.log(uniform))
            selections = ops.softmax((self.logits + gumbel) / self.temperature(), axis=-1)
        else:
            selections = ops.one_hot(ops.argmax(self.logits, axis=-1), ops.shape(self.logits)[1],
                                     dtype=x.dtype)
        return ops.matmul(x, ops.transpose(selections))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features)

    def probabilities(self):
        """``[M, d]`` numpy: each selection neuron's softmax over the inputs."""
        return keras.ops.convert_to_numpy(ops.softmax(self.logits, axis=-1))

    def mean_max_probability(self):
        """Mean over the M neurons of their largest selection probability (the rule's test)."""
        return float(self.probabilities().max(axis=-1).mean())

    def selected_features(self):
        """``[M]`` int64 numpy: the column of x each selection neuron picks (argmax)."""
        return keras.ops.convert_to_numpy(ops.argmax(self.logits, axis=-1)).astype(np.int64)

    def transform(self, x):
        """Returns the selected columns ``x[:, selected_features()]`` of ``[N, ...]`` samples."""
        x = np.asarray(x)
        return x.reshape(len(x), -1)[:, self.selected_features()]

    def get_config(self):
        return {
            **super().get_config(),
            "num_features": self.num_features,
            "annealing_steps": self.annealing_steps,
            "start_temperature": self.start_temperature,
            "min_temperature": self.min_temperature,
            "seed": self.seed,
        }


def build_concrete(input_shape, num_features=50, annealing_steps=None, learning_rate=1e-3,
                   seed=None, steps_per_execution=1):
    """Builds the compiled concrete autoencoder of the published package.

    ``x -> [Flatten] -> ConcreteSelect(M) -> Dense(320) -> LeakyReLU(0.2) ->
    Dropout(0.1) -> Dense(320) -> LeakyReLU(0.2) -> Dropout(0.1) -> Dense(d) ->
    [Reshape]``, Adam, mean squared error. Flatten and Reshape are there for inputs of
    rank > 1 (images), so the output has the input's shape.

    Args:
        input_shape: Shape of one sample, e.g. ``(617,)`` or ``(28, 28, 1)``.
        num_features: M, the features selected (the paper: 50; 10 for Mice Protein).
        annealing_steps: Training steps of the temperature schedule: the epochs
            times the steps per epoch of the ``fit`` to come (required: the schedule
            spans the whole training, as published).
        learning_rate: Adam's learning rate (published: 1e-3).
        seed: Integer seed of the initializers, the Gumbel noise and dropout, or
            ``None``.
        steps_per_execution: Training steps per call of the compiled train function
            (``keras.Model.compile``'s): the same updates, fewer Python round trips
            (the model is small enough for them to dominate).

    Returns:
        A compiled ``keras.Model`` with a layer named ``"concrete_select"``.

    Raises:
        ValueError: for a missing ``annealing_steps``, an invalid ``input_shape``, or
            more features than the input has.
    """
    input_shape = check_input_shape(input_shape, "concrete_autoencoder")
    if annealing_steps is None:
        raise ValueError(
            "annealing_steps is required: the number of training steps (epochs x steps "
            "per epoch) over which the temperature falls from 10 to 0.1."
        )
    inputs = keras.Input(shape=input_shape, name="x")
    h = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    h = ConcreteSelect(num_features, annealing_steps, seed=seed, name=LAYER_NAME)(h)
    for i in range(2):
        h = keras.layers.Dense(HIDDEN_UNITS, kernel_initializer=kernel_initializer(seed, i + 1),
                               name=f"hidden_{i + 1}")(h)
        h = keras.layers.LeakyReLU(negative_slope=0.2, name=f"leaky_relu_{i + 1}")(h)
        h = keras.layers.Dropout(0.1, seed=None if seed is None else seed + 10 + i,
                                 name=f"dropout_{i + 1}")(h)
    out = keras.layers.Dense(input_dim(input_shape), kernel_initializer=kernel_initializer(seed, 3),
                             name="decoded")(h)
    if len(input_shape) > 1:
        out = keras.layers.Reshape(input_shape, name="reshape")(out)
    model = keras.Model(inputs, out, name="concrete_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.MeanSquaredError(), steps_per_execution=steps_per_execution)
    return model


def concrete_select(model):
    """Returns the :class:`ConcreteSelect` layer of a concrete autoencoder.

    Raises:
        ValueError: if ``model`` has no ``ConcreteSelect`` layer.
    """
    for layer in getattr(model, "layers", []):
        if isinstance(layer, ConcreteSelect):
            return layer
    raise ValueError(
        f"Model {getattr(model, 'name', model)!r} has no ConcreteSelect layer: not a concrete "
        "autoencoder."
    )


def selected_features(model):
    """``[M]`` column indices (of the flattened input) a concrete autoencoder selects."""
    return concrete_select(model).selected_features()


def fit_until_converged(build, fit, epochs, steps_per_epoch, max_tries=MAX_TRIES,
                        target=MEAN_MAX_TARGET):
    """Trains a concrete autoencoder by the published convergence rule.

    Builds a fresh model whose temperature anneals over the whole run, fits it, and
    stops when the mean of the selection neurons' largest probabilities reaches
    ``target``; otherwise starts again with twice the epochs, at most ``max_tries``
    runs in all (the last run is kept whatever its mean). The published package tests
    ``mean(max(softmax(logits)))`` with ``max`` over *all* entries, the largest single
    probability; its callback and the paper's text use the per-neuron mean kept here.

    Args:
        build: ``build(annealing_steps)`` returns a compiled concrete autoencoder.
        fit: ``fit(model, epochs)`` trains it and returns its ``History``.
        epochs: Epochs of the first run.
        steps_per_epoch: Gradient steps per epoch.
        max_tries: Runs at most.
        target: The mean max probability that ends training.

    Returns:
        ``(model, history, tries)``: the last model, its ``History``, and one dict per
        run (``epochs``, ``steps``, ``mean_max_probability``, ``converged``).
    """
    if not isinstance(max_tries, int) or max_tries < 1:
        raise ValueError(f"max_tries must be a positive int. Received: max_tries={max_tries!r}")
    tries = []
    for attempt in range(max_tries):
        model = build(epochs * steps_per_epoch)
        history = fit(model, epochs)
        mean_max = concrete_select(model).mean_max_probability()
        converged = mean_max >= target
        tries.append({"epochs": epochs, "steps": epochs * steps_per_epoch,
                      "mean_max_probability": mean_max, "converged": bool(converged)})
        if converged or attempt == max_tries - 1:
            break
        epochs *= 2
    return model, history, tries


__all__ = [
    "ConcreteSelect",
    "MAX_TRIES",
    "MEAN_MAX_TARGET",
    "build_concrete",
    "concrete_select",
    "default_batch_size",
    "default_epochs",
    "default_num_features",
    "fit_until_converged",
    "selected_features",
]
