"""Benchmark: ``model.fit`` throughput with ``UAESequence`` against in-memory arrays.

Trains the paper's conv autoencoder on the same 2N samples (N mnist5k digits and N
augmentations) two ways -- NumPy arrays with ``shuffle=True``, and a
``UAESequence`` -- and prints samples per second and the Sequence's overhead. The
first epoch (tracing, the Sequence's shape peek) is timed apart; the steady state
is the median of the later epochs. Also times the Sequence with 2 worker threads.

Usage::

    python bench/bench_sequence.py
    python bench/bench_sequence.py --n 2000 --epochs 4 --batch-size 100
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import UAESequence, datasets  # noqa: E402


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.times = []


def _fit(data, epochs, batch_size, seed, **fit_kwargs):
    keras.utils.set_random_seed(seed)
    model = autoencoders.build("conv", data["shape"], seed=seed)
    timer = _EpochTimer()
    model.fit(**data["args"], epochs=epochs, verbose=0, callbacks=[timer], **fit_kwargs)
    return timer.times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="originals (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x, _ = datasets.load("mnist5k", "train")
    x = x[: args.n]
    rng = np.random.default_rng(args.seed)
    x_aug = np.clip(x + rng.uniform(-0.08, 0.08, x.shape), 0, 1).astype("float32")
    success = rng.uniform(size=len(x)) < 0.9
    pool = np.concatenate([x, np.where(success[:, None, None, None], x_aug, x)])
    n = len(pool)
    runs = {
        "arrays": {"args": {"x": pool, "y": pool, "batch_size": args.batch_size, "shuffle": True}},
        "UAESequence": {"args": {"x": UAESequence(x, x_aug, success, batch_size=args.batch_size,
                                                   seed=args.seed)}},
        "UAESequence, 2 threads": {"args": {"x": UAESequence(
            x, x_aug, success, batch_size=args.batch_size, seed=args.seed, workers=2)}},
    }
    results = {}
    for name, data in runs.items():
        data["shape"] = x.shape[1:]
        times = _fit(data, args.epochs, args.batch_size, args.seed)
        steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
        results[name] = {"first_epoch_s": times[0], "epoch_s": steady, "samples_per_s": n / steady}
    base = results["arrays"]["epoch_s"]
    print(f"model.fit, conv autoencoder, {n} samples ({args.n} originals + augmentations), "
          f"batch {args.batch_size}, median of epochs 2..{args.epochs}:")
    for name, r in results.items():
        overhead = 100 * (r["epoch_s"] - base) / base
        r["overhead_pct"] = overhead
        print(f"  {name:<24} {r['epoch_s']:6.2f} s/epoch  {r['samples_per_s']:7.0f} samples/s  "
              f"overhead {overhead:+5.1f}%  (first epoch {r['first_epoch_s']:.2f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
