"""The penalty-based baseline with a binary search on c (Algorithm 3), batched over samples."""

import warnings

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks.base import AttackResult
from uae_tf.attacks.minmax import MinMaxAttack, _where

# Streams of the search steps' fresh networks and permutations (step b >= 1).
_SEARCH_STREAM = 0x73726368


def binary_search_update(success, const, lower, upper, unbounded=1e9):
    """One update of the per-sample bounds and constants (Algorithm 3, lines 14-26).

    After a successful search step ``ub = min(ub, c)``, after a failed one
    ``lb = max(lb, c)``; then ``c = (lb + ub) / 2`` where ``ub < unbounded``, and
    ``c = 10 c`` where the search failed and no upper bound is known yet.

    Args:
        success: ``[N]`` bool, whether the search step found an adversarial example.
        const: ``[N]`` the constants c the step used.
        lower: ``[N]`` lower bounds lb.
        upper: ``[N]`` upper bounds ub.
        unbounded: ub at or above this value means "no upper bound yet" (1e9).

    Returns:
        ``(const, lower, upper)`` for the next search step, as float64 arrays.

    Example:

    >>> binary_search_update([False, True], [0.1, 0.1], [1e-3, 1e-3], [1e9, 1e9])
    (array([1.    , 0.0505]), array([0.1  , 0.001]), array([1.e+09, 1.e-01]))
    """
    success = np.asarray(success, bool)
    const = np.asarray(const, np.float64)
    upper = np.where(success, np.minimum(upper, const), upper)
    lower = np.where(success, lower, np.maximum(lower, const))
    bounded = upper < unbounded
    next_const = np.where(bounded, (lower + upper) / 2, np.where(success, const, const * 10))
    return next_const, lower.astype(np.float64), upper.astype(np.float64)


