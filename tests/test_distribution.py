"""Training on several devices: uae_tf.distribution, and UAESequence under MirroredStrategy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from uae_tf import distribution, training
from uae_tf.augmentation import UAESequence
from uae_tf.cli import main

ROOT = Path(__file__).resolve().parents[1]

# The loss histories of one device and two may differ by the order of float sums
# only (the replicas' gradients are summed; one device sums the whole batch), about
# float32's epsilon (1.2e-7) a step; measured: 8.7e-8 at most on two logical CPUs.
# 1e-4 leaves that room to grow over the epochs and on other devices' reductions,
# and still catches the faults met while writing this: the first epoch taking the
# second epoch's shuffle (2e-2), inputs and targets sharing memory (4e-3).
RTOL = 1e-4


def test_two_logical_cpus_follow_the_one_device_loss_history(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "_mirrored_fit.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    for name, epochs in (("original", 2), ("retrain", 4)):
        one, two = runs[name]["1"], runs[name]["2"]
        assert (one["replicas"], one["devices"], one["config_devices"]) == (1, None, 1)
        assert (two["replicas"], two["devices"], two["config_devices"]) == (
            2, ["CPU:0", "CPU:1"], 2)
        assert len(one["loss"]) == epochs and one["loss"][-1] < one["loss"][0]
        np.testing.assert_allclose(two["loss"], one["loss"], rtol=RTOL, err_msg=name)
        assert two["test_reconstruction_error"] == pytest.approx(
            one["test_reconstruction_error"], rel=RTOL)


def test_more_devices_than_visible_is_an_error_naming_the_value():
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    too_many = len(tf.config.list_logical_devices(kind)) + 1
    with pytest.raises(ValueError, match=f"devices={too_many} asks for {too_many} devices"):
        distribution.get_strategy(too_many)
    with pytest.raises(ValueError, match=f"devices={too_many} asks"):
        training.train_autoencoder("dense", "digits", epochs=1, devices=too_many, verbose=0)
    unseen = f"GPU:{len(tf.config.list_logical_devices('GPU'))}"
    with pytest.raises(ValueError, match=f"names {unseen}, which TensorFlow does not see"):
        distribution.get_strategy(f"CPU:0,{unseen}")


@pytest.mark.parametrize(
    "devices, match",
    [(0, "devices=0"), (True, "devices=True"), ("GPU:x", "'GPU:x' is not a device name"),
     ("gpu:0,GPU:0", "names a device twice"), ([], r"devices=\[\]")],
)
def test_malformed_devices_are_refused(devices, match):
    with pytest.raises(ValueError, match=match):
        distribution.normalize(devices)


def test_one_device_is_the_default_strategy_and_the_record_says_so():
    assert distribution.normalize(" 2") == 2
    assert distribution.normalize(["/gpu:0", "cpu:1"]) == ("GPU:0", "CPU:1")
    for devices in (1, "1"):
        strategy = distribution.get_strategy(devices)
        assert strategy is tf.distribute.get_strategy()
        assert distribution.describe(strategy) == {"replicas": 1, "devices": None}
    named = distribution.get_strategy("CPU:0")
    assert distribution.describe(named) == {"replicas": 1, "devices": ["CPU:0"]}


def test_cli_devices_is_checked_and_for_autoencoders_only(tmp_path, capsys):
    out = str(tmp_path / "model")
    assert main(["train", "--arch", "dense", "--dataset", "digits", "--devices", "0",
                 "--out", out]) == 2
    assert "--devices: expected a number of devices >= 1" in capsys.readouterr().err
    assert main(["train", "--arch", "classifier", "--dataset", "digits", "--devices", "2",
                 "--out", out]) == 2
    assert "--devices applies to the autoencoders" in capsys.readouterr().err
    assert main(["train", "--arch", "conv", "--dataset", "digits", "--devices", "99",
                 "--out", out]) == 1
    assert "devices=99 asks for 99 devices" in capsys.readouterr().err


def _keras_reads(sequence, distributed, epochs=2):
    """Calls ``sequence`` as Keras' ``fit`` does; returns each training epoch's inputs.

    Keras peeks at two batches for their shapes; on one device it then ends that
    peek with ``on_epoch_end``, under a tf.distribute strategy it reads on in an
    epoch of its own to build the model (here: every batch, as prefetching may).
    """
    for index in range(2):
        sequence[index]
    if distributed:
        sequence.on_epoch_begin()
        for index in range(len(sequence)):
            sequence[index]
    sequence.on_epoch_end()
    served = []
    for _ in range(epochs):
        sequence.on_epoch_begin()
        batches = [sequence[index] for index in range(len(sequence))]
        sequence.on_epoch_end()
        assert not any(np.shares_memory(inputs, targets) for inputs, targets in batches)
        served.append(np.concatenate([inputs for inputs, _ in batches]))
    return served


def test_sequence_trains_on_the_same_epochs_when_keras_reads_ahead_to_build():
    x = np.random.default_rng(0).uniform(size=(20, 3)).astype("float32")
    one = UAESequence(x, np.clip(x + 0.1, 0, 1), batch_size=4, seed=0)
    several = UAESequence(x, np.clip(x + 0.1, 0, 1), batch_size=4, seed=0)
    for a, b in zip(_keras_reads(one, False), _keras_reads(several, True), strict=True):
        np.testing.assert_array_equal(a, b)
    assert one.epoch == several.epoch == 2
    assert one.batches_built == several.batches_built == 2 * len(one)  # once per epoch
