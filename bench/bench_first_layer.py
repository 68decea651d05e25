"""Benchmark: the statistics network's first dense layer, spelled four ways.

The conv view's first dense layer multiplies ``[B, 16, 11664]`` rows by per-sample
kernels of 11,664 x 512 weights. Each MINE step computes three products with the
kernel: the forward product, the input gradient (for the branch's conv kernel and
the attack's delta step) and the kernel gradient. How the kernel is laid out and
how the products are spelled decides which kind of dot XLA's CPU backend and TF's
kernels run. This prints, for several batch sizes, the milliseconds per sample of
the forward product, and of a whole layer update (forward, both gradients and an
SGD step of the kernel, the one elementwise pass all spellings share), each inside one compiled
loop (XLA, and TF graph mode without XLA as the peer of ``bench_generation.py``
runs), best of ``--repeats``, for:

* ``keras``: a ``[D, H]`` kernel and autodiff of ``x @ kernel`` (the published
  network's Dense layer);
* ``keras+T``: a ``[D, H]`` kernel, the input gradient as ``(kernel @ dy^T)^T``
  (uae-tf's spelling before the output-major kernels);
* ``out-major``: an ``[H, D]`` kernel and autodiff of ``x @ kernel^T``;
* ``uae-tf``: an ``[H, D]`` kernel and :func:`uae_tf.mine.matmul_output_major`.

Usage::

    python bench/bench_first_layer.py
    python bench/bench_first_layer.py --batch-sizes 1 2 4 8 16
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from uae_tf import mine  # noqa: E402


@tf.custom_gradient
def _keras_transposed_input_gradient(x, kernel):
    def grad(dy):
        opaque_one = 1.0 + 0.0 * dy[:, :1, :1]
        dx = tf.transpose(tf.matmul(kernel, dy, transpose_b=True) * opaque_one, [0, 2, 1])
        return dx, tf.matmul(x, dy, transpose_a=True)

    return tf.matmul(x, kernel), grad


# name: (the product, whether the kernel is stored output-major [H, D])
SPELLINGS = {
    "keras": (tf.matmul, False),
    "keras+T": (_keras_transposed_input_gradient, False),
    "out-major": (lambda x, kernel: tf.matmul(x, kernel, transpose_b=True), True),
    "uae-tf": (mine.matmul_output_major, True),
}


def time_layer(spelling, batch_size, rows, depth, width, gradients, jit_compile,
               iterations, repeats):
    """Seconds per sample of the layer's forward product (or of a whole update)."""
    matmul, output_major = SPELLINGS[spelling]
    shape = [batch_size, width, depth] if output_major else [batch_size, depth, width]
    kernel = tf.random.stateless_uniform(shape, [0, 1])
    x = tf.random.stateless_uniform([batch_size, rows, depth], [0, 2])
    dy = tf.random.stateless_uniform([batch_size, rows, width], [0, 3])

    @tf.function(jit_compile=jit_compile)
    def run(x, kernel, dy):
        total = tf.zeros([])
        for i in tf.range(iterations):
            # Different rows each iteration, so no product can be hoisted; every
            # result is used whole, so none can be pruned.
            step_x = x * (1.0 + tf.cast(i, tf.float32) * 1e-7)
            with tf.GradientTape() as tape:
                tape.watch([step_x, kernel])
                y = matmul(step_x, kernel)
                loss = tf.reduce_sum(y * dy)
            total += tf.reduce_sum(y)
            if gradients:
                dx, dk = tape.gradient(loss, [step_x, kernel])
                total += tf.reduce_sum(dx)
                kernel -= 1e-9 * dk
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
    parser.add_argument("--spellings", nargs="+", default=list(SPELLINGS), choices=SPELLINGS)
    parser.add_argument("--rows", type=int, default=16, help="K, the views per sample")
    parser.add_argument("--depth", type=int, default=27 * 27 * 16, help="D, the layer's inputs")
    parser.add_argument("--width", type=int, default=512, help="H, the layer's units")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = (args.rows, args.depth, args.width)
    print(f"TF {tf.__version__}, {os.cpu_count()} cores; K, D, H = {shape}; ms per sample")
    print()
    print("| engine | spelling | batch | forward | forward, gradients, SGD step |")
    print("|---|---|---|---|---|")
    for jit_compile, engine in ((True, "XLA"), (False, "TF graph")):
        for spelling in args.spellings:
            for batch_size in args.batch_sizes:
                forward, layer = (
                    1e3 * time_layer(spelling, batch_size, *shape, gradients, jit_compile,
                                     args.iterations, args.repeats)
                    for gradients in (False, True)
                )
                print(f"| {engine} | {spelling} | {batch_size} | {forward:.2f} | {layer:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
