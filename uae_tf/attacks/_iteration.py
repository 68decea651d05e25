"""What the MinMax and penalty attacks share: the iteration step and the best-so-far.

Both minimize ``F = c * f+(x + delta) + sign * S(x, x + delta)`` (``sign = -1``
for supervised criteria: keep similar; ``+1`` for unsupervised ones: make
dissimilar) with the same step; they differ only in how c moves.
"""

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf import similarity as similarity_lib

# Stream of the initial perturbation, apart from the networks' and permutations' draws.
_DELTA_STREAM = 0x64656C74


class IterationStep:
    """delta_0, the similarity's state, and one iteration on a batch of samples.

    Args:
        criterion: A criterion from :mod:`uae_tf.criteria`.
        similarity: Anything :func:`uae_tf.similarity.get` accepts.
        initial_perturbation: delta_0: ``0.0``, a radius in (0, 1] or ``"glorot"``
            (see :class:`~uae_tf.attacks.MinMaxAttack`).
        step_size: alpha, the gradient step on delta.
        epsilon: L-infinity bound on delta, in (0, 1].
    """

    def __init__(self, criterion, similarity, initial_perturbation, step_size, epsilon):
        self.criterion = criterion
        self.similarity = similarity_lib.get(similarity)
        self.initial_perturbation = check_initial_perturbation(initial_perturbation)
        self.step_size = _validation.check_positive_float(step_size, "step_size")
        self.epsilon = _validation.check_positive_float(epsilon, "epsilon", upper=1.0)
        self.sign = -1.0 if criterion.supervised else 1.0

    def build(self, input_shape, seed):
        """Builds the similarity for samples of ``input_shape`` and the attack's ``seed``."""
        self.similarity.build(input_shape, self.criterion, seed)

    def get_config(self):
        """Returns the settings (the criterion's and the similarity's as nested dicts)."""
        return {
            "criterion": self.criterion.get_config(),
            "similarity": self.similarity.get_config(),
            "initial_perturbation": self.initial_perturbation,
            "step_size": self.step_size,
            "epsilon": self.epsilon,
        }

    def start(self, x, labels, seeds, steps):
        """Returns ``(reference, delta_0, state)`` for ``steps`` iterations (no XLA).

        Args:
            x: ``[B, ...]`` clean samples.
            labels: ``[B]`` labels or ``None``.
            seeds: ``[B, 2]`` per-sample seeds of delta_0 and the similarity's draws.
            steps: Iterations the state must hold random draws for.
        """
        reference = self.criterion.reference(x, labels, seeds)
        delta = initial_delta(x, seeds, self.initial_perturbation, self.epsilon)
        state = self.similarity.initial_state(x, seeds, steps * self.similarity.draws_per_iteration)
        return reference, delta, state

    def __call__(self, x, reference, delta, state, const, t):
        """Iteration ``t`` (from 0) at the constants ``const``.

        A plain gradient step on delta of ``F``, clipping of delta to
        [-epsilon, epsilon] and of x + delta to [0, 1], then the similarity's update
        at x + delta and the criterion there.

        Returns:
            ``(delta, x_adv, state, s, f)``: the new perturbation, ``x + delta``, the
            similarity's state and ``[B]`` value after its update, and ``[B]`` f.
        """
        criterion, similarity = self.criterion, self.similarity
        counter = t * similarity.draws_per_iteration
        with tf.GradientTape() as tape:
            tape.watch(delta)
            x_adv = x + delta
            f_plus = tf.nn.relu(criterion(x_adv, x, reference))
            score = similarity.score(state, x_adv, counter)
            objective = tf.reduce_sum(const * f_plus + self.sign * score)
        grad = tape.gradient(objective, delta)
        delta = tf.clip_by_value(delta - self.step_size * grad, -self.epsilon, self.epsilon)
        x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
        delta = x_adv - x
        state, value = similarity.update(state, x_adv, counter)
        return delta, x_adv, state, value, criterion(x_adv, x, reference)


SELECTIONS = ("published", "algorithm1")


