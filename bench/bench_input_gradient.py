"""Benchmark: the input gradient of the statistics network's first dense layer.

The conv view's first dense layer multiplies ``[B, 16, 11664]`` rows by per-sample
``[B, 11664, 512]`` kernels. Its input gradient (needed for the branch's conv
kernel and for the attack's delta step) is ``dy @ kernel^T``. This prints, for
several batch sizes, the milliseconds per sample of that gradient as autodiff of
``tf.matmul`` spells it and as :func:`uae_tf.mine.batched_matmul` spells it
(``(kernel @ dy^T)^T``), each inside one XLA-compiled loop, best of ``--repeats``.

Usage::

    python bench/bench_input_gradient.py
    python bench/bench_input_gradient.py --batch-sizes 1 2 4 8 16
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from uae_tf import mine  # noqa: E402


def time_input_gradient(matmul, batch_size, rows, depth, width, iterations, repeats):
    """Seconds per sample of ``d sum(matmul(x, kernel) * dy) / dx`` under XLA."""
    kernel = tf.random.stateless_uniform([batch_size, depth, width], [0, 1])
    x = tf.random.stateless_uniform([batch_size, rows, depth], [0, 2])
    dy = tf.random.stateless_uniform([batch_size, rows, width], [0, 3])

    @tf.function(jit_compile=True)
    def run(x, kernel, dy):
        total = tf.zeros_like(x)
        for i in tf.range(iterations):
            # A different dy each iteration, so XLA cannot hoist the product.
            step_dy = dy * (1.0 + tf.cast(i, tf.float32) * 1e-7)
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(matmul(x, kernel) * step_dy)
            total += tape.gradient(loss, x)
        return total

    run(x, kernel, dy).numpy()  # compile
    best = np.inf
    for _ in range(repeats):
        began = time.perf_counter()
        run(x, kernel, dy).numpy()
        best = min(best, time.perf_counter() - began)
    return best / iterations / batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rows", type=int, default=16, help="K, the views per sample")
    parser.add_argument("--depth", type=int, default=27 * 27 * 16, help="D, the layer's inputs")
    parser.add_argument("--width", type=int, default=512, help="H, the layer's units")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = (args.rows, args.depth, args.width)
    print(f"TF {tf.__version__}, {os.cpu_count()} cores; K, D, H = {shape}")
    print()
    print("| batch | tf.matmul autodiff ms/sample | batched_matmul ms/sample | speed-up |")
    print("|---|---|---|---|")
    for batch_size in args.batch_sizes:
        plain, ours = (
            1e3 * time_input_gradient(matmul, batch_size, *shape, args.iterations, args.repeats)
            for matmul in (tf.matmul, mine.batched_matmul)
        )
        print(f"| {batch_size} | {plain:.2f} | {ours:.2f} | {plain / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
