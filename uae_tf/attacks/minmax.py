"""The MinMax attack (Algorithm 1) with per-sample MINE, batched over samples."""

import warnings

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks.base import AttackResult, run_in_batches
from uae_tf.similarity import SIMILARITIES, make_similarity

# Stream of the initial perturbation, apart from the networks' and permutations' draws.
_DELTA_STREAM = 0x64656C74


class MinMaxAttack:
    """MinMax attack of Algorithm 1: min over delta, max over c >= 0 of
    ``F = c * f+(x + delta) -/+ I(x, x + delta)``.

    Unsupervised criteria (``criterion.supervised == False``) minimize I: the
    adversarial example is as *dissimilar* to x as MINE can tell while its loss is
    no worse (``+I`` in F). Supervised criteria maximize I: the example evades the
    classifier while staying *similar* (``-I`` in F).

    Per iteration t = 1..T, for every sample of the batch at once:

    1. one plain gradient step on delta with step ``step_size`` (alpha);
    2. clip delta to [-epsilon, epsilon] and x + delta to [0, 1];
    3. ``mine_steps`` Adam steps on the sample's statistics network at x + delta;
    4. ``c <- max(0, (1 - beta / t^(1/4)) * c + beta * f+(x + delta))``;
    5. keep x + delta if it succeeds (f <= 0) with the best I so far (lowest for
       unsupervised, highest for supervised).

    Where no iterate succeeds the sample gets the iterate with the lowest f and
    ``success=False``. c starts at ``initial_const`` (1e-3, the published code;
    Algorithm 1 writes c_0 = 0, which would make the first step ignore the
    criterion). delta starts at 0 (Algorithm 1) unless ``initial_perturbation``
    says otherwise. The MI of an iterate is the estimate of the last MINE step's
    forward pass, as in the published code.

    The start matters. From delta_0 = 0 with alpha = 0.01 the gradient of I
    through a barely trained statistics network is tiny and UAEs stay within about
    1e-4 of x, which as augmentation is close to duplicating the data. The
    published code created delta with ``tf.get_variable``'s default Glorot-uniform
    initializer; ``initial_perturbation="glorot"`` reproduces that start (uniform in
    +-sqrt(6 / (fan_in + fan_out)) of a ``[1, *sample_shape]`` variable, as TF
    computes it: 0.086 for a 28x28x1 image), and the Table 4 experiment uses it.

    All T iterations of a batch run in one ``tf.function`` (a ``tf.while_loop``)
    with every per-sample quantity -- delta, c, the statistics networks and their
    Adam moments, the best-so-far -- a tensor with a leading batch axis. Each
    sample's randomness comes from ``(seed, index)``, so a batch of B gives what B
    runs of one give.

    Args:
        criterion: A criterion from :mod:`uae_tf.criteria`.
        view: ``"auto"``, ``"conv"``, ``"random"`` or a view object; ``auto`` picks
            the conv view when ``criterion.model`` has a ``Conv2D``. Unused by the
            ``"l2"`` similarity.
        similarity: ``"mine"`` (the method) or ``"l2"`` (the L2-UAE baseline:
            ``-||x - Phi(x + delta)||^2`` in place of I, unsupervised criteria with
            a model only). The results' ``mi`` fields then hold that value.
        initial_perturbation: delta_0: ``0.0`` (Algorithm 1), a radius r > 0 for
            delta_0 uniform in [-r, r], or ``"glorot"`` for the published code's
            Glorot-uniform start (see above). Drawn from ``(seed, index)``; x +
            delta_0 is clipped to [0, 1].
        steps: T, attack iterations (paper: 40 unsupervised).
        step_size: alpha, the gradient step on delta (paper: 0.01).
        beta: Step size of the c update (paper: 0.1).
        epsilon: L-infinity bound on delta, in (0, 1] (paper: 1).
        mine_steps: Adam steps on MINE per iteration; default 20 for unsupervised
            and 1 for supervised criteria (published code).
        mine_lr: MINE's Adam step size (published: 1.5e-5).
        initial_const: c_0 (published: 1e-3).
        batch_size: Samples attacked together; results do not depend on it.
            Default 32 when a GPU is visible, else 1 (fastest on a CPU).
        seed: Seed of every random choice (networks, permutations, projections).
        layer_name: Conv2D layer for the conv view (default: the first).
        num_projections: K of the random view (paper: 500).
        projection_dim: d' of the random view (paper: 128).
        jit_compile: Compile the attack loop with XLA (fuses the per-sample Adam
            updates, about 2x faster on a CPU). ``"auto"`` falls back to plain
            graph mode, with a warning, when the model has ops XLA cannot compile.
        verbose: Show a progress bar.

    Example:

    >>> attack = MinMaxAttack(ReconstructionCriterion(autoencoder), seed=0)
    >>> result = attack(x_train[:64])
    >>> result.attack_success_rate, result.x_adv.shape
    """

    def __init__(
        self,
        criterion,
        view="auto",
        similarity="mine",
        initial_perturbation=0.0,
        steps=40,
        step_size=0.01,
        beta=0.1,
        epsilon=1.0,
        mine_steps=None,
        mine_lr=1.5e-5,
        initial_const=1e-3,
        batch_size=None,
        seed=0,
        layer_name=None,
        num_projections=500,
        projection_dim=128,
        jit_compile="auto",
        verbose=False,
    ):
        self.criterion = criterion
        self.steps = _validation.check_positive_int(steps, "steps")
        self.step_size = _validation.check_positive_float(step_size, "step_size")
        self.beta = _validation.check_positive_float(beta, "beta")
        self.epsilon = _validation.check_positive_float(epsilon, "epsilon", upper=1.0)
        if mine_steps is None:
            mine_steps = 1 if criterion.supervised else 20
        self.mine_steps = _validation.check_positive_int(mine_steps, "mine_steps")
        self.mine_lr = _validation.check_positive_float(mine_lr, "mine_lr")
        if not np.isfinite(initial_const) or initial_const < 0:
            raise ValueError(f"initial_const must be >= 0. Received: initial_const={initial_const}")
        self.initial_const = float(initial_const)
        if batch_size is None:
            batch_size = _validation.default_batch_size()
        self.batch_size = _validation.check_positive_int(batch_size, "batch_size")
        self.seed = int(seed)
        self.view = view
        if similarity not in SIMILARITIES:
            raise ValueError(
                f"similarity must be one of {SIMILARITIES}. Received: similarity={similarity!r}"
            )
        if similarity == "l2" and (criterion.supervised or criterion.model is None):
            raise ValueError(
                "similarity='l2' (the L2-UAE baseline) needs an unsupervised criterion with "
                f"a model, such as ReconstructionCriterion. Received: {criterion!r}"
            )
        self.similarity_name = similarity
        if initial_perturbation != "glorot" and not (
            isinstance(initial_perturbation, (int, float))
            and np.isfinite(initial_perturbation)
            and 0 <= initial_perturbation <= 1
        ):
            raise ValueError(
                "initial_perturbation must be 'glorot' or a radius in [0, 1]. Received: "
                f"initial_perturbation={initial_perturbation!r}"
            )
        self.initial_perturbation = (
            initial_perturbation if initial_perturbation == "glorot" else float(initial_perturbation)
        )
        self.layer_name = layer_name
        self.num_projections = num_projections
        self.projection_dim = projection_dim
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be True, False or 'auto'. Received: {jit_compile!r}")
        self.jit_compile = jit_compile
        self.verbose = bool(verbose)
        self._similarity = None
        self._input_shape = None
        self._prepare = None
        self._loop = None

    def get_config(self):
        """Returns the attack's settings (and its criterion's) as a JSON-serializable dict."""
        view = self.view if isinstance(self.view, str) else repr(self.view)
        return {
            "attack": type(self).__name__,
            "criterion": self.criterion.get_config(),
            "view": view,
            "similarity": self.similarity_name,
            "initial_perturbation": self.initial_perturbation,
            "steps": self.steps,
            "step_size": self.step_size,
            "beta": self.beta,
            "epsilon": self.epsilon,
            "mine_steps": self.mine_steps,
            "mine_lr": self.mine_lr,
            "initial_const": self.initial_const,
            "seed": self.seed,
            "layer_name": self.layer_name,
            "num_projections": self.num_projections,
            "projection_dim": self.projection_dim,
            "jit_compile": self.jit_compile,
        }

    def __repr__(self):
        config = self.get_config()
        settings = ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "attack")
        return f"MinMaxAttack({settings})"

    def _build(self, input_shape):
        input_shape = tuple(input_shape)
        if self._similarity is not None and input_shape != self._input_shape:
            raise ValueError(
                f"This attack was built for samples of shape {self._input_shape}. "
                f"Received samples of shape {input_shape}; make a new attack for them."
            )
        if self._similarity is None:
            self._input_shape = input_shape
            self._similarity = make_similarity(
                self.similarity_name,
                self.criterion.model,
                input_shape,
                view=self.view,
                seed=self.seed,
                mine_steps=self.mine_steps,
                learning_rate=self.mine_lr,
                layer_name=self.layer_name,
                num_projections=self.num_projections,
                projection_dim=self.projection_dim,
            )
            self._prepare = tf.function(self._prepare_batch, reduce_retracing=True)
            self._loop = self._compile_loop(self.jit_compile is not False)
        return self._similarity

    @property
    def similarity(self):
        """The similarity the attack optimizes (built on first use)."""
        return self._similarity

    def __call__(self, x, labels=None, indices=None):
        """Attacks the samples ``x``.

        Args:
            x: ``[N, ...]`` samples with values in [0, 1].
            labels: ``[N]`` labels for supervised criteria (true classes, or targets
                for a targeted criterion).
            indices: ``[N]`` integer identities of the samples (their rows in the
                dataset); sample i's randomness depends on ``(seed, indices[i])``.
                Default ``range(N)``.

        Returns:
            An :class:`~uae_tf.attacks.base.AttackResult`.
        """
        model = self.criterion.model
        expected = None
        if model is not None and getattr(model, "inputs", None):
            expected = tuple(model.inputs[0].shape[1:])
        x = _validation.check_images(x, "x", expected)
        n = len(x)
        if labels is None and self.criterion.needs_labels:
            raise ValueError(f"{type(self.criterion).__name__} needs labels, one per sample.")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != n:
                raise ValueError(f"labels must have {n} entries, one per sample. Received {len(labels)}")
        indices = np.arange(n) if indices is None else np.asarray(indices).reshape(-1)
        if len(indices) != n:
            raise ValueError(f"indices must have {n} entries, one per sample. Received {len(indices)}")
        self._build(x.shape[1:])
        return run_in_batches(self._run_batch, [x, labels, indices], self.batch_size, self.verbose)

    def _compile_loop(self, jit):
        return tf.function(self._attack_loop, jit_compile=jit, reduce_retracing=True)

    def _run_batch(self, x, labels, indices):
        x = tf.constant(x)
        labels = None if labels is None else tf.constant(labels)
        reference, delta, state = self._prepare(x, labels, tf.constant(indices))
        try:
            out = self._loop(x, reference, delta, state)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if self.jit_compile != "auto" or "XLA" not in str(error):
                raise
            warnings.warn(
                "The attack loop does not compile with XLA for this model; running it "
                f"in plain graph mode (slower). Set jit_compile=False to skip the try. ({error})"
            )
            self.jit_compile = False
            self._loop = self._compile_loop(False)
            out = self._loop(x, reference, delta, state)
        return AttackResult(**{k: v.numpy() for k, v in out.items()})

    def _prepare_batch(self, x, labels, indices):
        """Per-sample constants, delta_0, fresh networks and permutations (no XLA)."""
        reference = self.criterion.reference(x, labels)
        seeds = _seeds.sample_seeds(self.seed, indices)
        num_draws = self.steps * self._similarity.draws_per_iteration
        delta = self._initial_delta(x, seeds)
        return reference, delta, self._similarity.initial_state(x, seeds, num_draws)

    def _initial_delta(self, x, seeds):
        radius = self.initial_perturbation
        if radius == "glorot":
            radius = glorot_radius(x.shape[1:])
        if radius == 0:
            return tf.zeros_like(x)
        radius = min(radius, self.epsilon)
        delta = tf.map_fn(
            lambda s: tf.random.stateless_uniform(tf.shape(x)[1:], s, -radius, radius),
            _seeds.fold_in(seeds, _DELTA_STREAM),
            fn_output_signature=tf.float32,
        )
        return tf.clip_by_value(x + delta, 0.0, 1.0) - x

    def _attack_loop(self, x, reference, delta, state):
        criterion, similarity = self.criterion, self._similarity
        sign = -1.0 if criterion.supervised else 1.0  # F = c f+ + sign * I
        draws = similarity.draws_per_iteration
        batch = tf.shape(x)[0]
        const = tf.fill([batch], self.initial_const)
        # Best successful iterate (by signed MI) and lowest-f fallback.
        best_x = x
        best_mi = tf.fill([batch], sign * np.inf)
        best_f = tf.fill([batch], np.inf)
        found = tf.zeros([batch], tf.bool)
        low_x = x
        low_f = tf.fill([batch], np.inf)
        low_mi = tf.zeros([batch])
        mi_history = tf.TensorArray(tf.float32, size=self.steps)
        c_history = tf.TensorArray(tf.float32, size=self.steps)
        sample_axes = list(range(1, len(x.shape)))

        for t in tf.range(self.steps):
            counter = t * draws
            with tf.GradientTape() as tape:
                tape.watch(delta)
                x_adv = x + delta
                f_plus = tf.nn.relu(criterion(x_adv, x, reference))
                mi = similarity.score(state, x_adv, counter)
                objective = tf.reduce_sum(const * f_plus + sign * mi)
            grad = tape.gradient(objective, delta)
            delta = tf.clip_by_value(delta - self.step_size * grad, -self.epsilon, self.epsilon)
            x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
            delta = x_adv - x

            state, mi = similarity.update(state, x_adv, counter)
            f = criterion(x_adv, x, reference)
            decay = 1.0 - self.beta / tf.pow(tf.cast(t + 1, tf.float32), 0.25)
            const = tf.nn.relu(decay * const + self.beta * tf.nn.relu(f))

            improved = (f <= 0.0) & (sign * mi < sign * best_mi)
            best_x = _where(improved, x_adv, best_x, sample_axes)
            best_mi = tf.where(improved, mi, best_mi)
            best_f = tf.where(improved, f, best_f)
            found = found | improved
            lower = f < low_f
            low_x = _where(lower, x_adv, low_x, sample_axes)
            low_mi = tf.where(lower, mi, low_mi)
            low_f = tf.where(lower, f, low_f)
            mi_history = mi_history.write(t, mi)
            c_history = c_history.write(t, const)

        return {
            "x_adv": _where(found, best_x, low_x, sample_axes),
            "success": found,
            "mi": tf.where(found, best_mi, low_mi),
            "f": tf.where(found, best_f, low_f),
            "mi_history": tf.transpose(mi_history.stack()),
            "c_history": tf.transpose(c_history.stack()),
        }


def glorot_radius(sample_shape):
    """Glorot-uniform limit of a ``[1, *sample_shape]`` variable, computed as TF does.

    For a 4-D shape ``[1, h, w, c]`` the receptive field is ``h`` (the leading axes
    but the last two), fan_in ``w * h`` and fan_out ``c * h``; for ``[1, d]``
    fan_in 1 and fan_out d. Returns ``sqrt(6 / (fan_in + fan_out))``.
    """
    shape = (1, *[int(d) for d in sample_shape])
    if len(shape) == 2:
        fan_in, fan_out = shape
    else:
        receptive = int(np.prod(shape[:-2]))
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    return float(np.sqrt(6.0 / (fan_in + fan_out)))


def _where(mask, a, b, sample_axes):
    """Per-sample select: ``mask`` is ``[B]``, ``a`` and ``b`` are ``[B, ...]``."""
    mask = tf.reshape(mask, [-1] + [1] * len(sample_axes))
    return tf.where(mask, a, b)
