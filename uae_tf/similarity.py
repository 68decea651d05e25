"""Similarities: what the attacks optimize, separate from what success means.

A similarity is an object the attacks take (``MinMaxAttack(criterion,
similarity=...)``): per-sample MINE (:class:`MINESimilarity`, the method), the
L2-UAE baseline (:class:`L2Similarity`), or a user's own subclass of
:class:`Similarity`. Strings (``"mine"``, ``"l2"``) and config dicts are shorthands
that :func:`get` turns into objects.
"""

import abc
import functools
import warnings

import tensorflow as tf

from uae_tf import _native, _seeds, _validation, mine
from uae_tf.views import VIEWS, make_view


def _build_once(build):
    """Makes ``build`` run once per similarity; a later call must repeat its arguments."""

    @functools.wraps(build)
    def wrapper(self, input_shape, criterion, seed):
        input_shape, seed = tuple(int(d) for d in input_shape), int(seed)
        key = (input_shape, criterion, seed)
        built_for = getattr(self, "_built_for", None)
        if built_for is None:
            build(self, input_shape, criterion, seed)
            self._built_for = key
        elif built_for[0] != input_shape:
            raise ValueError(
                f"{type(self).__name__} was built for samples of shape {built_for[0]}. "
                f"Received: input_shape={input_shape}; make a new similarity for them."
            )
        elif built_for != key:
            raise ValueError(
                f"{type(self).__name__} was built for criterion {built_for[1]!r} and seed "
                f"{built_for[2]}. Received: criterion={criterion!r}, seed={seed!r}; give each "
                "attack its own similarity."
            )

    return wrapper


def _warn_native_unavailable():
    """Warns once per process that the fused MINE op could not be used."""
    if not getattr(_warn_native_unavailable, "done", False):
        _warn_native_unavailable.done = True
        warnings.warn(
            "The fused MINE kernel (uae_tf._native) is unavailable, so the statistics "
            "networks train with TensorFlow ops under XLA (up to 1.5x slower on the conv "
            f"view): {_native.unavailable_reason()}"
        )


class Similarity(abc.ABC):
    """Base class of similarities S(x, x + delta), batched over samples.

    The attacks minimize ``F = c * f+(x + delta) + sign * S`` with ``sign = +1``
    for unsupervised criteria (make x + delta dissimilar) and ``-1`` for supervised
    ones (keep it similar), and keep the successful iterate with the best ``S``.

    A similarity has per-sample state that the attack carries through its loop
    (for MINE: the per-sample statistics networks and their Adam moments). All
    methods but :meth:`build` run inside ``tf.function`` (and XLA), on batches:

    * :meth:`build` -- called once by the attack on its first call, with the shape
      of one sample, the attack's criterion and seed (like a Keras layer's
      ``build``). Calling it again with the same arguments does nothing; with
      another shape (or criterion, or seed) it raises. Subclasses override it to
      make what depends on these (the default does nothing).
    * :meth:`initial_state` -- fresh state for clean inputs ``x``.
    * :meth:`score` -- ``[B]`` differentiable value at ``x_adv``.
    * :meth:`update` -- ``(state, [B] value)`` after fitting the state at ``x_adv``.
    * ``draws_per_iteration`` -- random draws one attack iteration uses, numbered
      from ``counter``: draw ``counter`` for :meth:`score` and the following ones
      for :meth:`update`, so they depend on the sample's seed and the iteration only.
    * :meth:`get_config` -- the settings as a JSON-serializable dict with a
      ``"name"``; ``__repr__`` shows it.
    * ``estimates_information`` -- whether the value is a mutual-information
      estimate (a lower bound: only a positive value tells x + delta apart from
      independence); the attacks' default ``selection="published"`` then keeps
      only iterates with a positive value, for unsupervised criteria.

    Example: a negative L1 distance, with no state and no randomness.

    ```python
    class NegativeL1(uae_tf.similarity.Similarity):
        name = "negative_l1"

        def initial_state(self, x, seeds, num_draws):
            return {"x": x}

        def score(self, state, x_adv, counter):
            difference = tf.abs(state["x"] - x_adv)
            return -tf.reduce_sum(tf.reshape(difference, [tf.shape(x_adv)[0], -1]), axis=1)

        def update(self, state, x_adv, counter):
            return state, self.score(state, x_adv, counter)

    attack = uae_tf.MinMaxAttack(criterion, similarity=NegativeL1())
    ```
    """

    name = None
    draws_per_iteration = 0
    estimates_information = False

    @_build_once
    def build(self, input_shape, criterion, seed):
        """Makes what depends on the samples' shape, the criterion and the seed.

        Args:
            input_shape: Shape of one sample, e.g. ``(28, 28, 1)``.
            criterion: The attack's criterion (``criterion.model``,
                ``criterion.supervised``).
            seed: The attack's seed.

        Raises:
            ValueError: if the similarity was built with other arguments.
        """
        del input_shape, criterion, seed

    @property
    def built(self):
        """Whether :meth:`build` has run."""
        return getattr(self, "_built_for", None) is not None

    def compiles_with_xla(self, jit_compile):
        """Whether the attack's loop may compile with XLA; called after :meth:`build`.

        Args:
            jit_compile: The attack's ``jit_compile`` (``True``, ``False`` or
                ``"auto"``).

        Returns:
            ``True`` (the default): :meth:`score` and :meth:`update` are plain
            TensorFlow ops.
        """
        del jit_compile
        return True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "build" in vars(cls):
            cls.build = _build_once(vars(cls)["build"])

    @abc.abstractmethod
    def initial_state(self, x, seeds, num_draws):
        """Returns the per-sample state (a nest of ``[B, ...]`` tensors) for clean ``x``.

        Args:
            x: ``[B, ...]`` clean samples.
            seeds: ``[B, 2]`` int32 per-sample seeds.
            num_draws: Random draws the attack will use (``steps *
                draws_per_iteration``); draw them here so the loop has no random op.
        """

    @abc.abstractmethod
    def score(self, state, x_adv, counter):
        """Returns the ``[B]`` similarity at ``x_adv``, differentiable in ``x_adv``."""

    @abc.abstractmethod
    def update(self, state, x_adv, counter):
        """Fits the state at ``x_adv``; returns ``(state, [B] similarity)``."""

    def get_config(self):
        """Returns the settings as a JSON-serializable dict with the ``"name"``."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        """Makes a similarity from :meth:`get_config`'s dict."""
        return cls(**{k: v for k, v in config.items() if k != "name"})

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({settings})"


