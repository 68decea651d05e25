"""Benchmark: MINE-UAE generation throughput of the conv autoencoder on MNIST.

Prints, for the ``paper`` and ``fast`` presets at several batch sizes, the time per
sample, samples per second, and the fraction of this machine's measured matmul peak
and memory bandwidth that the estimated FLOPs and bytes per sample reach. Also
times a one-sample-at-a-time loop of the published kind (Keras variables, Keras
Adam, one ``tf.function`` call per step with a host round-trip, as the TF1 code's
``sess.run`` per step) for comparison.

The cost of an attack is linear in its iterations T (every iteration does the same
work), so each configuration runs ``--measure-steps`` iterations after a warm-up
call that compiles the loop, and the per-sample time is scaled to the preset's T.

Usage::

    python bench/bench_generation.py                    # all batch sizes, both presets
    python bench/bench_generation.py --batch-sizes 1 8 --measure-steps 2
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import datasets, mine, presets  # noqa: E402
from uae_tf.attacks import MinMaxAttack  # noqa: E402
from uae_tf.criteria import ReconstructionCriterion  # noqa: E402
from uae_tf.views import find_first_conv2d  # noqa: E402


def machine_peaks():
    """Measures float32 matmul GFLOP/s and memory bandwidth (GB/s, read + write)."""
    a = tf.random.uniform([2048, 2048])
    matmul = tf.function(lambda a: tf.matmul(a, a))
    matmul(a).numpy()
    began = time.perf_counter()
    for _ in range(10):
        out = matmul(a)
    out.numpy()
    gflops = 10 * 2 * 2048**3 / (time.perf_counter() - began) / 1e9
    src = np.ones(128 * 1024 * 1024 // 4, np.float32)  # 128 MB, far beyond the caches
    dst = np.empty_like(src)
    np.copyto(dst, src)
    began = time.perf_counter()
    for _ in range(10):
        np.copyto(dst, src)
    gbps = 10 * 2 * src.nbytes / (time.perf_counter() - began) / 1e9
    return gflops, gbps


def cost_per_mine_step(k, h, w, hidden=512, features=10, filters=16):
    """Estimated FLOPs and bytes of one statistics-network Adam step for one sample.

    FLOPs: forward, and backward for weights and inputs, of the two branches' dense
    layers (the conv and small layers are < 1%). Bytes: the dense kernels are read
    in the forward and twice in the backward pass, their gradient is written, and a
    fused Adam update reads weight, gradient and both moments and writes three.
    """
    flat = (h - 1) * (w - 1) * filters
    params = flat * hidden + hidden * features
    flops = 2 * 3 * 2 * k * params  # 2 branches x (forward + 2 backward) x 2 flop/MAC
    bytes_ = 2 * 4 * params * (3 + 1 + 7)
    return flops, bytes_


def time_attack(model, x, preset, batch_size, measure_steps):
    settings = {**presets.get_preset(preset), "steps": measure_steps}
    attack = MinMaxAttack(ReconstructionCriterion(model), batch_size=batch_size, **settings)
    batch = x[:batch_size]
    attack(batch)  # compile
    began = time.perf_counter()
    attack(batch)
    return (time.perf_counter() - began) / batch_size / measure_steps


def time_published_loop(model, x, mine_steps, iterations):
    """Seconds per attack iteration of a one-sample loop of the published kind."""
    conv = keras.Model(model.inputs, find_first_conv2d(model).output)
    sample = tf.constant(x[:1])
    xv = tf.transpose(conv(sample), [3, 1, 2, 0])[None]
    net = mine.StatisticsNetwork(xv.shape[2:])
    params = {k: tf.Variable(v) for k, v in net.initialize(tf.constant([[0, 0]])).items()}
    delta = tf.Variable(tf.zeros_like(sample))
    optimizer = keras.optimizers.Adam(1.5e-5, epsilon=1e-8)
    k = xv.shape[1]

    @tf.function
    def delta_step():
        with tf.GradientTape() as tape:
            adv = tf.clip_by_value(sample + delta, 0, 1)
            f = tf.nn.relu(
                tf.reduce_sum(tf.square(sample - model(adv)))
                - tf.reduce_sum(tf.square(sample - model(sample)))
            )
            yv = tf.transpose(conv(adv), [3, 1, 2, 0])[None]
            perm = tf.random.shuffle(tf.range(k))[None]
            mi = net.mutual_information({n: v for n, v in params.items()}, xv, yv, perm)
            loss = 1e-3 * f + tf.reduce_sum(mi)
        delta.assign_sub(0.01 * tape.gradient(loss, delta))
        return f

    @tf.function
    def mine_step():
        adv = tf.clip_by_value(sample + delta, 0, 1)
        yv = tf.transpose(conv(adv), [3, 1, 2, 0])[None]
        with tf.GradientTape() as tape:
            perm = tf.random.shuffle(tf.range(k))[None]
            mi = net.mutual_information({n: v for n, v in params.items()}, xv, yv, perm)
            loss = -tf.reduce_sum(mi)
        variables = list(params.values())
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return mi

    delta_step().numpy()
    mine_step().numpy()
    began = time.perf_counter()
    for _ in range(iterations):
        delta_step().numpy()
        for _ in range(mine_steps):
            mine_step().numpy()
    return (time.perf_counter() - began) / iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--presets", nargs="+", default=["fast", "paper"])
    parser.add_argument("--measure-steps", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="conv AE training epochs")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    x, _ = datasets.load("mnist5k", "train")
    keras.utils.set_random_seed(0)
    trainer = autoencoders.build("conv", x.shape[1:], seed=0)
    trainer.fit(x, x, epochs=args.epochs, batch_size=100, verbose=0)
    model = autoencoders.reconstruction_model(trainer)

    gflops, gbps = machine_peaks()
    print(f"machine: matmul {gflops:.0f} GFLOP/s, memory copy {gbps:.1f} GB/s, "
          f"{os.cpu_count()} cores, TF {tf.__version__}")
    k, h, w = 16, 28, 28
    step_flops, step_bytes = cost_per_mine_step(k, h, w)
    rows = []
    paper = presets.get_preset("paper")
    baseline = time_published_loop(model, x, paper["similarity"]["mine_steps"], iterations=2)
    baseline_sample = baseline * paper["steps"]
    print(f"published-style one-sample loop, paper preset: {baseline_sample:.1f} s/sample")
    print()
    print("| preset | batch | s/sample | samples/s | GFLOP/sample | GB/sample "
          "| % matmul peak | % memory bw | speed-up vs published loop |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        settings = presets.get_preset(preset)
        updates = settings["steps"] * settings["similarity"]["mine_steps"]
        flops, bytes_ = updates * step_flops, updates * step_bytes
        for batch_size in args.batch_sizes:
            per_iteration = time_attack(model, x, preset, batch_size, args.measure_steps)
            seconds = per_iteration * settings["steps"]
            row = {
                "preset": preset,
                "batch_size": batch_size,
                "seconds_per_sample": seconds,
                "samples_per_second": 1 / seconds,
                "gflop_per_sample": flops / 1e9,
                "gb_per_sample": bytes_ / 1e9,
                "pct_matmul_peak": 100 * flops / seconds / (gflops * 1e9),
                "pct_memory_bandwidth": 100 * bytes_ / seconds / (gbps * 1e9),
                "speedup_vs_published_loop": baseline_sample * updates
                / (paper["steps"] * paper["similarity"]["mine_steps"]) / seconds,
            }
            rows.append(row)
            print(
                f"| {preset} | {batch_size} | {seconds:.2f} | {1 / seconds:.3f} "
                f"| {row['gflop_per_sample']:.0f} | {row['gb_per_sample']:.0f} "
                f"| {row['pct_matmul_peak']:.1f} | {row['pct_memory_bandwidth']:.1f} "
                f"| {row['speedup_vs_published_loop']:.2f}x |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {"gflops": gflops, "gbps": gbps},
                       "published_loop_seconds_per_sample": baseline_sample, "rows": rows},
                      f, indent=2)


if __name__ == "__main__":
    main()
