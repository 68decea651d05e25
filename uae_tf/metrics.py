"""Fréchet and kernel distances between two sets of features (FID and KID).

Table 2 of the paper scores adversarial examples by how far their distribution is
from the training data's in the feature space of a fixed network:

* **Fréchet distance** (FID, Heusel et al. 2017): Gaussians fitted to the two sets of
  features, ``d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``
  (:func:`frechet_distance`). The covariances are the unbiased ones (``N - 1``), as
  the TTUR and pytorch-fid implementations.
* **Kernel distance** (KID, Bińkowski et al. 2018): the unbiased estimate of the
  squared MMD with the cubic polynomial kernel ``k(u, v) = (u.v / d + 1)^3``,
  averaged over random subsets (:func:`kernel_inception_distance`). Values are
  returned as computed; the paper's Table 2 prints them x 100 (its KID of about 10-15
  beside an FID of about 340 is that scale), and so do our reports.

Both take features, so any network can make them. The feature extractors:

* :func:`inception_v3_extractor`: Keras's InceptionV3 with ImageNet weights, its
  2048-d average-pooled features (what "inception distance" means), images resized
  to 299 x 299 and grayscale tiled to three channels. The weights are downloaded once
  by ``keras.utils.get_file`` and cached; offline and not cached,
  :class:`WeightsUnavailableError` names the cache file and how to fetch it.
  These are Keras's weights, not the TF1 graph of the TTUR code: FIDs agree with
  published ones in order of magnitude, not to the digit.
* :func:`layer_extractor`: a layer of any Keras model (default the input of its last
  layer, a classifier's penultimate representation), which needs no download.
* :func:`load_extractor`: a ``.keras`` model file whose output is the features.

:func:`extract_features` runs any of them (or any callable ``images -> features``)
over a dataset in batches.

Example:

>>> from uae_tf import metrics
>>> extractor = metrics.layer_extractor(classifier)          # penultimate layer
>>> a = metrics.extract_features(extractor, x_adv)
>>> b = metrics.extract_features(extractor, x_train)
>>> metrics.frechet_distance(a, b), metrics.kernel_inception_distance(a, b)[0] * 100
"""

import os
import urllib.parse
from pathlib import Path

import keras
import numpy as np

from uae_tf._validation import check_images, check_positive_int, check_seed
from uae_tf.datasets import _check_reachable

INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048
# keras.applications.InceptionV3(include_top=False): the file and the hash it checks.
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
INCEPTION_WEIGHTS_HASH = "bcbd6486424b2319ff4ef7d526e38f63"
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


class WeightsUnavailableError(OSError):
    """A feature extractor's weights are neither cached nor downloadable right now."""


def frechet_distance(features_a, features_b):
    """The Fréchet distance between Gaussians fitted to two sets of features (FID).

    Args:
        features_a: ``[N, d]`` features of one set (N >= 2).
        features_b: ``[M, d]`` features of the other (M >= 2).

    Returns:
        ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` as a float >= 0, with
        the sample means and unbiased covariances. With features from
        :func:`inception_v3_extractor` this is the FID.

    Raises:
        ValueError: if the sets are not 2-d with the same width, have fewer than two
            rows, or hold NaN or infinity.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(500, 4)), rng.normal(1.0, size=(500, 4))
    >>> round(frechet_distance(a, b))  # |mu_a - mu_b|^2 = 4, same covariance
    4
    """
    a = _features(features_a, "features_a")
    b = _features(features_b, "features_b", width=a.shape[1])
    return frechet_distance_from_statistics(
        a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False)
    )


def frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b):
    """The Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b).

    The trace of the matrix square root is taken through symmetric matrices,
    ``tr((S_a S_b)^(1/2)) = tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))``, both roots from
    eigendecompositions with round-off negatives clipped to 0: exact for singular
    covariances (fewer samples than features), where ``scipy.linalg.sqrtm`` of the
    non-symmetric product can return complex values.

    Args:
        mu_a: ``[d]`` mean.
        sigma_a: ``[d, d]`` covariance (symmetric positive semi-definite).
        mu_b: ``[d]`` mean.
        sigma_b: ``[d, d]`` covariance.

    Returns:
        The squared Fréchet (2-Wasserstein) distance, a float >= 0.

    Raises:
        ValueError: if the shapes do not agree.
    """
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
    d = mu_a.shape[0]
    if mu_a.shape != (d,) or mu_b.shape != (d,) or sigma_a.shape != (d, d) or sigma_b.shape != (d, d):
        raise ValueError(
            "Expected means of shape [d] and covariances of shape [d, d]. Received: "
            f"{mu_a.shape}, {sigma_a.shape}, {mu_b.shape}, {sigma_b.shape}"
        )
    root_a = _psd_sqrt(sigma_a)
    middle = root_a @ sigma_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    distance = float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b)
                     - 2.0 * trace_root)
    return max(distance, 0.0)