class MINESimilarity(Similarity):
    """Per-sample MINE I(x, x + delta) on K views of each sample (Section 3.1).

    Args:
        view: ``"auto"`` (the conv view when ``criterion.model`` has a ``Conv2D``,
            else the random view), ``"conv"``, ``"random"`` or a view object (see
            :mod:`uae_tf.views`). The random view's projections are drawn from the
            attack's seed.
        mine_steps: Adam steps on the statistics networks per attack iteration;
            ``None``: 20 for unsupervised and 1 for supervised criteria (published
            code), resolved at :meth:`build`.
        learning_rate: Adam step size (published code: 1.5e-5).
        layer_name: Conv2D layer of the conv view (default: the first).
        num_projections: K of the random view (paper: 500).
        projection_dim: d' of the random view (paper: 128).
        kernel: How the statistics networks are trained: ``"tf"``, TensorFlow
            ops (:func:`uae_tf.mine.train_step`), compiled with the attack's loop
            by XLA; ``"native"``, the fused CPU op of :mod:`uae_tf._native`
            (the same steps, 1.7-2.3x faster per step for the conv view; built
            with the C++ compiler on first use; the attack's loop then runs in
            graph mode, not XLA); ``"auto"`` (default), ``"native"`` when no GPU
            is visible, ``jit_compile`` is not ``True``, the networks and their
            moments exceed ``memory.CPU_CACHED_NETWORK_BYTES`` (the conv view's;
            cache-sized ones gain nothing) and the op builds, else ``"tf"``.
            Results agree to float rounding (``tests/test_native.py``).
        **network_kwargs: ``hidden_units``, ``features`` or ``conv_filters`` of
            :class:`uae_tf.mine.StatisticsNetwork`.

    Example:

    >>> similarity = MINESimilarity(view="random", mine_steps=5)
    >>> attack = MinMaxAttack(ReconstructionCriterion(autoencoder), similarity=similarity)
    """

    name = "mine"
    estimates_information = True
    _NETWORK_KWARGS = ("hidden_units", "features", "conv_filters")

    KERNELS = ("auto", "native", "tf")

    def __init__(self, view="auto", mine_steps=None, learning_rate=1.5e-5, layer_name=None,
                 num_projections=500, projection_dim=128, kernel="auto", **network_kwargs):
        known = view in VIEWS if isinstance(view, str) else callable(view)
        if not known:
            raise ValueError(
                f"view must be one of {VIEWS} or a view object. Received: view={view!r}"
            )
        unknown = sorted(set(network_kwargs) - set(self._NETWORK_KWARGS))
        if unknown:
            raise ValueError(
                f"MINESimilarity takes the network settings {self._NETWORK_KWARGS}. "
                f"Received: {unknown}"
            )
        if kernel not in self.KERNELS:
            raise ValueError(f"kernel must be one of {self.KERNELS}. Received: kernel={kernel!r}")
        self.kernel = kernel
        self.uses_native_kernel = None
        self.view = view
        self.mine_steps = None if mine_steps is None else _validation.check_positive_int(
            mine_steps, "mine_steps"
        )
        self.learning_rate = _validation.check_positive_float(learning_rate, "learning_rate")
        self.layer_name = layer_name
        self.num_projections = num_projections
        self.projection_dim = projection_dim
        self.network_kwargs = network_kwargs
        self.built_view = None
        self.network = None
        self.steps_per_iteration = None

    def build(self, input_shape, criterion, seed):
        """Makes the view (seeded by ``seed``) and the network; resolves ``mine_steps``."""
        self.built_view = make_view(
            self.view, criterion.model, input_shape, seed=seed, layer_name=self.layer_name,
            num_projections=self.num_projections, projection_dim=self.projection_dim,
        )
        view_shape = self.built_view(tf.zeros((1, *input_shape))).shape[2:]
        self.network = mine.StatisticsNetwork(view_shape, **self.network_kwargs)
        if self.mine_steps is None:
            self.steps_per_iteration = 1 if criterion.supervised else 20
        else:
            self.steps_per_iteration = self.mine_steps

    def compiles_with_xla(self, jit_compile):
        """Resolves ``kernel`` for the attack's ``jit_compile``; ``False`` when native.

        Sets ``uses_native_kernel``.

        Raises:
            ValueError: for ``kernel="native"`` with ``jit_compile=True``.
            RuntimeError: for ``kernel="native"`` when the op does not build, with
                the compiler's message.
        """
        from uae_tf.attacks import memory  # noqa: PLC0415 (memory imports this module)

        if self.kernel == "native" and jit_compile is True:
            raise ValueError(
                "kernel='native' trains the statistics networks with a CPU op XLA cannot "
                "compile; use jit_compile=False or 'auto', or kernel='tf' for XLA."
            )
        if self.kernel == "tf" or jit_compile is True:
            self.uses_native_kernel = False
        elif self.kernel == "native":
            if _native.load() is None:
                raise RuntimeError(
                    f"kernel='native': the fused MINE op is unavailable: "
                    f"{_native.unavailable_reason()}")
            self.uses_native_kernel = True
        else:
            streamed = (3 * 4 * self.network.num_parameters() > memory.CPU_CACHED_NETWORK_BYTES
                        and not tf.config.list_logical_devices("GPU"))
            self.uses_native_kernel = streamed and _native.load() is not None
            if streamed and not self.uses_native_kernel and not _native.disabled():
                _warn_native_unavailable()
        return not self.uses_native_kernel

    @property
    def draws_per_iteration(self):
        """Random draws one attack iteration consumes: one score plus the updates."""
        return self.steps_per_iteration + 1

    def initial_state(self, x, seeds, num_draws):
        """Views of the clean inputs, fresh per-sample networks and all permutations.

        The ``num_draws`` permutations of every sample are drawn here, before the
        attack loop, so that the loop holds no random op and compiles with XLA.
        """
        x_views = self.built_view(x)
        params = self.network.initialize(seeds)
        k = tf.shape(x_views)[1]
        permutations = tf.map_fn(
            lambda counter: _seeds.permutations(seeds, counter, k),
            tf.range(num_draws),
            fn_output_signature=tf.int32,
        )
        return {
            "x_views": x_views,
            "permutations": permutations,
            "params": params,
            "adam": mine.adam_init(params),
        }

    def score(self, state, x_adv, counter):
        """The DV estimate at ``x_adv`` with the current networks (differentiable)."""
        return self.network.mutual_information(
            state["params"],
            state["x_views"],
            self.built_view(x_adv),
            state["permutations"][counter],
        )

    def update(self, state, x_adv, counter):
        """Trains the networks ``mine_steps`` Adam steps at ``x_adv``.

        Returns:
            ``(state, mi)`` where ``mi`` is the estimate of the last step's forward
            pass (before its update), as the published code reports it.
        """
        y_views = self.built_view(x_adv)
        params, adam = state["params"], state["adam"]
        if self.uses_native_kernel:
            first = counter + 1
            params, adam, history = _native.train_steps(
                self.network, params, adam, state["x_views"], y_views,
                state["permutations"][first:first + self.steps_per_iteration],
                self.learning_rate,
            )
            return {**state, "params": params, "adam": adam}, history[-1]
        mi = tf.zeros([tf.shape(x_adv)[0]])
        for step in tf.range(self.steps_per_iteration):
            params, adam, mi = mine.train_step(
                self.network,
                params,
                adam,
                state["x_views"],
                y_views,
                state["permutations"][counter + 1 + step],
                self.learning_rate,
            )
        return {**state, "params": params, "adam": adam}, mi

    def get_config(self):
        """Returns the settings as a JSON-serializable dict (a view object as its repr)."""
        return {
            "name": self.name,
            "view": self.view if isinstance(self.view, str) else repr(self.view),
            "mine_steps": self.mine_steps,
            "learning_rate": self.learning_rate,
            "layer_name": self.layer_name,
            "num_projections": self.num_projections,
            "projection_dim": self.projection_dim,
            "kernel": self.kernel,
            **self.network_kwargs,
        }


