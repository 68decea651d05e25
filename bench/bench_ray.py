"""Benchmark: ``generate`` with the local engine against the Ray engine, on one machine.

Trains an autoencoder briefly on the embedded MNIST digits, generates MINE-UAEs for
the first ``--n`` digits with ``engine="local"``, then starts a local Ray instance on
this machine's cores and generates the same UAEs with ``engine="ray"`` for each
``--workers`` count, then with ``engine="local"`` again, each run into a fresh
directory. Prints the wall time of each (the Ray rows include starting the actors:
each imports TensorFlow, loads the model and compiles the attack), and whether its
``uae.npz`` is bit for bit the first local run's. The second local run shows how much
the machine's speed drifted meanwhile (on a shared machine, other jobs come and go).

Usage::

    python bench/bench_ray.py                          # 64 digits, fast preset, dense AE
    python bench/bench_ray.py --arch conv --workers 1 2 --n 32
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import datasets, generation  # noqa: E402


def identical(a, b):
    """Whether two results directories hold the same ``uae.npz`` arrays, bit for bit."""
    with np.load(Path(a) / "uae.npz") as x, np.load(Path(b) / "uae.npz") as y:
        return sorted(x.files) == sorted(y.files) and all(
            np.array_equal(x[k], y[k]) for k in x.files)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="digits to attack")
    parser.add_argument("--arch", default="dense", choices=["dense", "conv"],
                        help="dense (random view, as uae demo) or conv (conv view)")
    parser.add_argument("--epochs", type=int, default=1, help="autoencoder training epochs")
    parser.add_argument("--preset", default="fast", choices=["fast", "paper"])
    parser.add_argument("--batch-size", type=int, default=1,
                        help="attack batch size (the CPU default)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1],
                        help="Ray actor counts to time")
    args = parser.parse_args()

    x, _ = datasets.load("mnist5k", "train")
    keras.utils.set_random_seed(0)
    trainer = autoencoders.build(args.arch, x.shape[1:], seed=0)
    trainer.fit(x, x, epochs=args.epochs, batch_size=100, verbose=0)
    model = autoencoders.reconstruction_model(trainer)
    x = x[: args.n]
    settings = dict(preset=args.preset, batch_size=args.batch_size, verbose=False)
    cores = os.cpu_count()
    print(f"{args.n} digits, {args.arch} autoencoder, {args.preset} preset, attack batch "
          f"{args.batch_size}, {cores} cores, load average {os.getloadavg()[0]:.1f}")
    print()
    print("| engine | workers | cores each | wall s | samples/s | identical to the first |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "local"

        def row(engine, actors, cores_each, out, **options):
            began = time.perf_counter()
            generation.generate(model, x, out, engine=engine, **options, **settings)
            seconds = time.perf_counter() - began
            same = "-" if out == reference else identical(out, reference)
            print(f"| {engine} | {actors} | {cores_each} | {seconds:.1f} "
                  f"| {args.n / seconds:.2f} | {same} |", flush=True)

        row("local", "1 process", cores, reference)
        began = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False,
                 logging_level="warning")
        print(f"(starting Ray: {time.perf_counter() - began:.1f} s, not in the rows)",
              flush=True)
        for workers in args.workers:
            row("ray", workers, cores // workers, Path(tmp) / f"ray-{workers}",
                workers=workers)
        ray.shutdown()
        row("local", "1 process", cores, Path(tmp) / "local-again")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