class BestSoFar:
    """The per-sample best successful iterate, and the lowest-f one as a fallback.

    Which iterates count as successful is the ``selection`` rule:

    * ``"published"`` (default): as the published attacks. For unsupervised criteria
      and a similarity that estimates mutual information (MINE), an iterate counts
      when ``f <= 0`` *and* its estimate is positive, and the smallest positive
      estimate is kept (``unsupervised_attack.py``: ``fx == 0 and
      mutual_in > 0``). A non-positive Donsker-Varadhan estimate is below what the
      statistics network can tell apart from independence, so taking the most
      negative one selects the iterate where the barely trained network is most
      wrong, not the most dissimilar example. For supervised criteria the published
      ``supervised_attack.py`` and ``MINE_binary_search.py`` count an iterate when
      the classifier is fooled, whatever the estimate, and keep the highest: the
      same as ``"algorithm1"``.
    * ``"algorithm1"``: Algorithm 1 as printed, an iterate counts when ``f <= 0``.

    Among counted iterates the one with the best similarity is kept (lowest for
    ``sign = +1``, highest for ``sign = -1``). The tracked values are a dict of
    ``[B, ...]`` tensors, carried by the attacks' loops.

    Args:
        sign: ``+1`` (unsupervised: lower is better) or ``-1`` (supervised).
        selection: ``"published"`` or ``"algorithm1"``.
        estimates_information: Whether the similarity is a mutual-information
            estimate (``Similarity.estimates_information``); the published rule
            asks for a positive value only then (an L2-UAE's ``-||x - Phi||^2`` is
            never positive).
    """

    def __init__(self, sign, selection="published", estimates_information=True):
        if selection not in SELECTIONS:
            raise ValueError(
                f"selection must be one of {SELECTIONS}. Received: selection={selection!r}"
            )
        self.sign = sign
        self.selection = selection
        self.requires_positive = selection == "published" and sign > 0 and estimates_information

    def initial(self, x):
        """Returns the tracked values before any iterate, for clean ``x``."""
        batch = tf.shape(x)[0]
        return {
            "best_x": x,
            "best_s": tf.fill([batch], self.sign * np.inf),
            "best_f": tf.fill([batch], np.inf),
            "found": tf.zeros([batch], tf.bool),
            "low_x": x,
            "low_s": tf.zeros([batch]),
            "low_f": tf.fill([batch], np.inf),
        }

    def update(self, tracked, x_adv, s, f):
        """Takes in one iterate; returns ``(tracked, [B] whether it counts as successful)``."""
        counts = f <= 0.0
        if self.requires_positive:
            counts &= s > 0.0
        improved = counts & (self.sign * s < self.sign * tracked["best_s"])
        lower = f < tracked["low_f"]
        return {
            "best_x": _where(improved, x_adv, tracked["best_x"]),
            "best_s": tf.where(improved, s, tracked["best_s"]),
            "best_f": tf.where(improved, f, tracked["best_f"]),
            "found": tracked["found"] | improved,
            "low_x": _where(lower, x_adv, tracked["low_x"]),
            "low_s": tf.where(lower, s, tracked["low_s"]),
            "low_f": tf.where(lower, f, tracked["low_f"]),
        }, counts

    def result(self, tracked):
        """Returns ``(x_adv, found, s, f)``: the best where found, else the lowest-f."""
        found = tracked["found"]
        return (
            _where(found, tracked["best_x"], tracked["low_x"]),
            found,
            tf.where(found, tracked["best_s"], tracked["low_s"]),
            tf.where(found, tracked["best_f"], tracked["low_f"]),
        )


def check_initial_perturbation(initial_perturbation):
    """Returns ``"glorot"`` or the radius as a float, or raises a ValueError naming it."""
    if initial_perturbation == "glorot":
        return initial_perturbation
    if not (
        isinstance(initial_perturbation, (int, float))
        and not isinstance(initial_perturbation, bool)
        and np.isfinite(initial_perturbation)
        and 0 <= initial_perturbation <= 1
    ):
        raise ValueError(
            "initial_perturbation must be 'glorot' or a radius in [0, 1]. Received: "
            f"initial_perturbation={initial_perturbation!r}"
        )
    return float(initial_perturbation)


def initial_delta(x, seeds, initial_perturbation, epsilon):
    """delta_0 of each sample: uniform in [-r, r] from its seed, x + delta_0 in [0, 1].

    Args:
        x: ``[B, ...]`` clean samples.
        seeds: ``[B, 2]`` per-sample seeds (the attack's, before its delta stream).
        initial_perturbation: ``"glorot"`` (r = :func:`glorot_radius`) or a radius.
        epsilon: The L-infinity bound; r is capped by it.
    """
    radius = initial_perturbation
    if radius == "glorot":
        radius = glorot_radius(x.shape[1:])
    if radius == 0:
        return tf.zeros_like(x)
    radius = min(radius, epsilon)
    delta = tf.map_fn(
        lambda s: tf.random.stateless_uniform(tf.shape(x)[1:], s, -radius, radius),
        _seeds.fold_in(seeds, _DELTA_STREAM),
        fn_output_signature=tf.float32,
    )
    return tf.clip_by_value(x + delta, 0.0, 1.0) - x


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


def _where(mask, a, b):
    """Per-sample select: ``mask`` is ``[B]``, ``a`` and ``b`` are ``[B, ...]``."""
    mask = tf.reshape(mask, [-1] + [1] * (len(a.shape) - 1))
    return tf.where(mask, a, b)