class L2Similarity(Similarity):
    """The L2-UAE baseline's similarity: ``-||x - Phi(x + delta)||^2`` (Section 5.4).

    With the unsupervised sign (``F = c f+ + S``) minimizing ``S`` maximizes the
    reconstruction loss, so among successful iterates the attack keeps the one
    Phi reconstructs worst. It has no state to train and draws nothing.

    Args:
        model: The autoencoder Phi; default the criterion's model, taken at
            :meth:`build`.

    Example:

    >>> attack = MinMaxAttack(ReconstructionCriterion(autoencoder), similarity="l2")
    """

    name = "l2"

    def __init__(self, model=None):
        self.model = model

    def build(self, input_shape, criterion, seed):
        """Takes ``criterion.model`` when no model was given.

        Raises:
            ValueError: for a supervised criterion, or without a model.
        """
        del input_shape, seed
        if criterion.supervised or (self.model is None and criterion.model is None):
            raise ValueError(
                "L2Similarity (the L2-UAE baseline) needs an unsupervised criterion with a "
                f"model, such as ReconstructionCriterion. Received: criterion={criterion!r}"
            )
        if self.model is None:
            self.model = criterion.model

    def initial_state(self, x, seeds, num_draws):
        """The clean inputs (the reference of the loss)."""
        del seeds, num_draws
        return {"x": x}

    def score(self, state, x_adv, counter):
        """``[B]`` ``-||x - Phi(x_adv)||^2`` summed over each sample (differentiable)."""
        del counter
        x = state["x"]
        error = tf.square(x - self.model(x_adv, training=False))
        return -tf.reduce_sum(tf.reshape(error, [tf.shape(x)[0], -1]), axis=1)

    def update(self, state, x_adv, counter):
        """Nothing to fit: returns ``(state, score at x_adv)``."""
        return state, self.score(state, x_adv, counter)


SIMILARITIES = {"mine": MINESimilarity, "l2": L2Similarity}


def get(identifier):
    """Returns a similarity from a name, a config dict or a similarity (Keras ``get`` style).

    Args:
        identifier: ``"mine"`` or ``"l2"``; a dict as :meth:`Similarity.get_config`
            returns, e.g. ``{"name": "mine", "view": "random", "mine_steps": 5}``;
            or a :class:`Similarity`, returned as is.

    Returns:
        A :class:`Similarity`.

    Raises:
        ValueError: for anything else, naming the value.
    """
    if isinstance(identifier, Similarity):
        return identifier
    if isinstance(identifier, str) and identifier in SIMILARITIES:
        return SIMILARITIES[identifier]()
    if isinstance(identifier, dict) and identifier.get("name") in SIMILARITIES:
        return SIMILARITIES[identifier["name"]].from_config(identifier)
    raise ValueError(
        f"similarity must be one of {tuple(SIMILARITIES)}, a config dict with one of them as "
        f"'name', or a Similarity. Received: similarity={identifier!r}"
    )
