"""Training batches shuffled from a seed, without the global random state."""

import math

import tensorflow as tf

from uae_tf._validation import check_seed


def shuffled_batches(x, y=None, batch_size=100, seed=0):
    """Returns ``(dataset, steps_per_epoch)``: batches of ``(x, y)``, reshuffled every epoch.

    Epoch ``e`` visits the samples in the order of a permutation drawn by the
    stateless stream ``(seed, e)``, so the batches depend on ``seed`` alone: not on
    the global Python, NumPy or TensorFlow random state, which drawing them leaves
    untouched (``fit(x, y, shuffle=True)`` shuffles with TensorFlow's global seed).
    The last batch of an epoch may be smaller, as with ``fit(x, y, batch_size=...)``.

    Args:
        x: ``[N, ...]`` inputs.
        y: ``[N, ...]`` targets, or ``None`` for targets equal to the inputs (an
            autoencoder).
        batch_size: Samples per batch.
        seed: Integer seed of the shuffling.

    Returns:
        An endless ``tf.data.Dataset`` of ``(inputs, targets)`` batches and the
        number of batches in one epoch; fit with ``model.fit(dataset,
        steps_per_epoch=steps_per_epoch, epochs=...)``, so that each epoch continues
        the same iterator with the next permutation.

    Example:

    >>> dataset, steps = shuffled_batches(x, batch_size=100, seed=0)  # doctest: +SKIP
    >>> model.fit(dataset, steps_per_epoch=steps, epochs=20)  # doctest: +SKIP
    """
    n = len(x)
    x = tf.convert_to_tensor(x)
    y = None if y is None else tf.convert_to_tensor(y)
    seed = tf.constant(check_seed(seed), tf.int64)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def gather(rows):
        inputs = tf.gather(x, rows)
        return inputs, inputs if y is None else tf.gather(y, rows)

    dataset = tf.data.Dataset.counter().flat_map(one_epoch).map(gather)
    return dataset.prefetch(tf.data.AUTOTUNE), math.ceil(n / batch_size)