class PenaltyAttack(MinMaxAttack):
    """Penalty-based attack with a binary search on c (Algorithm 3, the Table 3 baseline).

    The MINE attack with a *fixed* constant: minimize ``F = c * f+(x + delta) -/+
    I(x, x + delta)`` by the MinMax step of :class:`MinMaxAttack` (gradient step on
    delta with ``step_size``, clipping, ``mine_steps`` Adam steps on MINE) for
    ``steps`` (T') iterations, then move c by a binary search and start again, for
    ``search_steps`` (B) search steps. Per sample: ``lb = lower_bound``, ``ub =
    upper_bound``, ``c = initial_const``; after a search step that found a
    successful iterate ``ub = min(ub, c)``, else ``lb = max(lb, c)``; then ``c =
    (lb + ub) / 2`` once ``ub < upper_bound``, else ``c = 10 c`` (see
    :func:`binary_search_update`). With Algorithm 3's ``lb = c_0 = 1e-3`` a success
    in the first search step keeps c at 1e-3 (Carlini and Wagner's ``lb = 0``
    would halve it).

    Over all ``B * T'`` iterations the attack keeps the successful iterate with the
    best MI (highest for supervised criteria, lowest for unsupervised ones), like
    Algorithm 3's ``delta*``; where none succeeds it returns the lowest-f iterate
    with ``success=False``.

    Choices where Algorithm 3 is silent, following the published
    ``MINE_binary_search.py`` (itself Carlini and Wagner's search):

    * Each search step restarts: delta goes back to its start
      (``initial_perturbation``) and every sample gets fresh statistics networks
      and Adam moments, drawn from the sample's seed and the step number (step 0
      draws what :class:`MinMaxAttack` draws, so both methods start alike).
    * A search step counts as a success when *that step* found a successful
      iterate (the published code's ``bestscore``), not when the best-so-far
      ``delta*`` does: with the latter, every step after the first success would
      count as one and the search could only lower c.

    Unlike the published script (20 MINE steps at lr 2e-5 per iteration, with
    MINE's Adam also moving delta), MINE is trained exactly as in
    :class:`MinMaxAttack` (``mine_steps``, ``mine_lr``), so that a comparison at
    the same number of iterations differs only in how c is chosen.

    The success flags are recomputed after the loop with the criterion outside XLA
    (the model's ordinary inference), so ``success`` says what the model does on
    ``x_adv``; a sample whose compiled and ordinary evaluations disagree at the
    boundary is reported as failed.

    Args:
        criterion: A criterion from :mod:`uae_tf.criteria`.
        view: ``"auto"``, ``"conv"``, ``"random"`` or a view object.
        similarity: ``"mine"`` or ``"l2"`` (see :class:`MinMaxAttack`).
        initial_perturbation: delta at the start of every search step: ``0.0``, a
            radius in (0, 1], or ``"glorot"`` (see :class:`MinMaxAttack`).
        search_steps: B, binary search steps (paper: 9).
        steps: T', iterations per search step (paper: 1000).
        step_size: alpha, the gradient step on delta (paper: 0.01).
        epsilon: L-infinity bound on delta, in (0, 1].
        mine_steps: Adam steps on MINE per iteration; default 20 for unsupervised
            and 1 for supervised criteria, as :class:`MinMaxAttack`.
        mine_lr: MINE's Adam step size.
        initial_const: c of the first search step (paper: 1e-3).
        lower_bound: Initial lb (paper: 1e-3).
        upper_bound: Initial ub, and the value below which ub counts as found
            (paper: 1e9).
        batch_size: Samples attacked together; results do not depend on it.
        seed: Seed of every random choice.
        layer_name: Conv2D layer for the conv view (default: the first).
        num_projections: K of the random view.
        projection_dim: d' of the random view.
        jit_compile: Compile each search step's loop with XLA (``"auto"`` falls
            back to graph mode when the model does not compile).
        verbose: Show a progress bar.

    The result's ``mi_history`` and ``c_history`` are ``[N, B * T']``: the MI
    estimate after every iteration of every search step and the c it used.

    Example:

    >>> attack = PenaltyAttack(MarginCriterion(classifier), search_steps=9, steps=1000)
    >>> result = attack(x_test[:8], labels=y_test[:8])
    >>> result.attack_success_rate, result.mi_history.shape
    """

    def __init__(
        self,
        criterion,
        view="auto",
        similarity="mine",
        initial_perturbation=0.0,
        search_steps=9,
        steps=1000,
        step_size=0.01,
        epsilon=1.0,
        mine_steps=None,
        mine_lr=1.5e-5,
        initial_const=1e-3,
        lower_bound=1e-3,
        upper_bound=1e9,
        batch_size=None,
        seed=0,
        layer_name=None,
        num_projections=500,
        projection_dim=128,
        jit_compile="auto",
        verbose=False,
    ):
        super().__init__(
            criterion,
            view=view,
            similarity=similarity,
            initial_perturbation=initial_perturbation,
            steps=steps,
            step_size=step_size,
            epsilon=epsilon,
            mine_steps=mine_steps,
            mine_lr=mine_lr,
            initial_const=_validation.check_positive_float(initial_const, "initial_const"),
            batch_size=batch_size,
            seed=seed,
            layer_name=layer_name,
            num_projections=num_projections,
            projection_dim=projection_dim,
            jit_compile=jit_compile,
            verbose=verbose,
        )
        self.search_steps = _validation.check_positive_int(search_steps, "search_steps")
        self.lower_bound = _validation.check_positive_float(lower_bound, "lower_bound")
        self.upper_bound = _validation.check_positive_float(upper_bound, "upper_bound")
        if self.lower_bound >= self.upper_bound:
            raise ValueError(
                "lower_bound must be below upper_bound. Received: "
                f"lower_bound={lower_bound!r}, upper_bound={upper_bound!r}"
            )
        self._check = None

    def get_config(self):
        """Returns the attack's settings (and its criterion's) as a JSON-serializable dict."""
        config = super().get_config()
        del config["beta"]
        return {
            **config,
            "attack": type(self).__name__,
            "search_steps": self.search_steps,
            "lower_bound": self.lower_bound,
            "upper_bound": self.upper_bound,
        }

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "attack")
        return f"{type(self).__name__}({settings})"

    def _build(self, input_shape):
        similarity = super()._build(input_shape)
        if self._check is None:
            self._check = tf.function(self.criterion.__call__, reduce_retracing=True)
        return similarity

    def _prepare_batch(self, x, labels, indices, search_step):
        """Reference, delta_0, fresh networks and permutations of one search step (no XLA)."""
        reference = self.criterion.reference(x, labels)
        seeds = _seeds.sample_seeds(self.seed, indices)
        if search_step > 0:
            seeds = _seeds.fold_in(seeds, _SEARCH_STREAM + search_step)
        num_draws = self.steps * self._similarity.draws_per_iteration
        delta = self._initial_delta(x, seeds)
        return reference, delta, self._similarity.initial_state(x, seeds, num_draws)

    def _run_batch(self, x, labels, indices):
        x = tf.constant(x)
        labels = None if labels is None else tf.constant(labels)
        indices = tf.constant(indices)
        n = int(x.shape[0])
        sign = -1.0 if self.criterion.supervised else 1.0
        best = {
            "best_x": x,
            "best_mi": tf.fill([n], sign * np.inf),
            "found": tf.zeros([n], tf.bool),
            "low_x": x,
            "low_f": tf.fill([n], np.inf),
            "low_mi": tf.zeros([n]),
        }
        const = np.full(n, self.initial_const)
        lower = np.full(n, self.lower_bound)
        upper = np.full(n, self.upper_bound)
        mi_history, c_history = [], []
        for step in range(self.search_steps):
            reference, delta, state = self._prepare(x, labels, indices, tf.constant(step))
            c = tf.constant(const, tf.float32)
            out = self._run_loop(x, reference, delta, state, c, best)
            best = {key: out[key] for key in best}
            mi_history.append(out["mi_history"].numpy())
            c_history.append(np.repeat(c.numpy()[:, None], self.steps, axis=1))
            const, lower, upper = binary_search_update(
                out["step_found"].numpy(), const, lower, upper, self.upper_bound
            )

        sample_axes = list(range(1, len(x.shape)))
        found = best["found"]
        x_adv = _where(found, best["best_x"], best["low_x"], sample_axes)
        f = self._check(x_adv, x, reference)
        return AttackResult(
            x_adv=x_adv.numpy(),
            success=(found & (f <= 0.0)).numpy(),
            mi=tf.where(found, best["best_mi"], best["low_mi"]).numpy(),
            f=f.numpy(),
            mi_history=np.concatenate(mi_history, axis=1),
            c_history=np.concatenate(c_history, axis=1).astype(np.float32),
        )

    def _run_loop(self, *args):
        try:
            return self._loop(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if self.jit_compile != "auto" or "XLA" not in str(error):
                raise
            warnings.warn(
                "The attack loop does not compile with XLA for this model; running it "
                f"in plain graph mode (slower). Set jit_compile=False to skip the try. ({error})"
            )
            self.jit_compile = False
            self._loop = self._compile_loop(False)
            return self._loop(*args)

    def _attack_loop(self, x, reference, delta, state, const, best):
        """T' iterations at the fixed constants ``const``, carrying the best-so-far."""
        criterion, similarity = self.criterion, self._similarity
        sign = -1.0 if criterion.supervised else 1.0  # F = c f+ + sign * I
        draws = similarity.draws_per_iteration
        sample_axes = list(range(1, len(x.shape)))
        best = dict(best)
        step_found = tf.zeros_like(best["found"])
        mi_history = tf.TensorArray(tf.float32, size=self.steps)

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
            success = f <= 0.0
            step_found = step_found | success
            improved = success & (sign * mi < sign * best["best_mi"])
            best["best_x"] = _where(improved, x_adv, best["best_x"], sample_axes)
            best["best_mi"] = tf.where(improved, mi, best["best_mi"])
            best["found"] = best["found"] | improved
            lower = f < best["low_f"]
            best["low_x"] = _where(lower, x_adv, best["low_x"], sample_axes)
            best["low_mi"] = tf.where(lower, mi, best["low_mi"])
            best["low_f"] = tf.where(lower, f, best["low_f"])
            mi_history = mi_history.write(t, mi)

        return {**best, "step_found": step_found, "mi_history": tf.transpose(mi_history.stack())}
