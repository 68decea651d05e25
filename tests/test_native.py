"""The fused CPU op of MINE training (uae_tf._native) against the TensorFlow steps."""

import numpy as np
import pytest
import tensorflow as tf

from uae_tf import MINESimilarity, MinMaxAttack, ReconstructionCriterion, _native, _seeds, mine


@pytest.fixture(scope="module")
def library():
    # The op is built with the machine's C++ compiler on first use; the tests need it
    # (a missing compiler fails here, with the compiler's message, not a skip).
    lib = _native.load()
    assert lib is not None, _native.unavailable_reason()
    return lib


def _setup(view_shape, batch, k, steps, seed=0):
    rng = np.random.default_rng(seed)
    network = mine.StatisticsNetwork(view_shape)
    seeds = _seeds.sample_seeds(seed, tf.range(batch))
    params = network.initialize(seeds)
    x_views = rng.random((batch, k, *view_shape), dtype=np.float32)
    y_views = (x_views + 0.1 * rng.standard_normal(x_views.shape)).astype(np.float32)
    permutations = tf.stack([_seeds.permutations(seeds, s, k) for s in range(steps)])
    return network, params, mine.adam_init(params), x_views, y_views, permutations


@tf.function(jit_compile=True)
def _tf_steps(network, params, adam, x_views, y_views, permutations, learning_rate):
    history = []
    for s in range(permutations.shape[0]):
        params, adam, mi = mine.train_step(
            network, params, adam, x_views, y_views, permutations[s], learning_rate)
        history.append(mi)
    return params, adam, tf.stack(history)