def kernel_inception_distance(features_a, features_b, subsets=KID_SUBSETS,
                              subset_size=KID_SUBSET_SIZE, seed=0):
    """The kernel distance of Bińkowski et al. (KID): unbiased polynomial-kernel MMD^2.

    For each of ``subsets`` draws, ``m = min(subset_size, N, M)`` rows of each set
    (without replacement) give the unbiased estimate

        MMD^2_u = sum_{i != j} (k(a_i, a_j) + k(b_i, b_j)) / (m (m - 1))
                  - 2 sum_{i, j} k(a_i, b_j) / m^2,

    with ``k(u, v) = (u.v / d + 1)^3``. Its expectation is 0 when both sets come from
    one distribution, so an estimate can be slightly negative.

    Args:
        features_a: ``[N, d]`` features (N >= 2).
        features_b: ``[M, d]`` features (M >= 2).
        subsets: Random subsets averaged (default 100, as torch-fidelity).
        subset_size: Rows per subset (default 1000, as Bińkowski et al.).
        seed: Seed of the subsets' draws.

    Returns:
        ``(mean, std)`` of the estimates over the subsets, unscaled (the paper's
        Table 2 prints x 100).

    Raises:
        ValueError: for sets as in :func:`frechet_distance` or bad settings.

    Example:

    >>> kid, std = kernel_inception_distance(features_a, features_b)
    """
    a = _features(features_a, "features_a")
    b = _features(features_b, "features_b", width=a.shape[1])
    subsets = check_positive_int(subsets, "subsets")
    m = min(check_positive_int(subset_size, "subset_size"), len(a), len(b))
    if m < 2:
        raise ValueError(f"subset_size must be at least 2. Received: subset_size={subset_size}")
    rng = np.random.default_rng(check_seed(seed))
    estimates = np.array([
        _polynomial_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                                  b[rng.choice(len(b), m, replace=False)])
        for _ in range(subsets)
    ])
    return float(estimates.mean()), float(estimates.std())


def extract_features(extractor, x, batch_size=100):
    """Runs ``extractor`` over ``x`` in batches; returns ``[N, d]`` float64 features.

    Args:
        extractor: A Keras model or any callable mapping a float32 batch of images in
            [0, 1], ``[B, H, W, C]``, to features ``[B, ...]`` (flattened per sample).
        x: ``[N, H, W, C]`` images in [0, 1].
        batch_size: Images per call; a memory setting, it does not change the result.

    Returns:
        ``[N, d]`` float64 array.
    """
    x = check_images(x)
    batch_size = check_positive_int(batch_size, "batch_size")
    call = (lambda batch: extractor(batch, training=False)) if isinstance(extractor, keras.Model) \
        else extractor
    batches = [keras.ops.convert_to_numpy(call(x[start:start + batch_size]))
               for start in range(0, len(x), batch_size)]
    return np.concatenate([b.reshape(len(b), -1) for b in batches]).astype(np.float64)


def layer_extractor(model, layer=None):
    """A feature extractor made of ``model`` up to one of its layers; needs no download.

    Args:
        model: A functional or Sequential Keras model.
        layer: Name of the layer whose output is the features; default the input of
            the model's last layer (for a classifier with logits, its penultimate
            representation).

    Returns:
        A ``keras.Model`` from the model's inputs to the features.

    Raises:
        ValueError: if ``layer`` names no layer of the model.

    Example:

    >>> extractor = layer_extractor(classifier)      # the 200-d dense2 of cw_mnist
    """
    if layer is None:
        output = model.layers[-1].input
    else:
        names = [l.name for l in model.layers]
        if layer not in names:
            raise ValueError(f"The model has no layer named {layer!r}. Its layers are: {names}")
        output = model.get_layer(layer).output
    return keras.Model(model.input, output, name=f"{model.name}_features")


