"""Tests of ``uae_tf.metrics``: the Fréchet and kernel distances against closed forms,
and the feature extractors (offline; no InceptionV3 weights needed)."""

import keras
import numpy as np
import pytest
import scipy.linalg

from uae_tf import metrics


def _random_covariance(rng, d, rank=None):
    factor = rng.normal(size=(d, rank or d))
    return factor @ factor.T / d


def _frechet_with_scipy(mu_a, sigma_a, mu_b, sigma_b):
    """The TTUR / pytorch-fid formula, with scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b)
                 - 2.0 * np.trace(root).real)


# Fréchet distance.


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = metrics.frechet_distance_from_statistics(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_on_non_commuting_covariances(rng):
    for d in (2, 5, 20):
        mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
        sigma_a, sigma_b = _random_covariance(rng, d), _random_covariance(rng, d)
        assert not np.allclose(sigma_a @ sigma_b, sigma_b @ sigma_a)
        expected = _frechet_with_scipy(mu_a, sigma_a, mu_b, sigma_b)
        got = metrics.frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)
        assert got == pytest.approx(expected, rel=1e-8, abs=1e-10)
        # The 2-Wasserstein distance is symmetric.
        assert got == pytest.approx(
            metrics.frechet_distance_from_statistics(mu_b, sigma_b, mu_a, sigma_a), rel=1e-9
        )


def test_frechet_distance_is_exact_for_singular_covariances(rng):
    # Fewer samples than features (the small-N case of the experiments): rank-3
    # covariances in 10 dimensions. Same covariance, shifted mean: exactly |shift|^2.
    sigma = _random_covariance(rng, 10, rank=3)
    shift = rng.normal(size=10)
    got = metrics.frechet_distance_from_statistics(np.zeros(10), sigma, shift, sigma)
    # The square roots of the zero eigenvalues' round-off (~1e-16) leave ~1e-8.
    assert got == pytest.approx(float(shift @ shift), rel=1e-6)
    other = _random_covariance(rng, 10, rank=4)
    got = metrics.frechet_distance_from_statistics(np.zeros(10), sigma, shift, other)
    assert np.isfinite(got) and got >= 0
    assert got == pytest.approx(_frechet_with_scipy(np.zeros(10), sigma, shift, other), rel=1e-6)


def test_frechet_distance_of_samples_converges_to_the_gaussians(rng):
    d = 4
    mu_a, mu_b = np.zeros(d), np.full(d, 0.5)
    sigma_a, sigma_b = _random_covariance(rng, d) + np.eye(d), np.eye(d)
    a = rng.multivariate_normal(mu_a, sigma_a, size=20000)
    b = rng.multivariate_normal(mu_b, sigma_b, size=20000)
    expected = metrics.frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.05)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rejects_bad_features():
    with pytest.raises(ValueError, match="same width"):
        metrics.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


# Kernel distance (KID).


def test_kid_of_two_point_masses_is_the_kernel_closed_form():
    # All rows equal: MMD^2 = k(u, u) + k(v, v) - 2 k(u, v), k = (u.v / d + 1)^3.
    u, v = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    a, b = np.tile(u, (5, 1)), np.tile(v, (7, 1))
    k = lambda p, q: (p @ q / 2 + 1) ** 3  # noqa: E731
    kid, std = metrics.kernel_inception_distance(a, b, subsets=3)
    assert kid == pytest.approx(k(u, u) + k(v, v) - 2 * k(u, v), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_the_unbiased_mmd_of_bińkowski_et_al(rng):
    a, b = rng.normal(size=(30, 6)), rng.normal(0.3, size=(30, 6))
    # One subset of all rows: the statistic itself, written out term by term.
    d, m = 6, 30
    expected = (
        sum((a[i] @ a[j] / d + 1) ** 3 + (b[i] @ b[j] / d + 1) ** 3
            for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        - 2 * sum((a[i] @ b[j] / d + 1) ** 3 for i in range(m) for j in range(m)) / m**2
    )
    kid, _ = metrics.kernel_inception_distance(a, b, subsets=1, subset_size=m)
    assert kid == pytest.approx(expected, rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two(rng):
    a, same = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    other = rng.normal(0.5, size=(600, 8))
    kid_same, _ = metrics.kernel_inception_distance(a, same, subsets=20, subset_size=300)
    kid_other, _ = metrics.kernel_inception_distance(a, other, subsets=20, subset_size=300)
    assert abs(kid_same) < 0.02 < kid_other
    # Identical sets (every row in the subset): only the diagonal the unbiased estimate
    # leaves out differs, 2 (mean off-diagonal k - mean diagonal k) / m, which is O(1/m).
    kid_identical, _ = metrics.kernel_inception_distance(a, a, subsets=2, subset_size=600)
    k = (a @ a.T / 8 + 1) ** 3
    off_diagonal = (k.sum() - np.trace(k)) / (600 * 599)
    assert kid_identical == pytest.approx(2 * (off_diagonal - np.mean(np.diag(k))) / 600, rel=1e-9)
    assert abs(kid_identical) < 0.05
    # Seeded: the same subsets every call.
    assert metrics.kernel_inception_distance(a, other, subsets=3, subset_size=50, seed=4) == \
        metrics.kernel_inception_distance(a, other, subsets=3, subset_size=50, seed=4)


# Feature extractors.


def _small_model():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(5, activation="relu", name="hidden")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


def test_layer_extractor_is_the_penultimate_layer_and_loads_from_a_file(tmp_path, rng):
    model = _small_model()
    x = rng.uniform(size=(7, 8, 8, 1)).astype("float32")
    extractor = metrics.layer_extractor(model)
    features = metrics.extract_features(extractor, x, batch_size=3)
    hidden = keras.Model(model.inputs, model.get_layer("hidden").output)
    assert features.shape == (7, 5) and features.dtype == np.float64
    np.testing.assert_allclose(features, hidden.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert metrics.extract_features(metrics.layer_extractor(model, "logits"), x).shape == (7, 3)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        metrics.layer_extractor(model, "nope")
    extractor.save(tmp_path / "extractor.keras")
    loaded = metrics.load_extractor(tmp_path / "extractor.keras")
    np.testing.assert_allclose(metrics.extract_features(loaded, x), features, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        metrics.load_extractor(tmp_path / "missing.keras")
    # Any callable is an extractor.
    assert metrics.extract_features(lambda b: b[:, :2, 0, 0], x).shape == (7, 2)


def test_inception_weights_offline_and_not_cached_give_a_clear_error(tmp_path, monkeypatch):
    def unreachable(url):
        raise OSError("cannot connect to storage.googleapis.com:443: no network")

    monkeypatch.setattr(metrics, "_check_reachable", unreachable)
    with pytest.raises(metrics.WeightsUnavailableError) as caught:
        metrics.inception_v3_extractor((28, 28, 1), cache_dir=tmp_path)
    message = str(caught.value)
    expected = tmp_path / "models" / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert str(expected) in message and "no network" in message
    assert "keras.utils.get_file" in message and metrics.INCEPTION_WEIGHTS_URL in message
    assert isinstance(caught.value, OSError)  # the CLI's one-line error for failures


def test_inception_extractor_resizes_tiles_and_gives_2048_features(rng):
    extractor = metrics.inception_v3_extractor((28, 28, 1), weights=None)
    assert extractor.input_shape == (None, 28, 28, 1)
    x = rng.uniform(size=(2, 28, 28, 1)).astype("float32")
    assert metrics.extract_features(extractor, x).shape == (2, metrics.INCEPTION_FEATURES)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        metrics.inception_v3_extractor((28, 28, 2), weights=None)