@pytest.mark.parametrize("view_shape, k", [((12, 10, 1), 6), ((40,), 9)], ids=["conv", "vector"])
def test_op_gradients_match_autodiff(library, view_shape, k):
    # After one step the first moment is (1 - beta_1) * gradient: every tensor's
    # gradient, checked against autodiff of mine.train_step.
    args = _setup(view_shape, batch=3, k=k, steps=1)
    params = args[1]
    expected = _tf_steps(*args, tf.constant(1e-3))
    got = _native.train_steps(*args, 1e-3)
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-5, atol=1e-6)
    for name in params:
        m_expected, m_got = expected[1]["m"][name].numpy(), got[1]["m"][name].numpy()
        scale = np.abs(m_expected).max()
        assert scale > 0, name
        np.testing.assert_allclose(m_got, m_expected, rtol=0, atol=1e-4 * scale, err_msg=name)
        # Adam's first step moves each weight by the step size times the gradient's
        # sign; where the gradient is clear of rounding the moves agree.
        clear = np.abs(m_expected) > 1e-3 * scale
        np.testing.assert_allclose(got[0][name].numpy()[clear], expected[0][name].numpy()[clear],
                                   rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("view_shape, k", [((12, 10, 1), 6), ((40,), 9)], ids=["conv", "vector"])
def test_op_training_matches_tensorflow_steps(library, view_shape, k):
    # Six steps: Adam turns rounding-level gradients into full-size steps, so two
    # correct implementations drift apart by about what XLA and TF's graph kernels
    # do on the same steps (up to 8e-5 on these MI values, measured); the bound is
    # 4x that.
    args = _setup(view_shape, batch=3, k=k, steps=6)
    expected = _tf_steps(*args, tf.constant(1e-3))
    got = _native.train_steps(*args, 1e-3)
    assert float(got[1]["step"]) == 6.0
    np.testing.assert_allclose(got[2], expected[2], rtol=0, atol=3e-4)
    assert np.abs(expected[2][-1] - expected[2][0]).max() > 1e-2  # the networks trained


def test_op_leaves_its_inputs_alone_and_handles_empty_batches(library):
    network, params, adam, x_views, y_views, permutations = _setup((6, 6, 1), 2, 4, 2)
    before = {name: value.numpy().copy() for name, value in params.items()}
    _native.train_steps(network, params, adam, x_views, y_views, permutations, 1e-3)
    for name, value in params.items():
        np.testing.assert_array_equal(value, before[name])
    empty = {name: value[:0] for name, value in params.items()}
    out = _native.train_steps(network, empty, mine.adam_init(empty), x_views[:0], y_views[:0],
                              permutations[:, :0], 1e-3)
    assert out[2].shape == (2, 0)


def test_op_rejects_bad_permutations_and_shapes(library):
    network, params, adam, x_views, y_views, permutations = _setup((6, 6, 1), 2, 4, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="view indices in"):
        _native.train_steps(network, params, adam, x_views, y_views, permutations + 4, 1e-3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one shape"):
        _native.train_steps(network, params, adam, x_views, y_views[:, :3], permutations, 1e-3)


def test_attack_with_native_kernel_matches_tensorflow_kernel(conv_ae, mnist5k):
    # The issue-15 check: the attack's MI history, c history and examples with the
    # fused op agree with the TensorFlow formulation to float tolerance.
    x = mnist5k[0][30:33]
    results, attacks = {}, {}
    for kernel in ("native", "tf"):
        similarity = MINESimilarity(mine_steps=3, kernel=kernel)
        attacks[kernel] = MinMaxAttack(ReconstructionCriterion(conv_ae), similarity, seed=5,
                                       batch_size=3, steps=4)
        results[kernel] = attacks[kernel](x)
    assert attacks["native"].similarity.uses_native_kernel
    assert attacks["native"].uses_xla is False
    assert not attacks["tf"].similarity.uses_native_kernel and attacks["tf"].uses_xla
    native, plain = results["native"], results["tf"]
    np.testing.assert_allclose(native.mi_history, plain.mi_history, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(native.c_history, plain.c_history, rtol=1e-4)
    np.testing.assert_allclose(native.x_adv, plain.x_adv, atol=1e-4)
    np.testing.assert_array_equal(native.success, plain.success)


def test_kernel_choice(conv_ae, dense_ae):
    with pytest.raises(ValueError, match="kernel must be one of"):
        MINESimilarity(kernel="cuda")
    # Auto: native for the conv view's streamed networks on a CPU, not for the
    # random view's cache-sized ones, and never under jit_compile=True.
    conv = MINESimilarity(view="conv")
    conv.build((28, 28, 1), ReconstructionCriterion(conv_ae), 0)
    assert conv.compiles_with_xla("auto") is False and conv.uses_native_kernel
    assert conv.compiles_with_xla(True) is True and not conv.uses_native_kernel
    small = MINESimilarity(view="random", num_projections=16)
    small.build((28, 28, 1), ReconstructionCriterion(dense_ae), 0)
    assert small.compiles_with_xla("auto") is True and not small.uses_native_kernel
    forced = MINESimilarity(view="conv", kernel="native")
    forced.build((28, 28, 1), ReconstructionCriterion(conv_ae), 0)
    with pytest.raises(ValueError, match="jit_compile=False"):
        forced.compiles_with_xla(True)
    assert MINESimilarity(kernel="tf").get_config()["kernel"] == "tf"


def test_build_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        _native.build(tmp_path / "lib.so")
    fake = tmp_path / "fake-cxx"
    fake.write_text("#!/bin/sh\necho 'broken toolchain' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    with pytest.raises(RuntimeError, match="broken toolchain"):
        _native.build(tmp_path / "lib.so")
    assert not list(tmp_path.glob("lib*.so"))  # no half-written library left behind


def test_op_rejects_parameters_of_another_network(library):
    network, params, adam, x_views, y_views, permutations = _setup((6, 6, 1), 2, 4, 2)
    wrong = {**params, "y_dense2_kernel": params["y_dense2_kernel"][:, :, :3]}
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have shape"):
        _native.train_steps(network, wrong, mine.adam_init(wrong), x_views, y_views,
                            permutations, 1e-3)


def test_auto_falls_back_to_tensorflow_when_the_op_cannot_build(conv_ae, tmp_path, monkeypatch):
    import warnings

    from uae_tf import similarity as similarity_module

    def fresh_process():
        monkeypatch.setattr(_native, "_state", {"library": None, "error": None, "tried": False})
        monkeypatch.setattr(similarity_module._warn_native_unavailable, "done", False,
                            raising=False)

    def built(**kwargs):
        similarity = MINESimilarity(view="conv", **kwargs)
        similarity.build((28, 28, 1), ReconstructionCriterion(conv_ae), 0)
        return similarity

    monkeypatch.setenv("UAE_TF_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "missing-compiler"))
    fresh_process()
    auto = built()
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        assert auto.compiles_with_xla("auto") is True
    assert auto.uses_native_kernel is False
    with pytest.raises(RuntimeError, match="kernel='native'.*no C\\+\\+ compiler"):
        built(kernel="native").compiles_with_xla(False)
    # Turned off on purpose: no warning.
    fresh_process()
    monkeypatch.setenv("UAE_TF_NATIVE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert built().compiles_with_xla("auto") is True
    assert "UAE_TF_NATIVE=0" in _native.unavailable_reason()
