"""Per-sample random streams that do not depend on batch composition.

A sample's randomness (its statistics network's initial weights, its view
permutations) is drawn from its own seed ``(run_seed, index)``, where ``index`` is
the sample's row in the dataset, so a batch of B samples gives what B runs of one
give. All ops are stateless.
"""

import tensorflow as tf

from uae_tf._validation import check_seed


def sample_seeds(seed, indices):
    """Returns ``[B, 2]`` int32 seeds ``(seed, index)`` for the samples ``indices``.

    Raises:
        ValueError: unless ``seed`` is an integer in ``[0, 2**31)``, the int32 range
            these streams hold (:func:`uae_tf._validation.check_seed`).
    """
    indices = tf.cast(tf.reshape(indices, [-1]), tf.int32)
    run = tf.fill(tf.shape(indices), tf.constant(check_seed(seed), tf.int32))
    return tf.stack([run, indices], axis=1)


def fold_in(seeds, data):
    """Derives ``[B, 2]`` int32 seeds of an independent stream ``data`` from ``[B, 2]`` seeds."""
    return tf.map_fn(
        lambda s: tf.random.experimental.stateless_fold_in(s, data),
        seeds,
        fn_output_signature=tf.int32,
    )


def permutations(seeds, counter, k):
    """Returns ``[B, k]`` int32: for each sample, a random permutation of ``range(k)``.

    Sample b's permutation depends on ``(seeds[b], counter)`` only.

    Args:
        seeds: ``[B, 2]`` int32 per-sample seeds.
        counter: Scalar integer naming the draw (e.g. the optimization step).
        k: Length of each permutation.
    """
    batch = tf.shape(seeds)[0]
    counter = tf.cast(counter, tf.int64)
    rows = tf.concat([tf.cast(seeds, tf.int64), tf.fill([batch, 1], counter)], axis=1)
    rows = tf.repeat(rows, k, axis=0)
    index = tf.tile(tf.range(k, dtype=tf.int64), [batch])
    shuffled = tf.raw_ops.RandomIndexShuffle(
        index=index, seed=rows, max_index=tf.cast(k - 1, tf.int64), rounds=4
    )
    return tf.cast(tf.reshape(shuffled, [batch, k]), tf.int32)
