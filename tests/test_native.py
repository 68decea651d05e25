"""The fused CPU op of MINE training (uae_tf._native): its build, its checks, its results.

On every machine with a C++ compiler (every CI machine) the op must build and be
used for the conv view: a build regression is red here, with the compiler's
error in the failure message. The fallback to TensorFlow ops is tested by forcing
a build failure, never by the machine's CPU.
"""

import os
import platform
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

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


@pytest.fixture(scope="module")
def library_file(library):
    """The path of the library this machine built."""
    return Path(_native.build_info()["path"])


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


def _call(library, network, params, x_views, permutations, step=0.0, learning_rate=1e-3):
    names = _native.parameter_order(network)
    tensors = [params[n] for n in names]
    return library.uae_mine_train(tensors, tensors, tensors, x_views, x_views, permutations,
                                  step, learning_rate)


def test_op_rejects_non_scalar_step_and_rate(library):
    # These aborted the process (a hard CHECK in scalar<float>()).
    network, params, _, x_views, _, permutations = _setup((6, 6, 1), 2, 4, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="step must be a scalar.*\\[2\\]"):
        _call(library, network, params, x_views, permutations, step=[0.0, 1.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="learning_rate must be a scalar"):
        _call(library, network, params, x_views, permutations, learning_rate=[[1e-3]])


@pytest.mark.parametrize("height, width", [(0, 0), (1, 5), (5, 1)])
def test_op_rejects_feature_maps_smaller_than_2x2(library, height, width):
    # (0 - 1) (0 - 1) F = F passed the size check and read unwritten scratch.
    network, params, _, _, _, permutations = _setup((6, 6, 1), 2, 4, 2)
    filters = params["x_conv_bias"].shape[1]
    hidden = params["x_dense1_kernel"].shape[1]
    inputs = max(height - 1, 0) * max(width - 1, 0) * filters
    if (height, width) == (0, 0):
        inputs = filters
    resized = {name: value for name, value in params.items()}
    for branch in ("x", "y"):
        resized[f"{branch}_dense1_kernel"] = tf.zeros((2, hidden, inputs))
    views = tf.zeros((2, 4, height, width, 1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="h, w >= 2"):
        _call(library, network, resized, views, permutations)


def test_op_rejects_shapes_whose_size_overflows(library):
    # A [1, 2^62, 0] first-layer kernel exists (no elements), and the [1, 2^62, 4]
    # second layer it implies does not fit an int64: an error, not an abort.
    network = mine.StatisticsNetwork((4,))  # for the parameter names only
    huge = 2**62
    shapes = {"x_dense1_kernel": (1, huge, 0), "x_dense1_bias": (1, 1),
              "x_dense2_kernel": (1, 1, 4), "x_dense2_bias": (1, 4),
              "output_kernel": (1, 4)}
    params = {name: tf.zeros(shapes.get(name, shapes.get("x" + name[1:], ())))
              for name in _native.parameter_order(network)}
    views = tf.zeros((1, 2, 0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 2\\^63 - 1 elements"):
        _call(library, network, params, views, tf.zeros((1, 1, 2), tf.int32))


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


def test_kernel_choice(library, conv_ae, dense_ae):
    with pytest.raises(ValueError, match="kernel must be one of"):
        MINESimilarity(kernel="cuda")
    # Auto: native for the conv view's streamed networks on a CPU, not for the
    # random view's cache-sized ones, and never under jit_compile=True.
    conv = MINESimilarity(view="conv")
    conv.build((28, 28, 1), ReconstructionCriterion(conv_ae), 0)
    on_cpu = not tf.config.list_logical_devices("GPU")
    assert conv.compiles_with_xla("auto") is (not on_cpu) and conv.uses_native_kernel is on_cpu
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
    monkeypatch.setenv("CXX", "false")  # runs, and fails whatever it is given
    with pytest.raises(RuntimeError, match="false failed to build mine_kernels.cc \\(exit 1\\)"):
        _native.build(tmp_path / "lib.so")
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path, fail=True))
    with pytest.raises(RuntimeError) as raised:
        _native.build(tmp_path / "lib.so")
    message = str(raised.value)
    # The compiler's error lines come first, before the tail of its output.
    assert message.index("error: broken toolchain") < message.index("the compiler's output")
    assert not list(tmp_path.glob("lib*"))  # no half-written library left behind


def _fake_compiler(tmp_path, fail=False, library=None, sleep=0):
    """A shell script posing as $CXX: logs each call; compiles to empty objects and
    "links" by copying ``library``, or fails every compile with error lines."""
    script = tmp_path / ("bad-cxx" if fail else "fake-cxx")
    log = tmp_path / "cxx.log"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$1" in
          --version) echo "fake-c++ 1.0"; exit 0;;
          -dumpmachine) echo fake-linux; exit 0;;
        esac
        echo "$@" >> {log}
        {"echo 'x.cc:1:1: error: broken toolchain' >&2; echo 'noise' >&2; exit 3" if fail else ""}
        sleep {sleep}
        out=""; prev=""
        for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
        case " $* " in
          *" -shared "*) cp {library} "$out";;
          *) : > "$out";;
        esac
        """))
    script.chmod(0o755)
    return str(script)


def _compiles(tmp_path):
    """How many times the fake compiler ran the link step."""
    log = tmp_path / "cxx.log"
    return sum(" -shared " in f" {line} " for line in log.read_text().splitlines()) \
        if log.exists() else 0


@pytest.fixture()
def fresh_process(monkeypatch):
    """Forgets what this process knows of the op, as a new process would."""
    from uae_tf import similarity as similarity_module

    def reset():
        monkeypatch.setattr(_native, "_state",
                            {"library": None, "error": None, "tried": False, "info": None})
        monkeypatch.setattr(similarity_module._warn_native_unavailable, "done", False,
                            raising=False)

    reset()
    return reset


def test_library_is_readable_and_keyed_by_what_built_it(library):
    info = _native.build_info()
    path = Path(info["path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path == _native.library_path()
    assert info["portable"] is False, info["tuned_error"]
    assert info["isa_flags"] == list(_native.isa_flags())


def test_arithmetic_is_compiled_apart_from_tensorflow():
    # The arithmetic's translation unit includes only standard headers and its
    # own, so the machine's ISA flags never reach TensorFlow's Eigen (which does
    # not compile under AVX512-FP16); the glue gets no ISA flag.
    for source in (_native.KERNELS_SOURCE, _native.HEADER):
        includes = re.findall(r'^#include [<"]([^>"]+)[>"]', source.read_text(), re.M)
        assert includes and all("/" not in name and not name.startswith(("Eigen", "tensorflow"))
                                for name in includes), includes
    kernels, glue, link = _native.commands("W", "out.so")
    assert set(_native.isa_flags()) <= set(kernels)
    assert not any(flag.startswith("-I") for flag in kernels)
    assert not any(flag.startswith(("-march", "-mcpu", "-mavx", "-mprefer", "-mtune"))
                   for flag in glue + link)
    assert _native.isa_flags("x86_64") == ("-march=native", "-mprefer-vector-width=512")
    assert _native.isa_flags("aarch64") == ("-mcpu=native",)
    assert _native.isa_flags("riscv64") == ()  # no flag of another architecture


#: A target per architecture whose ISA extensions broke the single-unit build:
#: AVX512-FP16 and AMX (Sapphire Rapids) on x86-64, FP16 and SVE on aarch64.
HARD_TARGETS = {"x86_64": ("-march=sapphirerapids",),
                "aarch64": ("-march=armv8.2-a+fp16+sve",)}


def test_arithmetic_compiles_for_the_newest_vector_extensions(tmp_path):
    target = HARD_TARGETS.get(platform.machine(), ())
    kernels = _native.commands(tmp_path, tmp_path / "unused.so", isa=target)[0]
    done = subprocess.run(kernels, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "mine_kernels.o").stat().st_size > 0


def test_tuned_build_that_fails_is_retried_with_portable_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(_native, "isa_flags", lambda machine=None: ("-march=no-such-cpu",))
    info = _native.build(tmp_path / "lib.so")
    assert info["portable"] is True and info["isa_flags"] == []
    assert "no-such-cpu" in info["tuned_error"] and "error" in info["tuned_error"]
    assert stat.S_IMODE((tmp_path / "lib.so").stat().st_mode) == 0o644


def test_failed_build_is_remembered_on_disk(tmp_path, monkeypatch, fresh_process):
    monkeypatch.setenv("UAE_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path, fail=True))
    assert _native.load() is None
    assert "error: broken toolchain" in _native.unavailable_reason()
    calls = (tmp_path / "cxx.log").read_text().count("\n")
    assert calls == (2 if _native.isa_flags() else 1)  # the tuned kernels, then portable
    failed = list((tmp_path / "cache" / "native").glob("*.failed"))
    assert len(failed) == 1 and stat.S_IMODE(failed[0].stat().st_mode) == 0o644
    fresh_process()  # a new process does not compile again
    assert _native.load() is None
    assert "remembered from an earlier build" in _native.unavailable_reason()
    assert (tmp_path / "cxx.log").read_text().count("\n") == calls
    failed[0].unlink()  # deleting the record tries again
    fresh_process()
    assert _native.load() is None
    assert (tmp_path / "cxx.log").read_text().count("\n") > calls


def _load_in_processes(tmp_path, compiler, count=1):
    """Runs ``count`` new processes at once that load the op with ``compiler`` as $CXX
    and the cache in ``tmp_path`` (a second copy of the op cannot load in this one)."""
    env = {**os.environ, "UAE_TF_CACHE": str(tmp_path / "cache"), "CXX": compiler}
    code = ("from uae_tf import _native; lib = _native.load(); "
            "assert lib is not None, _native.unavailable_reason(); print('loaded')")
    processes = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(count)]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and "loaded" in out, err[-4000:]


def test_library_that_does_not_load_is_rebuilt_once(library_file, tmp_path, monkeypatch):
    compiler = _fake_compiler(tmp_path, library=library_file)
    monkeypatch.setenv("UAE_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", compiler)
    path = _native.library_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a library")
    path.chmod(0o644)
    _load_in_processes(tmp_path, compiler)
    assert _compiles(tmp_path) == 1
    assert path.read_bytes() == library_file.read_bytes()


def test_concurrent_processes_compile_once(library_file, tmp_path):
    # Two processes start at once on an empty cache: the lock lets one compile
    # (the fake compiler takes 3 s a step) and the other load its library.
    _load_in_processes(tmp_path, _fake_compiler(tmp_path, library=library_file, sleep=3), 2)
    assert _compiles(tmp_path) == 1


def test_cache_of_another_user_is_refused(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)  # nobody
    else:
        theirs = Path("/")  # root's, and this process is not root
    with pytest.raises(RuntimeError, match="belongs to another user"):
        _native._make_private_dir(theirs)
    mine_dir = tmp_path / "mine"
    mine_dir.mkdir()
    mine_dir.chmod(0o777)  # an old umask: made private, not refused
    _native._make_private_dir(mine_dir)
    assert stat.S_IMODE(mine_dir.stat().st_mode) == 0o755
    planted = mine_dir / "lib.so"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    with pytest.raises(RuntimeError, match="writable by others"):
        _native._check_owned(planted)


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
        monkeypatch.setattr(_native, "_state",
                            {"library": None, "error": None, "tried": False, "info": None})
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert built().compiles_with_xla("auto") is True
    assert not [w for w in caught if "fused MINE kernel" in str(w.message)]
    assert "UAE_TF_NATIVE=0" in _native.unavailable_reason()
