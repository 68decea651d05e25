"""Trains the same runs on one device and on two logical CPU devices; prints their records.

A script, not a test module: TensorFlow's logical devices must be configured before
it initializes its devices, so tests/test_distribution.py runs this in a fresh
process. The runs: the dense autoencoder on the first 64 mnist5k digits, batch 16,

* ``original``: trained from the originals (tf.data batches), 2 epochs; the
  two-device model is saved to ``OUT_DIR/original`` and attacked with GA;
* ``retrain``: retrained from scratch on the originals plus a GA sample each (a
  ``UAESequence`` of 128 samples), 4 epochs, by :func:`uae_tf.retrain`;

each with ``devices=1`` and ``devices=2``. Usage::

    python tests/_mirrored_fit.py OUT_DIR

The last line printed is JSON: ``{run: {devices: {"loss", "replicas", "devices",
"config_devices", "test_reconstruction_error"}}, "seconds": ...}``.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def _summary(record):
    return {
        "loss": record["history"]["loss"],
        "replicas": record["replicas"],
        "devices": record["devices"],
        "config_devices": record["config"].get("devices"),
        "test_reconstruction_error": record["test_reconstruction_error"],
    }


def main(out):
    began = time.perf_counter()
    # Two logical CPUs on any machine: `devices=2` takes the GPUs where there are any.
    tf.config.set_visible_devices([], "GPU")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    # Imported once the devices are configured: nothing may initialize them before.
    from uae_tf import datasets, generate, training

    out = Path(out)
    train = {"epochs": 2, "batch_size": 16, "limit": 64, "seed": 0, "verbose": 0}
    runs = {"original": {}, "retrain": {}}
    for devices in (2, 1):
        # Only the two-device model is saved: the retraining's source, read back.
        _, record = training.train_autoencoder("dense", "mnist5k", devices=devices,
                                               out=out / "original" if devices == 2 else None,
                                               **train)
        runs["original"][devices] = _summary(record)
    phi, _ = training.load_model_dir(out / "original")
    x, _ = datasets.load("mnist5k", "train")
    generate(phi, x[:64], out / "ga", method="gaussian", sigma=0.01, verbose=False,
             config={"dataset": "mnist5k", "split": "train"})
    for devices in (1, 2):
        _, record = training.retrain(out / "original", out / "ga", epochs=4, devices=devices,
                                     verbose=0)
        runs["retrain"][devices] = _summary(record)
    print(json.dumps({**runs, "seconds": time.perf_counter() - began}))


if __name__ == "__main__":
    main(sys.argv[1])
