"""Per-sample MINE: the DV bound, the batched statistics network, known-MI data."""

import numpy as np
import pytest
import tensorflow as tf

from uae_tf import _seeds, mine


def test_donsker_varadhan_matches_direct_formula(rng):
    t_joint = rng.normal(size=(3, 50)).astype("float32")
    t_marginal = rng.normal(size=(3, 50)).astype("float32")
    expected = t_joint.mean(1) - np.log(np.exp(t_marginal).mean(1))
    np.testing.assert_allclose(mine.donsker_varadhan(t_joint, t_marginal), expected, rtol=1e-5)


def test_donsker_varadhan_is_stable_for_large_statistics():
    t_marginal = tf.constant([[1000.0, 1000.0]])
    value = mine.donsker_varadhan(tf.constant([[1000.0, 1000.0]]), t_marginal)
    np.testing.assert_allclose(value, [0.0], atol=1e-3)


def test_statistics_network_shapes_and_parameter_count():
    net = mine.StatisticsNetwork((28, 28, 1))
    # Two branches of Conv2D(16, 2x2) -> Dense(512) -> Dense(10), and Dense(1, no bias).
    per_branch = (4 * 16 + 16) + (27 * 27 * 16 * 512 + 512) + (512 * 10 + 10)
    assert net.num_parameters() == 2 * per_branch + 10
    assert mine.StatisticsNetwork((128,)).num_parameters() == 2 * (128 * 512 + 512 + 5130) + 10
    with pytest.raises(ValueError, match="view_shape"):
        mine.StatisticsNetwork((4, 4, 3))


def test_initialization_depends_on_the_sample_seed_only():
    net = mine.StatisticsNetwork((16,))
    batch = net.initialize(_seeds.sample_seeds(7, tf.constant([3, 5, 9])))
    single = net.initialize(_seeds.sample_seeds(7, tf.constant([5])))
    for name in batch:
        np.testing.assert_array_equal(batch[name][1], single[name][0])
    kernel = batch["x_dense1_kernel"].numpy()
    assert not np.allclose(kernel[0], kernel[1])
    limit = np.sqrt(6 / (16 + 512))
    assert np.abs(kernel).max() <= limit and kernel.std() > limit / 3
    assert np.all(batch["x_dense1_bias"].numpy() == 0)


def test_permutations_are_permutations_and_batch_independent():
    seeds = _seeds.sample_seeds(0, tf.constant([0, 1, 2]))
    perms = _seeds.permutations(seeds, 4, 10).numpy()
    for p in perms:
        assert sorted(p) == list(range(10))
    assert len({tuple(p) for p in perms}) == 3
    alone = _seeds.permutations(_seeds.sample_seeds(0, tf.constant([1])), 4, 10).numpy()
    np.testing.assert_array_equal(alone[0], perms[1])


def _gaussians(rng, rho, batch=2, k=500, d=1):
    x = rng.standard_normal((batch, k, d)).astype("float32")
    noise = rng.standard_normal((batch, k, d)).astype("float32")
    return x, (rho * x + np.sqrt(1 - rho**2) * noise).astype("float32")


