"""Compare: one device against several (tf.distribute.MirroredStrategy), per autoencoder.

Trains each autoencoder on the first N mnist5k digits plus a Gaussian-noise sample
each (a ``UAESequence`` of 2N samples, as ``uae retrain`` does) with the same seed
and global batch, once with ``devices=1`` and once with ``devices=D``, and prints
both per-epoch loss histories and their largest relative difference. Without a GPU,
the CPU is split into D logical devices first (which is why this runs in its own
process); with GPUs, the first D are used.

Usage::

    python bench/compare_devices.py
    python bench/compare_devices.py --archs dense,conv --devices 4 --epochs 6
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ARCHS = ("dense", "conv", "sparse", "adversarial", "concrete")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(ARCHS),
                        help="comma-separated architectures (default: %(default)s)")
    parser.add_argument("--devices", type=int, default=2, help="D (default: %(default)s)")
    parser.add_argument("--n", type=int, default=64, help="originals N (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.devices)])
    # Imported once the devices are configured: nothing may initialize them before.
    import autoencoders
    from uae_tf import datasets, generate, training

    x, _ = datasets.load("mnist5k", "train")
    x = x[: args.n]
    common = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
              "limit": args.n, "verbose": 0}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        # Every noisy sample is used, so the model attacked does not matter.
        noise = generate(autoencoders.build("dense", x.shape[1:], seed=0), x, f"{scratch}/ga",
                         method="gaussian", sigma=0.01, seed=args.seed, verbose=False,
                         config={"dataset": "mnist5k", "split": "train"})
        for arch in args.archs.split(","):
            histories, seconds = {}, {}
            for devices in (1, args.devices):
                began = time.perf_counter()
                if arch == "concrete":
                    _, record = training.train_concrete("mnist5k", augmentation=noise,
                                                        devices=devices, features=10,
                                                        max_tries=1, **common)
                else:
                    _, record = training.train_autoencoder(arch, "mnist5k", augmentation=noise,
                                                           devices=devices, **common)
                histories[devices] = record["history"]
                seconds[devices] = time.perf_counter() - began
            one, several = histories[1], histories[args.devices]
            differences = {name: float(np.max(np.abs(np.subtract(several[name], one[name]))
                                              / np.abs(one[name]))) for name in one}
            rows.append({"arch": arch, "one": one, "several": several,
                         "max_relative_difference": differences, "seconds": seconds})
            indent = " " * len(arch)
            print(f"{arch}: one device {np.round(one['loss'], 7).tolist()}\n"
                  f"{indent}  {args.devices} devices {np.round(several['loss'], 7).tolist()}\n"
                  f"{indent}  max relative difference "
                  + ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
                  + f"; {seconds[1]:.0f} s and {seconds[args.devices]:.0f} s", flush=True)
    print(json.dumps({"devices": args.devices, "n": args.n, "epochs": args.epochs,
                      "batch_size": args.batch_size, "rows": rows}))


if __name__ == "__main__":
    main()
