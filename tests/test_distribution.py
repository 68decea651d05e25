"""Training on several devices: uae_tf.distribution."""

import pytest
import tensorflow as tf

from uae_tf import distribution



def test_more_devices_than_visible_is_an_error_naming_the_value():
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    too_many = len(tf.config.list_logical_devices(kind)) + 1
    with pytest.raises(ValueError, match=f"devices={too_many} asks for {too_many} devices"):
        distribution.get_strategy(too_many)
    with pytest.raises(ValueError, match="names GPU:7, which TensorFlow does not see"):
        distribution.get_strategy("CPU:0,GPU:7")


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