@pytest.mark.slow
def test_mine_orders_known_correlations_and_nears_their_mutual_information(rng):
    # True MI of a bivariate Gaussian: -1/2 log(1 - rho^2) nats, 0, 0.144 and 0.511
    # for rho 0, 0.5 and 0.8. Two samples of each, K = 500 views, the published
    # network (one per sample, so one call), 1500 Adam steps at lr 2e-3; the estimate
    # is the mean of the last 100. Measured over 4 draws of the data and networks
    # (8 samples each): rho 0 gave 0.011-0.031; rho 0.5 0.111-0.206 (-23% to +43%:
    # too noisy for a tolerance of its own); rho 0.8 0.480-0.587 (-6% to +15%); each
    # draw's lowest rho 0.5 estimate above its highest rho 0 one by 0.095-0.127, its
    # lowest rho 0.8 one above its highest rho 0.5 one by 0.300-0.363. This draw:
    # 0.017, 0.018; 0.157, 0.139; 0.480, 0.495.
    rhos = np.array([0.0, 0.5, 0.8])
    x, y = zip(*(_gaussians(rng, rho) for rho in rhos))
    _, history = mine.estimate_mutual_information(np.concatenate(x), np.concatenate(y),
                                                  steps=1500, learning_rate=2e-3)
    assert history.shape == (1500, 6)
    estimate = history[-100:].mean(axis=0).reshape(3, 2)  # [rho, sample]
    true_mi = -0.5 * np.log(1 - rhos**2)
    assert np.all(np.abs(estimate[0]) < 0.06), estimate
    np.testing.assert_allclose(estimate[2], true_mi[2], rtol=0.25)
    # Ordered with margins: more correlation, more information.
    assert estimate[1].min() - estimate[0].max() > 0.05, estimate
    assert estimate[2].min() - estimate[1].max() > 0.15, estimate


def test_estimate_rejects_mismatched_views(rng):
    with pytest.raises(ValueError, match="same shape"):
        mine.estimate_mutual_information(np.zeros((2, 5, 3)), np.zeros((2, 6, 3)))


def _plain_output_major(x, kernel):
    return tf.matmul(x, kernel, transpose_b=True)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_matmul_output_major_value_and_gradients_are_those_of_matmul(rng, jit_compile):
    x = tf.constant(rng.normal(size=(3, 4, 37)), tf.float32)
    kernel = tf.constant(rng.normal(size=(3, 5, 37)), tf.float32)
    dy = tf.constant(rng.normal(size=(3, 4, 5)), tf.float32)

    def value_and_grads(matmul):
        @tf.function(jit_compile=jit_compile)
        def run(x, kernel):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = matmul(x, kernel)
                loss = tf.reduce_sum(y * dy)
            return (y, *tape.gradient(loss, [x, kernel]))

        return run(x, kernel)

    got_all = value_and_grads(mine.matmul_output_major)
    for got, want in zip(got_all, value_and_grads(_plain_output_major)):
        assert got.shape == want.shape
        scale = float(tf.reduce_max(tf.abs(want)))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5 * scale)


def test_matmul_output_major_of_an_empty_batch():
    x, kernel = tf.zeros([0, 4, 6]), tf.zeros([0, 3, 6])
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = mine.matmul_output_major(x, kernel)
    dx, dk = tape.gradient(y, [x, kernel])
    assert y.shape == (0, 4, 3) and dx.shape == x.shape and dk.shape == kernel.shape


def test_matmul_output_major_keeps_a_non_finite_input_to_its_own_sample(rng):
    x = rng.normal(size=(2, 4, 6)).astype("float32")
    x[0, 0, 0] = np.inf
    kernel = tf.constant(rng.normal(size=(2, 3, 6)), tf.float32)
    y = mine.matmul_output_major(tf.constant(x), kernel).numpy()
    assert not np.isfinite(y[0]).any()
    np.testing.assert_allclose(y[1], _plain_output_major(x[1:], kernel[1:])[0], rtol=1e-5)


def test_first_layer_kernels_are_output_major_with_keras_values():
    net = mine.StatisticsNetwork((16,), hidden_units=8)
    params = net.initialize(_seeds.sample_seeds(0, tf.constant([0, 1])))
    assert params["x_dense1_kernel"].shape == (2, 8, 16)
    assert params["x_dense2_kernel"].shape == (2, 8, 10)
    # Drawn as a Keras (inputs, outputs) kernel and transposed: the same values.
    index = sorted(net.shapes()).index("x_dense1_kernel")
    seed = _seeds.fold_in(_seeds.sample_seeds(0, tf.constant([1])), index)[0]
    limit = np.sqrt(6 / (16 + 8))
    keras_order = tf.random.stateless_uniform([16, 8], seed=seed, minval=-limit, maxval=limit)
    np.testing.assert_array_equal(params["x_dense1_kernel"][1], tf.transpose(keras_order))
