"""The paper's metrics of unsupervised models: reconstruction error, feature selection.

:func:`feature_selection_accuracy` is Table 6's downstream accuracy (Balın et al.'s
ExtraTrees protocol on the concrete autoencoder's selected features); the rest of
this module is the reconstruction error of Tables 4 and 6.

Hsu et al. (AAAI 2022) score a reconstruction model Phi by its reconstruction error
on the untouched test split (Table 4 calls it the "average L2 reconstruction loss";
Table 8 gives the training error of the same metric): the mean over samples of each
sample's mean squared error over its pixels,

    error = (1 / N) * sum_i (1 / d) * ||x_i - Phi(x_i)||^2,

where d is the number of values of one sample (H * W * C).

Example:

>>> from uae_tf import datasets, evaluation
>>> x_test, _ = datasets.load("mnist5k", "test")
>>> evaluation.reconstruction_error(phi, x_test)  # doctest: +SKIP
0.0113
"""

import keras
import numpy as np

from uae_tf._validation import check_images, check_positive_int, check_reconstructs


def per_sample_reconstruction_error(model, x, batch_size=256):
    """Returns each sample's mean squared reconstruction error, ``mean(|x - Phi(x)|^2)``.

    Samples go through the model ``batch_size`` at a time, so memory stays bounded
    whatever the size of ``x``.

    Args:
        model: The reconstruction model Phi, a ``keras.Model`` mapping a batch of
            samples to reconstructions of the same shape.
        x: ``[N, ...]`` samples in [0, 1], of the shape the model takes.
        batch_size: Samples reconstructed at once; does not change the result.

    Returns:
        ``[N]`` float64 array: the mean over the values (pixels and channels) of each
        sample's squared reconstruction error.

    Raises:
        ValueError: if ``x`` is not a non-empty batch of finite values in [0, 1], if
            its samples do not have the model's input shape (the message names both
            shapes), if ``batch_size`` is not a positive integer, if the model's
            output does not have the shape of its input, or if its reconstructions
            are NaN or infinite (a model with NaN weights).

    Example:

    >>> errors = per_sample_reconstruction_error(phi, x_test)  # doctest: +SKIP
    >>> errors.shape  # doctest: +SKIP
    (1000,)
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    x = check_images(x, expected_shape=_sample_shape(model))
    sample_axes = tuple(range(1, x.ndim))
    errors = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        # An eager call, not predict_on_batch: its graph is retraced for the last, smaller
        # batch, and TensorFlow warns about retracing once a few models are evaluated.
        reconstruction = keras.ops.convert_to_numpy(model(batch, training=False))
        check_reconstructs(batch.shape, reconstruction.shape)
        squared = np.square(reconstruction.astype(np.float64) - batch)
        errors[start : start + len(batch)] = squared.mean(axis=sample_axes)
    bad = ~np.isfinite(errors)
    if bad.any():
        raise ValueError(
            f"The model's reconstructions are NaN or infinite for {int(bad.sum())} of "
            f"{len(errors)} samples (are its weights finite?): no reconstruction error to "
            "report."
        )
    return errors


def reconstruction_error(model, x, batch_size=256):
    """Returns the paper's reconstruction error of ``model`` on ``x``.

    The mean over samples of the per-sample mean squared error (mean over pixels and
    channels): ``mean_i mean_j (x_ij - Phi(x)_ij)^2``. This is the metric of the
    paper's Table 4 ("average L2 reconstruction loss", on the test split) and of
    Table 8's training error. As every sample has the same number of values, it also
    equals the mean squared error over all values of ``x``.

    Args:
        model: The reconstruction model Phi, a ``keras.Model`` mapping a batch of
            samples to reconstructions of the same shape.
        x: ``[N, ...]`` samples in [0, 1], of the shape the model takes.
        batch_size: Samples reconstructed at once; does not change the result.

    Returns:
        The reconstruction error, a Python float.

    Raises:
        ValueError: as :func:`per_sample_reconstruction_error`.

    Example:

    >>> x_test, _ = datasets.load("mnist5k", "test")  # doctest: +SKIP
    >>> reconstruction_error(phi, x_test)  # doctest: +SKIP
    0.0113
    """
    return float(per_sample_reconstruction_error(model, x, batch_size).mean())


def _sample_shape(model):
    """Returns the shape of one sample ``model`` takes, or ``None`` if it does not say."""
    try:
        input_shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(input_shape, list):
        raise ValueError(
            "A reconstruction model takes one input. Received: model with "
            f"input_shape={input_shape}"
        )
    return tuple(input_shape[1:])


def feature_selection_accuracy(x_train, y_train, x_test, y_test, features, seed=0,
                               n_estimators=50):
    """Test accuracy of an extremely randomized trees classifier on selected features.

    The downstream evaluation of feature selection of Balın et al. (ICML 2019), which
    Table 6 of Hsu et al. reports as "Accuracy (test set)": an
    ``ExtraTreesClassifier(n_estimators=50)`` fit on the training rows' selected
    columns and scored on the test rows'. The labels are used here only. The
    published evaluation leaves the forest unseeded; ``seed`` fixes it.

    Args:
        x_train: ``[N, ...]`` training samples (flattened to ``[N, d]``).
        y_train: ``[N]`` their integer labels.
        x_test: ``[N', ...]`` test samples of the same shape.
        y_test: ``[N']`` their labels.
        features: ``[M]`` column indices of the flattened samples (e.g.
            ``autoencoders.selected_features(model)``).
        seed: ``random_state`` of the forest.
        n_estimators: Trees in the forest (published: 50).

    Returns:
        The fraction of test samples classified correctly, a Python float.

    Raises:
        ValueError: if the arrays' lengths disagree or ``features`` is empty or out
            of range.

    Example:

    >>> feature_selection_accuracy(x_train, y_train, x_test, y_test,
    ...                            [3, 10, 42])  # doctest: +SKIP
    0.71
    """
    # Imported here: scikit-learn takes about a second to import and most callers
    # never evaluate feature selection.
    from sklearn.ensemble import ExtraTreesClassifier

    x_train = np.asarray(x_train).reshape(len(x_train), -1)
    x_test = np.asarray(x_test).reshape(len(x_test), -1)
    features = np.asarray(features, dtype=np.int64).reshape(-1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"Samples and labels must have the same length. Received: {len(x_train)} training "
            f"samples, {len(y_train)} labels; {len(x_test)} test samples, {len(y_test)} labels"
        )
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"Training and test samples must have the same features. Received: "
            f"{x_train.shape[1]} and {x_test.shape[1]}"
        )
    if features.size == 0 or features.min() < 0 or features.max() >= x_train.shape[1]:
        raise ValueError(
            f"features must be non-empty column indices in [0, {x_train.shape[1]}). Received: "
            f"features={features.tolist()}"
        )
    forest = ExtraTreesClassifier(n_estimators=check_positive_int(n_estimators, "n_estimators"),
                                  random_state=int(seed))
    forest.fit(x_train[:, features], np.asarray(y_train))
    return float(forest.score(x_test[:, features], np.asarray(y_test)))
