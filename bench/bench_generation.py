"""Benchmark: MINE-UAE generation throughput of the conv autoencoder on MNIST.

Prints, for the ``paper`` and ``fast`` presets, the conv and random views, the
statistics networks' kernels (``MINESimilarity(kernel=...)``: what ``"auto"``
picks, the fused native CPU op for the conv view, and TensorFlow's ops under XLA)
and several batch sizes, the time per sample, samples per second, the estimated FLOPs
and bytes per sample and the fraction of this machine's measured matmul peak and
memory bandwidth they reach, next to the same attack run as a one-sample loop of
the published kind (the peer): TF1-style graph mode, one sample, one call per
step with the result fetched to the host after each (the TF1 code's
``session.run`` per step), and TF's own fused Adam kernel (``ResourceApplyAdam``,
what ``tf.compat.v1.train.AdamOptimizer`` runs). The peer runs twice: with the
statistics network spelled as the published one is (Keras-layout first-layer
kernels) and with uae-tf's network (output-major kernels, faster for its kernels
too), so that the second ratio is that of the loops alone.

The cost of an attack is linear in its iterations T (every iteration does the same
work), so each configuration runs ``--measure-steps`` iterations after a warm-up
call that compiles the loop, and the per-sample time is scaled to the preset's T;
the peer's delta step and MINE step are timed separately and combined as
``T * (delta step + mine_steps * MINE step)``. Every figure is the best of
``--repeats`` runs (the host is shared; the best run is the least disturbed).

Usage::

    python bench/bench_generation.py                    # both presets and views, batches 1 and 8
    python bench/bench_generation.py --views conv --batch-sizes 1 8 32 64
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import _native, datasets, mine, presets  # noqa: E402
from uae_tf.attacks import MinMaxAttack  # noqa: E402
from uae_tf.criteria import ReconstructionCriterion  # noqa: E402
from uae_tf.views import make_view  # noqa: E402


def cpu_description():
    """The CPU's model name and widest x86 vector extension (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    vector = next((name for name, flag in (("AVX512-FP16", "avx512_fp16"),
                                           ("AVX-512", "avx512f"), ("AVX2", "avx2"))
                   if flag in flags), None)
    return model + (f" ({vector})" if vector else "")


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


#: Passes over the first dense layers' kernels per statistics-network step. ``tf``:
#: read in the forward and twice in the backward pass, the gradient written, and a
#: fused Adam update reading weight, gradient and both moments and writing three
#: (XLA's CPU backend makes 13 of it: its three Adam fusions each read the
#: gradient). ``native`` (uae_tf._native): read in the forward pass, then one pass
#: reading weight and moments and writing the three.
PASSES = {"tf": 3 + 1 + 7, "native": 1 + 6}


def cost_per_mine_step(network, k, kernel):
    """Estimated FLOPs and bytes of one statistics-network Adam step for one sample.

    FLOPs: forward, and backward for weights and inputs, of the two branches' dense
    layers (the conv and small layers are < 1%). Bytes: ``PASSES[kernel]`` passes
    over the dense kernels; kernels that fit in this CPU's caches (the random
    view's 0.26 MB) move these bytes between caches and cores, not through main
    memory.
    """
    params = network._flat_dim * network.hidden_units + network.hidden_units * network.features
    flops = 2 * 3 * 2 * k * params  # 2 branches x (forward + 2 backward) x 2 flop/MAC
    bytes_ = 2 * 4 * params * PASSES[kernel]
    return flops, bytes_


def best_of(repeats, run):
    """The smallest of ``repeats`` timings of ``run()`` (seconds)."""
    best = np.inf
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def time_attack(model, x, settings, batch_size, measure_steps, repeats):
    """Seconds per sample and attack iteration of uae-tf's MinMax attack."""
    settings = {**settings, "steps": measure_steps}
    attack = MinMaxAttack(ReconstructionCriterion(model), batch_size=batch_size, **settings)
    batch = x[:batch_size]
    attack(batch)  # compile
    return best_of(repeats, lambda: attack(batch)) / batch_size / measure_steps


def resolved_kernel(model, input_shape, settings):
    """The statistics networks' kernel ``kernel="auto"`` picks for these settings."""
    attack = MinMaxAttack(ReconstructionCriterion(model), **settings)
    attack._build(input_shape)
    attack.similarity.compiles_with_xla(attack.jit_compile)
    return "native" if attack.similarity.uses_native_kernel else "tf"


