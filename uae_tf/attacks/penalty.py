"""The penalty-based baseline with a binary search on c (Algorithm 3), batched over samples."""

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks import memory
from uae_tf.attacks._iteration import BestSoFar, IterationStep
from uae_tf.attacks.base import Attack, AttackResult

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


class PenaltyAttack(Attack):
    """Penalty-based attack with a binary search on c (Algorithm 3, the Table 3 baseline).

    The MINE attack with a *fixed* constant: minimize ``F = c * f+(x + delta) -/+
    I(x, x + delta)`` by the iteration step of :class:`MinMaxAttack` (gradient step
    on delta with ``step_size``, clipping, the similarity's update) for
    ``steps`` (T') iterations, then move c by a binary search and start again, for
    ``search_steps`` (B) search steps. Per sample: ``lb = lower_bound``, ``ub =
    upper_bound``, ``c = initial_const``; after a search step that found a
    successful iterate ``ub = min(ub, c)``, else ``lb = max(lb, c)``; then ``c =
    (lb + ub) / 2`` once ``ub < upper_bound``, else ``c = 10 c`` (see
    :func:`binary_search_update`). With Algorithm 3's ``lb = c_0 = 1e-3`` a success
    in the first search step keeps c at 1e-3 (Carlini and Wagner's ``lb = 0``
    would halve it).

    Over all ``B * T'`` iterations the attack keeps the successful iterate with the
    best MI (highest for supervised criteria, lowest for unsupervised ones; which
    iterates succeed is the ``selection`` rule), like Algorithm 3's ``delta*``; where none succeeds it returns the lowest-f iterate
    with ``success=False``.

    Choices where Algorithm 3 is silent, following the published
    ``MINE_binary_search.py`` (itself Carlini and Wagner's search):

    * Each search step restarts: delta gets a fresh start
      (``initial_perturbation``, redrawn per step) and every sample gets fresh statistics networks
      and Adam moments, drawn from the sample's seed and the step number (step 0
      draws what :class:`MinMaxAttack` draws, so both methods start alike).
    * A search step counts as a success when *that step* found a successful
      iterate (the published code's ``bestscore``), not when the best-so-far
      ``delta*`` does: with the latter, every step after the first success would
      count as one and the search could only lower c.

    Unlike the published script (20 MINE steps at lr 2e-5 per iteration, with
    MINE's Adam also moving delta), the similarity is trained exactly as in
    :class:`MinMaxAttack` (its ``mine_steps``, ``learning_rate``), so that a comparison at
    the same number of iterations differs only in how c is chosen.

    The success flags are recomputed after the loop with the criterion outside XLA
    (the model's ordinary inference), so ``success`` says what the model does on
    ``x_adv``; a sample whose compiled and ordinary evaluations disagree at the
    boundary is reported as failed.

    Args:
        criterion: A criterion from :mod:`uae_tf.criteria`.
        similarity: A :class:`~uae_tf.similarity.Similarity`, a config dict,
            ``"mine"`` or ``"l2"`` (see :class:`MinMaxAttack`).
        initial_perturbation: delta at the start of every search step, drawn
            anew for each step as the published ``MINE_binary_search.py`` does:
            ``"glorot"`` (default, the published start), ``0`` or a radius in
            (0, 1] (see :class:`MinMaxAttack`).
        search_steps: B, binary search steps (paper: 9).
        steps: T', iterations per search step (paper: 1000).
        step_size: alpha, the gradient step on delta (paper: 0.01).
        epsilon: L-infinity bound on delta, in (0, 1].
        initial_const: c of the first search step (paper: 1e-3).
        lower_bound: Initial lb (paper: 1e-3).
        upper_bound: Initial ub, and the value below which ub counts as found
            (paper: 1e9).
        batch_size: Samples attacked together; results do not depend on it.
            Default as :class:`MinMaxAttack`'s: on a CPU 1 (16 for cache-sized
            statistics networks), from the free memory on a GPU; halved and
            retried when it runs out of memory.
        seed: Seed of every random choice.
        jit_compile: Compile each search step's loop with XLA (``"auto"``: unless
            the similarity uses the fused CPU op, and falling back to graph mode
            when the model does not compile; see :class:`MinMaxAttack`).
        verbose: Show a progress bar.
        selection: Which iterates count as successful, ``"published"`` (default)
            or ``"algorithm1"`` (see :class:`MinMaxAttack`).

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
        similarity="mine",
        initial_perturbation="glorot",
        search_steps=9,
        steps=1000,
        step_size=0.01,
        epsilon=1.0,
        initial_const=1e-3,
        lower_bound=1e-3,
        upper_bound=1e9,
        batch_size=None,
        seed=0,
        jit_compile="auto",
        verbose=False,
        selection="published",
    ):
        super().__init__(criterion, batch_size, seed, jit_compile, verbose)
        self._step = IterationStep(criterion, similarity, initial_perturbation, step_size, epsilon)
        self._best = BestSoFar(
            self._step.sign, selection, self._step.similarity.estimates_information
        )
        self.similarity = self._step.similarity
        self.search_steps = _validation.check_positive_int(search_steps, "search_steps")
        self.steps = _validation.check_positive_int(steps, "steps")
        self.initial_const = _validation.check_positive_float(initial_const, "initial_const")
        self.lower_bound = _validation.check_positive_float(lower_bound, "lower_bound")
        self.upper_bound = _validation.check_positive_float(upper_bound, "upper_bound")
        if self.lower_bound >= self.upper_bound:
            raise ValueError(
                "lower_bound must be below upper_bound. Received: "
                f"lower_bound={lower_bound!r}, upper_bound={upper_bound!r}"
            )
        self._prepare = tf.function(self._prepare_batch, reduce_retracing=True)
        self._check = tf.function(self.criterion.__call__, reduce_retracing=True)

    def _settings(self):
        return {
            **self._step.get_config(),
            "selection": self._best.selection,
            "search_steps": self.search_steps,
            "steps": self.steps,
            "initial_const": self.initial_const,
            "lower_bound": self.lower_bound,
            "upper_bound": self.upper_bound,
        }

    def _build(self, input_shape):
        self._step.build(input_shape, self.seed)

    def _memory_estimate(self, input_shape):
        return memory.estimate_attack_memory(self, input_shape)

    def _prepare_batch(self, x, labels, indices, search_step):
        """Reference, delta_0 and the similarity's fresh state of one search step (no XLA)."""
        seeds = _seeds.sample_seeds(self.seed, indices)
        if search_step > 0:
            seeds = _seeds.fold_in(seeds, _SEARCH_STREAM + search_step)
        return self._step.start(x, labels, seeds, self.steps)

    def _run_batch(self, x, labels, indices):
        x = tf.constant(x)
        labels = None if labels is None else tf.constant(labels)
        indices = tf.constant(indices)
        tracked = self._best.initial(x)
        n = len(indices)
        const = np.full(n, self.initial_const)
        lower = np.full(n, self.lower_bound)
        upper = np.full(n, self.upper_bound)
        mi_history, c_history = [], []
        for step in range(self.search_steps):
            reference, delta, state = self._prepare(x, labels, indices, tf.constant(step))
            c = tf.constant(const, tf.float32)
            tracked, step_found, history = self._run_loop(x, reference, delta, state, c, tracked)
            mi_history.append(history.numpy())
            c_history.append(np.repeat(c.numpy()[:, None], self.steps, axis=1))
            const, lower, upper = binary_search_update(
                step_found.numpy(), const, lower, upper, self.upper_bound
            )

        x_adv, found, mi, _ = self._best.result(tracked)
        f = self._check(x_adv, x, reference)
        return AttackResult(
            x_adv=x_adv.numpy(),
            success=(found & (f <= 0.0)).numpy(),
            mi=mi.numpy(),
            f=f.numpy(),
            mi_history=np.concatenate(mi_history, axis=1),
            c_history=np.concatenate(c_history, axis=1).astype(np.float32),
        )

    def _attack_loop(self, x, reference, delta, state, const, tracked):
        """T' iterations at the fixed constants ``const``, carrying the best-so-far.

        Returns:
            ``(tracked, step_found, mi_history)``: the best-so-far, whether this
            search step found a successful iterate, and its ``[B, T']`` MI.
        """
        step_found = tf.zeros_like(tracked["found"])
        mi_history = tf.TensorArray(tf.float32, size=self.steps)
        for t in tf.range(self.steps):
            delta, x_adv, state, mi, f = self._step(x, reference, delta, state, const, t)
            tracked, counts = self._best.update(tracked, x_adv, mi, f)
            step_found = step_found | counts
            mi_history = mi_history.write(t, mi)
        return tracked, step_found, tf.transpose(mi_history.stack())
