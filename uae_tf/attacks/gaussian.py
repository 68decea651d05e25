"""Gaussian augmentation (GA), the paper's noise baseline, in the attacks' shape."""

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks.base import AttackResult, run_in_batches

# Stream of the noise, apart from the attacks' draws from the same sample seeds.
_NOISE_STREAM = 0x6E6F6973


class GaussianAugmentation:
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
    """

    def __init__(self, criterion, sigma=0.01, batch_size=256, seed=0):
        self.criterion = criterion
        self.sigma = _validation.check_positive_float(sigma, "sigma")
        self.batch_size = _validation.check_positive_int(batch_size, "batch_size")
        self.seed = int(seed)
        self._run = tf.function(self._run_batch_graph, reduce_retracing=True)

    def get_config(self):
        """Returns the settings as a JSON-serializable dict."""
        return {
            "attack": type(self).__name__,
            "criterion": self.criterion.get_config(),
            "sigma": self.sigma,
            "seed": self.seed,
        }

    def __call__(self, x, labels=None, indices=None):
        """Adds the noise to ``x`` (``[N, ...]`` in [0, 1]); see :class:`MinMaxAttack`."""
        x = _validation.check_images(x, "x")
        n = len(x)
        indices = np.arange(n) if indices is None else np.asarray(indices).reshape(-1)
        if len(indices) != n:
            raise ValueError(f"indices must have {n} entries, one per sample. Received {len(indices)}")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
        return run_in_batches(self._run_batch, [x, labels, indices], self.batch_size)

    def _run_batch(self, x, labels, indices):
        labels = None if labels is None else tf.constant(labels)
        x_aug, f = self._run(tf.constant(x), labels, tf.constant(indices))
        n = len(x)
        return AttackResult(
            x_adv=x_aug.numpy(),
            success=f.numpy() <= 0,
            mi=np.full(n, np.nan, np.float32),
            f=f.numpy(),
            mi_history=np.zeros((n, 0), np.float32),
            c_history=np.zeros((n, 0), np.float32),
        )

    def _run_batch_graph(self, x, labels, indices):
        seeds = _seeds.fold_in(_seeds.sample_seeds(self.seed, indices), _NOISE_STREAM)
        noise = tf.map_fn(
            lambda s: tf.random.stateless_normal(tf.shape(x)[1:], s, stddev=self.sigma),
            seeds,
            fn_output_signature=tf.float32,
        )
        x_aug = tf.clip_by_value(x + noise, 0.0, 1.0)
        return x_aug, self.criterion(x_aug, x, self.criterion.reference(x, labels))