PEER_NETWORKS = ("published", "uae-tf")


def time_peer(model, x, view, learning_rate, const, step_size, calls, repeats, network_kind):
    """Seconds per delta step and per MINE step of a one-sample loop of the published kind.

    Graph mode without XLA (the TF1 executor's kernels), one ``tf.function`` call
    per step followed by a fetch to the host (the TF1 ``session.run``), the
    statistics network in variables and TF's fused ``ResourceApplyAdam`` with TF1
    ``AdamOptimizer``'s beta-power variables. The view is uae-tf's; the network is
    uae-tf's too (``network_kind="uae-tf"``: output-major first-layer kernels and
    ``mine.matmul_output_major``, which make the peer's graph-mode kernels faster
    too) or spelled as the published one is (``"published"``: Keras-layout
    ``[D, H]`` kernels and autodiff of ``x @ kernel``). Both do the same arithmetic
    on the same initial weights.
    """
    sample = tf.constant(x[:1])
    x_views = view(sample)
    k = x_views.shape[1]
    network = mine.StatisticsNetwork(x_views.shape[2:])
    initial = network.initialize(tf.constant([[0, 0]]))
    if network_kind == "published":
        network.first_layer_matmul = tf.matmul
        initial = {name: tf.transpose(value, [0, 2, 1])
                   if name in network.OUTPUT_MAJOR_KERNELS else value
                   for name, value in initial.items()}
    names = sorted(initial)
    variables = [tf.Variable(initial[n]) for n in names]
    moments = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in variables]
    beta1_power = tf.Variable(mine.ADAM_BETA_1)
    beta2_power = tf.Variable(mine.ADAM_BETA_2)
    delta = tf.Variable(tf.zeros_like(sample))
    clean_error = tf.reduce_sum(tf.square(sample - model(sample)))

    def mutual_information(y_views):
        permutation = tf.random.shuffle(tf.range(k))[None]
        params = dict(zip(names, variables))
        return network.mutual_information(params, x_views, y_views, permutation)

    @tf.function(jit_compile=False)
    def delta_step():
        with tf.GradientTape() as tape:
            adv = tf.clip_by_value(sample + delta, 0.0, 1.0)
            f = tf.nn.relu(tf.reduce_sum(tf.square(sample - model(adv))) - clean_error)
            loss = const * f + tf.reduce_sum(mutual_information(view(adv)))
        delta.assign_sub(step_size * tape.gradient(loss, delta))
        return f

    @tf.function(jit_compile=False)
    def mine_step():
        y_views = view(tf.clip_by_value(sample + delta, 0.0, 1.0))
        with tf.GradientTape() as tape:
            mi = mutual_information(y_views)
            loss = -tf.reduce_sum(mi)
        grads = tape.gradient(loss, variables)
        updates = [
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle, beta1_power=beta1_power,
                beta2_power=beta2_power, lr=learning_rate, beta1=mine.ADAM_BETA_1,
                beta2=mine.ADAM_BETA_2, epsilon=mine.ADAM_EPSILON, grad=grad)
            for var, (m, v), grad in zip(variables, moments, grads)
        ]
        with tf.control_dependencies(updates):
            beta1_power.assign(beta1_power * mine.ADAM_BETA_1)
            beta2_power.assign(beta2_power * mine.ADAM_BETA_2)
        return mi

    def run(step):
        for _ in range(calls):
            step().numpy()

    delta_step().numpy()
    mine_step().numpy()
    return (best_of(repeats, lambda: run(delta_step)) / calls,
            best_of(repeats, lambda: run(mine_step)) / calls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--presets", nargs="+", default=["paper", "fast"])
    parser.add_argument("--views", nargs="+", default=["conv", "random"])
    parser.add_argument("--kernels", nargs="+", default=["auto", "tf"],
                        help="MINESimilarity kernels; 'auto' resolves per view, and a "
                             "kernel is timed once per view and preset")
    parser.add_argument("--measure-steps", type=int, default=2)
    parser.add_argument("--peer-calls", type=int, default=10,
                        help="calls per timing of each of the peer's two steps")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure; the best")
    parser.add_argument("--epochs", type=int, default=2, help="conv AE training epochs")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    x, _ = datasets.load("mnist5k", "train")
    keras.utils.set_random_seed(0)
    trainer = autoencoders.build("conv", x.shape[1:], seed=0)
    trainer.fit(x, x, epochs=args.epochs, batch_size=100, verbose=0)
    model = autoencoders.reconstruction_model(trainer)

    gflops, gbps = machine_peaks()
    print(f"machine: {cpu_description()}, matmul {gflops:.0f} GFLOP/s, memory copy "
          f"{gbps:.1f} GB/s, {os.cpu_count()} cores, TF {tf.__version__}")
    if _native.load() is not None:
        info = _native.build_info()
        print(f"native op: {' '.join(info.get('isa_flags', [])) or 'portable flags'}, "
              f"{info.get('compiler', '?')}")
    else:
        print(f"native op: unavailable ({_native.unavailable_reason()})")
    print()
    print("| view | preset | kernel | batch | s/sample | samples/s | published peer s/sample "
          "| speed-up | uae-tf-network peer s/sample | speed-up "
          "| GFLOP/sample | MB/update | GB/sample | % matmul peak | % memory bw |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for view_name in args.views:
        view = make_view(view_name, model, x.shape[1:], seed=0)
        view_shape = view(tf.constant(x[:1])).shape
        k, network = view_shape[1], mine.StatisticsNetwork(view_shape[2:])
        paper = presets.get_preset("paper")
        peer_steps = {
            kind: time_peer(
                model, x, view, paper["similarity"]["learning_rate"], paper["initial_const"],
                paper["step_size"], args.peer_calls, args.repeats, kind)
            for kind in PEER_NETWORKS
        }
        runs = []
        for preset in args.presets:
            for setting in args.kernels:
                settings = presets.get_preset(preset)
                settings["similarity"] = {**settings["similarity"], "view": view_name,
                                          "kernel": setting}
                kernel = resolved_kernel(model, x.shape[1:], settings)
                if all(kernel != done for p, done, _ in runs if p == preset):
                    runs.append((preset, kernel, settings))
        for preset, kernel, settings in runs:
            steps, mine_steps = settings["steps"], settings["similarity"]["mine_steps"]
            step_flops, step_bytes = cost_per_mine_step(network, k, kernel)
            flops = steps * mine_steps * step_flops
            bytes_ = steps * mine_steps * step_bytes
            peers = {kind: steps * (delta + mine_steps * mine_step)
                     for kind, (delta, mine_step) in peer_steps.items()}
            default_batch = MinMaxAttack(ReconstructionCriterion(model), **settings
                                         ).resolve_batch_size(x.shape[1:])
            for batch_size in args.batch_sizes:
                seconds = steps * time_attack(model, x, settings, batch_size,
                                              args.measure_steps, args.repeats)
                row = {
                    "view": view_name,
                    "preset": preset,
                    "kernel": kernel,
                    "batch_size": batch_size,
                    "default_batch": batch_size == default_batch,
                    "seconds_per_sample": seconds,
                    "samples_per_second": 1 / seconds,
                    "peer_seconds_per_sample": peers,
                    "speedup_vs_peer": {kind: peer / seconds for kind, peer in peers.items()},
                    "gflop_per_sample": flops / 1e9,
                    "gb_per_sample": bytes_ / 1e9,
                    "mb_per_update": step_bytes / 1e6,
                    "pct_matmul_peak": 100 * flops / seconds / (gflops * 1e9),
                    "pct_memory_bandwidth": 100 * bytes_ / seconds / (gbps * 1e9),
                }
                rows.append(row)
                mark = " (default)" if row["default_batch"] else ""
                peer_cells = "".join(f"| {peers[kind]:.2f} | {peers[kind] / seconds:.2f}x "
                                     for kind in PEER_NETWORKS)
                print(
                    f"| {view_name} | {preset} | {kernel} | {batch_size}{mark} | {seconds:.2f} "
                    f"| {1 / seconds:.3f} {peer_cells}"
                    f"| {row['gflop_per_sample']:.0f} | {row['mb_per_update']:.0f} "
                    f"| {row['gb_per_sample']:.1f} "
                    f"| {row['pct_matmul_peak']:.1f} | {row['pct_memory_bandwidth']:.1f} |",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {"gflops": gflops, "gbps": gbps, "tensorflow": tf.__version__},
                       "args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