def load_extractor(path):
    """Loads a ``.keras`` model whose output is the features.

    Raises:
        OSError: if ``path`` is not a file.
        ValueError: if it is not a readable ``.keras`` model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No feature extractor model at {path}.")
    return keras.saving.load_model(path, compile=False)


def inception_v3_extractor(input_shape, weights="imagenet", cache_dir=None):
    """InceptionV3's 2048-d pooled features of images of ``input_shape`` (for FID and KID).

    The model resizes the images to 299 x 299 (bilinear), tiles a single channel to
    three, and scales [0, 1] to InceptionV3's [-1, 1].

    Args:
        input_shape: ``(height, width, channels)``, one or three channels.
        weights: ``"imagenet"`` (fetched once with ``keras.utils.get_file`` into
            ``cache_dir/models``), the path of an InceptionV3 ``notop`` weights
            file, or ``None`` (random weights, for tests).
        cache_dir: Keras cache directory; default ``$KERAS_HOME`` or ``~/.keras``.

    Returns:
        A ``keras.Model`` from ``[B, *input_shape]`` images in [0, 1] to ``[B, 2048]``.

    Raises:
        WeightsUnavailableError: if the ImageNet weights are not cached and cannot be
            downloaded now; the message names the file and how to fetch it.
        ValueError: if ``input_shape`` has neither one nor three channels.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(
            "InceptionV3 takes images (height, width, 1 or 3 channels). Received: "
            f"input_shape={input_shape}"
        )
    if weights == "imagenet":
        weights = inception_weights(cache_dir)
    inputs = keras.Input(input_shape)
    h = keras.layers.Resizing(INCEPTION_SIZE, INCEPTION_SIZE, interpolation="bilinear")(inputs)
    if input_shape[-1] == 1:
        h = keras.layers.Concatenate()([h, h, h])
    h = keras.layers.Rescaling(2.0, offset=-1.0)(h)
    inception = keras.applications.InceptionV3(
        include_top=False, weights=None if weights is None else str(weights),
        input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3), pooling="avg",
    )
    return keras.Model(inputs, inception(h), name="inception_v3_features")


def inception_weights(cache_dir=None):
    """Returns the path of InceptionV3's ImageNet ``notop`` weights, downloading them once.

    Raises:
        WeightsUnavailableError: if the file is not in the cache and cannot be
            downloaded now (no network, or the download fails).
    """
    cache_dir = Path(cache_dir or os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    name = Path(urllib.parse.urlsplit(INCEPTION_WEIGHTS_URL).path).name
    path = cache_dir / "models" / name
    if not path.is_file():
        try:
            _check_reachable(INCEPTION_WEIGHTS_URL)
        except OSError as error:
            raise WeightsUnavailableError(_unavailable_message(path, error)) from error
    try:
        return Path(keras.utils.get_file(
            name, INCEPTION_WEIGHTS_URL, file_hash=INCEPTION_WEIGHTS_HASH,
            cache_subdir="models", cache_dir=str(cache_dir),
        ))
    except Exception as error:  # Any failure here means the same thing: no weights.
        raise WeightsUnavailableError(_unavailable_message(path, error)) from error


def _unavailable_message(path, error):
    return (
        f"InceptionV3's ImageNet weights are not in the Keras cache ({path}) and could not "
        f"be downloaded ({type(error).__name__}: {error}). Fetch them once with network "
        f"access: python -c \"import keras; keras.utils.get_file('{path.name}', "
        f"'{INCEPTION_WEIGHTS_URL}', cache_subdir='models', cache_dir='{path.parent.parent}')\" "
        f"(or copy the file there), or choose an extractor that needs no download."
    )


def _features(features, name, width=None):
    """``features`` as a finite float64 ``[N, d]`` array with N >= 2 (and d == width)."""
    arr = np.asarray(features, np.float64)
    if arr.ndim != 2 or len(arr) < 2:
        raise ValueError(f"{name} must be [N, d] with N >= 2. Received shape={arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise ValueError(
            f"Both sets of features must have the same width. Received {width} and {arr.shape[1]}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _psd_sqrt(matrix):
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def _polynomial_mmd2_unbiased(a, b):
    """Unbiased MMD^2 of two equal-size sets with ``k(u, v) = (u.v / d + 1)^3``."""
    m, d = a.shape
    k_aa = (a @ a.T / d + 1.0) ** 3
    k_bb = (b @ b.T / d + 1.0) ** 3
    k_ab = (a @ b.T / d + 1.0) ** 3
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within - 2.0 * k_ab.mean())
