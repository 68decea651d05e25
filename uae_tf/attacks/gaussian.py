"""Gaussian augmentation (GA), the paper's noise baseline, in the attacks' shape."""

import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks.base import Attack, unoptimized_result

# Stream of the noise, apart from the attacks' draws from the same sample seeds.
_NOISE_STREAM = 0x6E6F6973


class GaussianAugmentation(Attack):
    """``x + N(0, sigma^2)``, clipped to [0, 1] (Table 4's GA rows, sigma 1e-2 or 1e-3).

    Returns an :class:`~uae_tf.attacks.base.AttackResult` like the attacks, so the
    same generation and augmentation code handles it. ``success`` says whether the
    noisy sample happens to be a UAE (``criterion(x_aug) <= 0``) and ``f`` is the
    criterion there; as augmentation every noisy sample is used, success or not
    (the paper replicates failures only for the attacks). ``mi`` is NaN and the
    histories are empty: nothing is optimized.

    Args:
        criterion: A criterion (for ``f`` and ``success``), e.g.
            ``ReconstructionCriterion(autoencoder)``.
        sigma: Standard deviation of the noise, > 0.
        batch_size: Samples per call of the model; does not change the results.
        seed: Seed; sample i's noise depends on ``(seed, indices[i])`` only.
        verbose: Show a progress bar.
    """

    def __init__(self, criterion, sigma=0.01, batch_size=256, seed=0, verbose=False):
        super().__init__(criterion, batch_size, seed, jit_compile=False, verbose=verbose)
        self.sigma = _validation.check_positive_float(sigma, "sigma")

    def _settings(self):
        return {"criterion": self.criterion.get_config(), "sigma": self.sigma}

    def _run_batch(self, x, labels, indices):
        labels = None if labels is None else tf.constant(labels)
        return unoptimized_result(*self._run_loop(tf.constant(x), labels, tf.constant(indices)))

    def _attack_loop(self, x, labels, indices):
        """The noisy samples and the criterion there (graph mode: nothing to iterate)."""
        seeds = _seeds.sample_seeds(self.seed, indices)
        noise = tf.map_fn(
            lambda s: tf.random.stateless_normal(tf.shape(x)[1:], s, stddev=self.sigma),
            _seeds.fold_in(seeds, _NOISE_STREAM),
            fn_output_signature=tf.float32,
        )
        x_aug = tf.clip_by_value(x + noise, 0.0, 1.0)
        return x_aug, self.criterion(x_aug, x, self.criterion.reference(x, labels, seeds))
