"""The attacks' start delta_0 alone: the `start-only` control of Table 4."""

import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks._iteration import check_initial_perturbation, initial_delta
from uae_tf.attacks.base import Attack, unoptimized_result


class StartOnly(Attack):
    """``x + delta_0``: the start of :class:`MinMaxAttack` with no attack iteration.

    With the published start, a returned MINE-UAE is mostly its start: about 1.0 (L2)
    from x on MNIST, of which the iterations move it 0.02-0.22. This control draws
    exactly the delta_0 that :class:`~uae_tf.attacks.MinMaxAttack` draws for the same
    ``seed`` and sample index, and reports whether the criterion holds there
    (``success``, ``f <= 0``); as augmentation it is filtered and replicated like a
    MINE-UAE, so a comparison shows what the MinMax iterations add over the noise
    they start from. ``mi`` is NaN and the histories are empty: nothing is optimized.

    Args:
        criterion: A criterion, e.g. ``ReconstructionCriterion(autoencoder)``.
        initial_perturbation: delta_0: ``"glorot"`` (default), ``0`` or a radius in
            (0, 1] (see :class:`~uae_tf.attacks.MinMaxAttack`).
        epsilon: L-infinity bound on delta, in (0, 1] (the radius is capped by it).
        batch_size: Samples per call of the model; does not change the results.
        seed: Seed; sample i's start depends on ``(seed, indices[i])`` only.
        verbose: Show a progress bar.

    Example:

    >>> start = StartOnly(ReconstructionCriterion(autoencoder), seed=0)(x_train[:64])
    >>> start.attack_success_rate
    """

    def __init__(self, criterion, initial_perturbation="glorot", epsilon=1.0, batch_size=256,
                 seed=0, verbose=False):
        super().__init__(criterion, batch_size, seed, jit_compile=False, verbose=verbose)
        self.initial_perturbation = check_initial_perturbation(initial_perturbation)
        self.epsilon = _validation.check_positive_float(epsilon, "epsilon", upper=1.0)

    def _settings(self):
        return {"criterion": self.criterion.get_config(),
                "initial_perturbation": self.initial_perturbation, "epsilon": self.epsilon}

    def _run_batch(self, x, labels, indices):
        labels = None if labels is None else tf.constant(labels)
        return unoptimized_result(*self._run_loop(tf.constant(x), labels, tf.constant(indices)))

    def _attack_loop(self, x, labels, indices):
        """x + delta_0 and the criterion there (graph mode: nothing to iterate)."""
        seeds = _seeds.sample_seeds(self.seed, indices)
        x_adv = x + initial_delta(x, seeds, self.initial_perturbation, self.epsilon)
        return x_adv, self.criterion(x_adv, x, self.criterion.reference(x, labels, seeds))
