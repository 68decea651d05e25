"""The MinMax attack (Algorithm 1) with per-sample MINE, batched over samples."""

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks import memory
from uae_tf.attacks._iteration import BestSoFar, IterationStep, glorot_radius
from uae_tf.attacks.base import Attack, AttackResult

__all__ = ["MinMaxAttack", "glorot_radius"]


class MinMaxAttack(Attack):
    """MinMax attack of Algorithm 1: min over delta, max over c >= 0 of
    ``F = c * f+(x + delta) -/+ I(x, x + delta)``.

    Unsupervised criteria (``criterion.supervised == False``) minimize I: the
    adversarial example is as *dissimilar* to x as MINE can tell while its loss is
    no worse (``+I`` in F). Supervised criteria maximize I: the example evades the
    classifier while staying *similar* (``-I`` in F).

    Per iteration t = 1..T, for every sample of the batch at once:

    1. one plain gradient step on delta with step ``step_size`` (alpha);
    2. clip delta to [-epsilon, epsilon] and x + delta to [0, 1];
    3. the similarity's update at x + delta (for MINE: ``mine_steps`` Adam steps
       on the sample's statistics network);
    4. ``c <- max(0, (1 - beta / t^p) * c + beta * f+(x + delta))`` with
       p = ``const_decay_power`` (1/4; the published SimCLR attack used 1/2);
    5. keep x + delta if it succeeds with the best I so far (lowest for
       unsupervised, highest for supervised); with the default
       ``selection="published"`` an unsupervised MINE iterate succeeds when
       f <= 0 and its MI estimate is positive (the published code), with
       ``"algorithm1"`` when f <= 0.

    Where no iterate succeeds the sample gets the iterate with the lowest f and
    ``success=False``. c starts at ``initial_const`` (1e-3, the published code;
    Algorithm 1 writes c_0 = 0, which would make the first step ignore the
    criterion). The MI of an iterate is the estimate of the last MINE step's
    forward pass, as in the published code.

    The start matters. delta_0 is by default the published code's: its attacks
    create delta with ``tf.get_variable`` and no initializer, i.e. Glorot-uniform
    noise in +-sqrt(6 / (fan_in + fan_out)) of a ``[1, *sample_shape]`` variable
    (0.086 for a 28x28x1 image, 0.073 for 32x32x3), drawn anew for every sample.
    ``initial_perturbation=0`` is Algorithm 1 as printed; from there, with alpha =
    0.01, the gradient of I through a barely trained statistics network is tiny
    and UAEs stay within about 1e-4 of x, which as augmentation is close to
    duplicating the data.

    All T iterations of a batch run in one ``tf.function`` (a ``tf.while_loop``)
    with every per-sample quantity -- delta, c, the statistics networks and their
    Adam moments, the best-so-far -- a tensor with a leading batch axis. Each
    sample's randomness comes from ``(seed, index)``, so a batch of B gives what B
    runs of one give.

    Args:
        criterion: A criterion from :mod:`uae_tf.criteria`.
        similarity: What I is: a :class:`~uae_tf.similarity.Similarity` (e.g.
            ``MINESimilarity(view="random", mine_steps=5)``, or a user's own), a
            config dict (``{"name": "mine", "view": "random"}``), ``"mine"`` (the
            method, with :class:`~uae_tf.similarity.MINESimilarity`'s defaults) or
            ``"l2"`` (the L2-UAE baseline: ``-||x - Phi(x + delta)||^2`` in place of
            I, unsupervised criteria with a model only). The results' ``mi``
            fields hold its value. Built on the attack's first call.
        initial_perturbation: delta_0: ``"glorot"`` (default: the published
            code's Glorot-uniform start, see above), ``0`` (Algorithm 1 as
            printed) or a radius r > 0 for delta_0 uniform in [-r, r]. Drawn from ``(seed, index)``; x +
            delta_0 is clipped to [0, 1].
        steps: T, attack iterations (paper: 40 unsupervised).
        step_size: alpha, the gradient step on delta (paper: 0.01).
        beta: Step size of the c update (paper: 0.1).
        epsilon: L-infinity bound on delta, in (0, 1] (paper: 1).
        initial_const: c_0 (published: 1e-3).
        const_decay_power: p in the c update's ``1 - beta / t^p`` (Algorithm 1 and
            the published autoencoder attacks: 0.25; the published SimCLR attack:
            0.5, which lets c grow faster).
        batch_size: Samples attacked together; results do not depend on it.
            Default on a CPU 1, or 16 when the statistics networks are
            cache-sized (the random view's; see ``memory.default_batch_size``);
            on a GPU as many as its free memory holds
            (:func:`~uae_tf.attacks.estimate_attack_memory`), up to 512. A batch
            that runs out of memory is halved and retried.
        seed: Seed of every random choice (networks, permutations, projections).
        jit_compile: Compile the attack loop with XLA (``True``; about 2x faster
            than graph mode with TensorFlow's kernels) or not (``False``).
            ``"auto"`` (default): XLA, unless the similarity trains its networks
            with the fused CPU op (``MINESimilarity(kernel="native")``, what
            ``kernel="auto"`` picks on a CPU for the conv view), which runs in
            graph mode; and plain graph mode, with a warning, when the model has
            ops XLA cannot compile. ``uses_xla`` says which ran.
        verbose: Show a progress bar.
        selection: Which iterates count as successful: ``"published"`` (default;
            for MINE with an unsupervised criterion, ``f <= 0`` and a positive MI
            estimate, the smallest kept, as the published code) or
            ``"algorithm1"`` (``f <= 0``, the lowest MI kept, as printed). For
            supervised criteria both are ``f <= 0`` with the highest MI. See
            :class:`~uae_tf.attacks._iteration.BestSoFar`.

    Example:

    >>> attack = MinMaxAttack(ReconstructionCriterion(autoencoder), seed=0)
    >>> result = attack(x_train[:64])
    >>> fast = MinMaxAttack(ReconstructionCriterion(autoencoder), **get_preset("fast"))
    >>> result.attack_success_rate, result.x_adv.shape
    """

    def __init__(
        self,
        criterion,
        similarity="mine",
        initial_perturbation="glorot",
        steps=40,
        step_size=0.01,
        beta=0.1,
        epsilon=1.0,
        initial_const=1e-3,
        const_decay_power=0.25,
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
        self.steps = _validation.check_positive_int(steps, "steps")
        self.beta = _validation.check_positive_float(beta, "beta")
        if not np.isfinite(initial_const) or initial_const < 0:
            raise ValueError(f"initial_const must be >= 0. Received: initial_const={initial_const}")
        self.initial_const = float(initial_const)
        self.const_decay_power = _validation.check_positive_float(
            const_decay_power, "const_decay_power")
        self._prepare = tf.function(self._prepare_batch, reduce_retracing=True)

    def _settings(self):
        return {
            **self._step.get_config(),
            "selection": self._best.selection,
            "steps": self.steps,
            "beta": self.beta,
            "initial_const": self.initial_const,
            "const_decay_power": self.const_decay_power,
        }

    def _build(self, input_shape):
        self._step.build(input_shape, self.seed)

    def _memory_estimate(self, input_shape):
        return memory.estimate_attack_memory(self, input_shape)

    def _run_batch(self, x, labels, indices):
        x = tf.constant(x)
        labels = None if labels is None else tf.constant(labels)
        reference, delta, state = self._prepare(x, labels, tf.constant(indices))
        out = self._run_loop(x, reference, delta, state)
        return AttackResult(**{k: v.numpy() for k, v in out.items()})

    def _prepare_batch(self, x, labels, indices):
        """Per-sample constants, delta_0 and the similarity's fresh state (no XLA)."""
        return self._step.start(x, labels, _seeds.sample_seeds(self.seed, indices), self.steps)

    def _attack_loop(self, x, reference, delta, state):
        const = tf.fill([tf.shape(x)[0]], self.initial_const)
        tracked = self._best.initial(x)
        mi_history = tf.TensorArray(tf.float32, size=self.steps)
        c_history = tf.TensorArray(tf.float32, size=self.steps)
        for t in tf.range(self.steps):
            delta, x_adv, state, mi, f = self._step(x, reference, delta, state, const, t)
            decay = 1.0 - self.beta / tf.pow(tf.cast(t + 1, tf.float32), self.const_decay_power)
            const = tf.nn.relu(decay * const + self.beta * tf.nn.relu(f))
            tracked, _ = self._best.update(tracked, x_adv, mi, f)
            mi_history = mi_history.write(t, mi)
            c_history = c_history.write(t, const)
        x_adv, success, mi, f = self._best.result(tracked)
        return {
            "x_adv": x_adv,
            "success": success,
            "mi": mi,
            "f": f,
            "mi_history": tf.transpose(mi_history.stack()),
            "c_history": tf.transpose(c_history.stack()),
        }
