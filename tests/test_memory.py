"""An attack's device memory: the estimate against the tensors the loop is given, the
default batch on a GPU, and the halving of a batch that runs out of memory.

The estimate against XLA's buffer assignment of the compiled loop is a benchmark
(``bench/bench_memory.py --validate``): it compiles, which takes minutes here.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from uae_tf.attacks import MinMaxAttack, PenaltyAttack, estimate_attack_memory, memory
from uae_tf.attacks.base import AttackResult
from uae_tf.criteria import ReconstructionCriterion

SHAPE = (8, 8, 1)
VIEWS = {
    "conv": {"name": "mine", "view": "conv", "mine_steps": 2},
    "random": {"name": "mine", "view": "random", "mine_steps": 2, "num_projections": 8,
               "projection_dim": 16},
}


def _tiny_autoencoder():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(SHAPE),
        keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid"),
    ])


@pytest.mark.parametrize("view", ["conv", "random"])
@pytest.mark.parametrize("attack_class", [MinMaxAttack, PenaltyAttack])
def test_estimate_counts_the_tensors_the_loop_is_given(view, attack_class):
    model = _tiny_autoencoder()
    attack = attack_class(ReconstructionCriterion(model), similarity=VIEWS[view], steps=3)
    estimate = estimate_attack_memory(attack)
    x = np.random.default_rng(0).uniform(size=(3, *SHAPE)).astype(np.float32)
    prepared = attack._step.start(tf.constant(x), None, tf.constant([[0, i] for i in range(3)]),
                                  attack.steps)
    per_sample = sum(t.numpy().nbytes // 3 for t in tf.nest.flatten(prepared) if t.shape.rank)
    assert sum(estimate.inputs.values()) == per_sample + x[0].nbytes
    params = prepared[2]["params"]
    assert estimate.inputs["statistics networks"] == sum(v[0].numpy().nbytes
                                                         for v in params.values())
    assert estimate.carried["statistics networks and Adam moments"] == \
        3 * estimate.inputs["statistics networks"]
    assert estimate.fixed["model weights"] == 4 * model.count_params()
    # Both convolutions' outputs kept for the backward pass, two gradients of the larger.
    assert estimate.delta_step["criterion"] == 4 * (64 * 3 + 64 * 1 + 2 * 64 * 3)
    if view == "random":
        assert estimate.fixed["random projections"] == 4 * 64 * 8 * 16
    paper_updates = 3 * 2 * getattr(attack, "search_steps", 1)
    assert estimate.traffic > paper_updates * 11 * estimate.inputs["statistics networks"]


def _estimate(per_sample=10**6):
    return memory.MemoryEstimate(inputs={"all": per_sample}, carried={}, mine_step={},
                                 delta_step={}, fixed={"weights": 5 * 10**6}, traffic=0,
                                 safety_factor=1.0)


def test_largest_batch_and_bandwidth_floor():
    estimate = _estimate()
    assert estimate.bytes_per_sample == 10**6 and estimate.fixed_bytes == 5 * 10**6
    assert estimate.largest_batch(16 * 10**6) == 11
    assert estimate.largest_batch(10**6) == 0
    assert memory.MemoryEstimate({}, {}, {}, {}, {}, traffic=2 * 10**9).seconds_per_sample(
        10**9) == 2.0


def _pretend_gpus(monkeypatch, gpus):
    """Makes ``tf.config.list_physical_devices("GPU")`` list ``gpus`` for the test."""
    monkeypatch.setattr(memory.tf.config, "list_physical_devices",
                        lambda kind=None: list(gpus) if kind == "GPU" else [])


@pytest.fixture
def fake_gpu(monkeypatch):
    """One GPU whose memory nothing reports (the tests set it)."""
    _pretend_gpus(monkeypatch, ["GPU:0"])
    monkeypatch.delenv(memory.GPU_MEMORY_ENV, raising=False)
    monkeypatch.setattr(memory, "_query_nvidia_smi", lambda: None)
    return monkeypatch


@pytest.fixture
def no_gpu(monkeypatch):
    """A CPU-only machine, whatever this one has: the CPU defaults are under test."""
    _pretend_gpus(monkeypatch, [])
    return monkeypatch


def _with_networks(per_sample):
    """An estimate whose statistics networks and Adam moments take ``per_sample`` bytes."""
    return memory.MemoryEstimate(
        inputs={"statistics networks": per_sample // 3, "Adam moments": 2 * per_sample // 3},
        carried={}, mine_step={}, delta_step={}, fixed={}, traffic=0)


def test_default_batch_on_a_cpu_batches_cached_networks_only(no_gpu):
    assert memory.default_batch_size(None) == 1
    assert memory.default_batch_size(_estimate()) == 1  # no statistics networks
    assert memory.default_batch_size(_with_networks(146 * 2**20)) == 1  # the conv view's
    cached = memory.CPU_CACHED_BATCH_SIZE
    assert memory.default_batch_size(lambda: _with_networks(2 * 2**20)) == cached
    # The real attacks: the tiny conv view's networks are cache-sized as well; MNIST's not.
    model = _tiny_autoencoder()
    attack = MinMaxAttack(ReconstructionCriterion(model), similarity=VIEWS["random"], steps=3)
    assert attack.resolve_batch_size(SHAPE) == cached
    mnist_conv = keras.Sequential([keras.Input((28, 28, 1)),
                                   keras.layers.Conv2D(16, 3, padding="same"),
                                   keras.layers.Conv2D(1, 3, padding="same")])
    attack = MinMaxAttack(ReconstructionCriterion(mnist_conv), similarity="mine")
    assert attack.resolve_batch_size((28, 28, 1)) == 1


def test_default_batch_on_a_gpu_fills_its_free_memory(fake_gpu):
    assert memory.default_batch_size(_estimate()) == 32  # nothing says the memory
    fake_gpu.setattr(memory, "_query_nvidia_smi", lambda: (16 * 2**30, 2**30))
    assert memory.gpu_memory_budget() == int(0.9 * 15 * 2**30)
    assert memory.default_batch_size(_estimate()) == 512  # clamped
    assert memory.default_batch_size(_estimate(10**8)) == int(0.9 * 15 * 2**30) // 10**8
    assert memory.default_batch_size(lambda: _estimate(10**8)) == 144
    fake_gpu.setattr(memory, "_tensorflow_gpu_memory", lambda: (2**30, 2**30))
    # Once TensorFlow holds the device, its total is what the attack may take.
    assert memory.gpu_memory_budget() == int(0.9 * 16 * 2**30) - 2**30
    fake_gpu.setenv(memory.GPU_MEMORY_ENV, "4GiB")
    assert memory.gpu_memory_budget() == 3 * 2**30
    assert memory.default_batch_size(_estimate(10**10)) == 1  # at least one


def test_an_attack_left_to_choose_takes_the_default_for_its_samples(fake_gpu):
    criterion = ReconstructionCriterion(_tiny_autoencoder())
    assert MinMaxAttack(criterion, batch_size=3).resolve_batch_size(SHAPE) == 3
    attack = MinMaxAttack(criterion, similarity=VIEWS["conv"])
    assert attack.batch_size is None
    fake_gpu.setenv(memory.GPU_MEMORY_ENV, "1GB")
    per_sample = estimate_attack_memory(attack).bytes_per_sample
    assert attack.resolve_batch_size(SHAPE) == 10**9 // per_sample == attack.batch_size
    _pretend_gpus(fake_gpu, [])
    cpu = MinMaxAttack(criterion, similarity=VIEWS["conv"])
    assert cpu.resolve_batch_size(SHAPE) == memory.CPU_CACHED_BATCH_SIZE  # 8x8: cache-sized


def test_parse_bytes():
    assert memory.parse_bytes("40GB") == 40 * 10**9
    assert memory.parse_bytes("16GiB") == 16 * 2**30
    assert memory.parse_bytes("512M") == 512 * 10**6
    assert memory.parse_bytes("4e10") == 4 * 10**10
    with pytest.raises(ValueError, match=r"UAE_GPU_MEMORY must be bytes.*'lots'"):
        memory.parse_bytes("lots")


def test_out_of_memory_errors_are_recognized():
    assert memory.is_out_of_memory(tf.errors.ResourceExhaustedError(
        None, None, "Out of memory while trying to allocate 68852648264 bytes."))
    assert memory.is_out_of_memory(tf.errors.InternalError(
        None, None, "Failed copying input tensor: Dst tensor is not initialized."))
    assert not memory.is_out_of_memory(tf.errors.InternalError(None, None, "CUDA error 700"))
    assert not memory.is_out_of_memory(tf.errors.InvalidArgumentError(None, None, "shapes"))
    assert not memory.is_out_of_memory(MemoryError())


def _attack_running_out_above(limit, calls, error=tf.errors.ResourceExhaustedError):
    """A MinMax attack whose batches of more than ``limit`` samples raise ``error``."""
    attack = MinMaxAttack(ReconstructionCriterion(_tiny_autoencoder()), batch_size=4)

    def run_batch(x, labels, indices):
        calls.append(len(x))
        if len(x) > limit:
            raise error(None, None, "OOM when allocating tensor with shape[4,512]")
        return AttackResult(x_adv=x, success=indices % 2 == 0, mi=indices.astype(np.float32),
                            f=-indices.astype(np.float32), mi_history=x[:, :2, 0, 0],
                            c_history=x[:, :2, 0, 0])

    attack._run_batch = run_batch
    return attack


def test_a_batch_out_of_memory_is_halved_and_retried():
    calls = []
    attack = _attack_running_out_above(2, calls)
    x = np.random.default_rng(0).uniform(size=(7, *SHAPE)).astype(np.float32)
    with pytest.warns(UserWarning, match="out of device memory on a batch of 4 samples; "
                                         "retrying them.*in batches of 2"):
        result = attack(x, indices=np.arange(10, 17))
    assert calls == [4, 2, 2, 2, 1]  # the next call's slice starts at the smaller size
    assert attack.batch_size == 2
    np.testing.assert_array_equal(result.x_adv, x)
    np.testing.assert_array_equal(result.mi, np.arange(10, 17))


def test_one_sample_out_of_memory_is_raised_and_other_errors_pass():
    attack = _attack_running_out_above(0, [])
    x = np.full((2, *SHAPE), 0.5, np.float32)
    with pytest.warns(UserWarning, match="batch of 2 samples"), \
            pytest.raises(tf.errors.ResourceExhaustedError, match="on a batch of one sample"):
        attack(x)
    calls = []
    attack = _attack_running_out_above(0, calls, error=tf.errors.InvalidArgumentError)
    with pytest.raises(tf.errors.InvalidArgumentError):
        attack(x)
    assert calls == [2]
