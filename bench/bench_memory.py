"""Benchmark: GPU memory and bandwidth-floor time of MINE-UAE generation, from the formula.

Prints, from :func:`uae_tf.attacks.estimate_attack_memory` (the formula is in
``uae_tf/attacks/memory.py``), for the conv autoencoder on MNIST (conv and random
views) and the SimCLR ResNet-18 on CIFAR-10 (the conv view of its stem, the
contrastive criterion with 50 pairs): the device bytes per sample and what they are,
the largest batch on 16, 40 and 80 GB GPUs, and the memory traffic per sample with
the time it floors a run at on each GPU's memory bandwidth (a lower bound: every
sample has its own statistics network, so its weights and Adam moments stream
through memory on every update whatever the batch).

``--validate`` also compiles each attack on this CPU for batches of 1 and 2 (fewer
iterations and MINE steps, which change neither the networks nor the activations;
optionally fewer SimCLR pairs, ``--validate-pairs``) and prints the per-sample bytes of XLA's
own buffer assignment of the compiled loop (the growth from batch 1 to 2) against
the formula's, before its safety factor. That takes minutes.

Models are built untrained (memory does not depend on the weights): no download.

Usage::

    python bench/bench_memory.py
    python bench/bench_memory.py --validate
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf.attacks import MinMaxAttack, estimate_attack_memory, memory  # noqa: E402
from uae_tf.criteria import ContrastiveCriterion, ReconstructionCriterion  # noqa: E402
from uae_tf.models.simclr import build_simclr  # noqa: E402
from uae_tf.presets import get_preset  # noqa: E402

GB = 1e9
DEVICE_SIZES = (16, 40, 80)
# (name, memory in GB, memory bandwidth in GB/s, fp32 peak in TFLOP/s without tensor
# cores): NVIDIA's data sheets (SXM parts).
GPUS = (
    ("V100 16 GB", 16, 900, 15.7),
    ("A100 40 GB", 40, 1555, 19.5),
    ("A100 80 GB", 80, 2039, 19.5),
    ("H100 SXM 80 GB", 80, 3350, 67.0),
)
# name: (model, input shape, view, pairs, samples of the run, T)
CONFIGS = {
    "conv AE, MNIST, conv view": ("conv_ae", (28, 28, 1), "conv", None, 60_000, 40),
    "conv AE, MNIST, random view": ("conv_ae", (28, 28, 1), "random", None, 60_000, 40),
    # Table 7's attack: the paper preset with the published SimCLR attack's T = 20.
    "SimCLR ResNet-18, CIFAR-10, stem view, A = 50": (
        "simclr", (32, 32, 3), "conv", 50, 50_000, 20),
}


def build_attack(model, input_shape, view, pairs, steps, mine_steps=None, batch_size=None):
    """The paper-preset MinMax attack of one configuration, on an untrained model."""
    keras.utils.set_random_seed(0)
    if model == "conv_ae":
        criterion = ReconstructionCriterion(
            autoencoders.reconstruction_model(autoencoders.build("conv", input_shape, seed=0)))
    else:
        simclr = build_simclr(input_shape, seed=0, encoder="resnet18")
        criterion = ContrastiveCriterion(simclr, pairs=pairs)
    settings = get_preset("paper")
    settings["steps"] = steps
    settings["similarity"]["view"] = view
    if mine_steps is not None:
        settings["similarity"]["mine_steps"] = mine_steps
    return MinMaxAttack(criterion, batch_size=batch_size, jit_compile=True, **settings)


def model_flops(model):
    """FLOPs of one sample's forward pass through the model's Conv2D and Dense layers."""
    flops = 0
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            flops += model_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            out = layer.output.shape
            flops += 2 * out[1] * out[2] * kh * kw * layer.input.shape[-1] * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def attack_flops(attack):
    """FLOPs per sample of the attack's matmuls and convolutions (the compute floor).

    A MINE update is a forward and two backward passes (weights and inputs) through
    both branches; a delta step is the same through the statistics network, and a
    forward, a backward and a forward (f at the new iterate) through the criterion's
    model for each of its evaluations.
    """
    network = attack.similarity.network
    sample = attack.criterion.model.inputs[0].shape[1:]
    k = attack.similarity.built_view(np.zeros((1, *sample), np.float32)).shape[1]
    hidden, features = network.hidden_units, network.features
    if network.kind == "conv":
        h, w, _ = network.view_shape
        maps = (h - 1) * (w - 1)
        branch = 2 * k * (maps * 4 * network.conv_filters
                          + maps * network.conv_filters * hidden + hidden * features)
    else:
        branch = 2 * k * (network.view_shape[0] * hidden + hidden * features)
    criterion = attack.criterion
    model = getattr(criterion, "simclr", criterion.model)
    evaluations = 2 * criterion.pairs if hasattr(criterion, "pairs") else 1
    per_update = 3 * 2 * branch
    per_iteration = per_update + 3 * evaluations * model_flops(model)
    updates = attack.steps * attack.similarity.steps_per_iteration
    return updates * per_update + attack.steps * per_iteration


def largest_batch(estimate, device_gb):
    """Samples a device of ``device_gb`` holds, as the default batch is chosen there."""
    return estimate.largest_batch(memory.USABLE_FRACTION * device_gb * GB)


_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {bench!r})
from bench_memory import build_attack
attack = build_attack({model!r}, {shape!r}, {view!r}, {pairs!r}, steps=1, mine_steps=1,
                      batch_size={batch})
attack(np.full(({batch}, *{shape!r}), 0.5, np.float32))
"""


def xla_bytes_per_sample(model, shape, view, pairs):
    """Per-sample bytes of XLA's buffer assignment of the compiled loop on this CPU."""
    totals = []
    for batch in (1, 2):
        with tempfile.TemporaryDirectory() as dump:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS=(
                f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*attack_loop.* "
                "--xla_dump_hlo_pass_re=NONE"))
            code = _CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), model=model,
                                 shape=shape, view=view, pairs=pairs, batch=batch)
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            (path,) = glob.glob(os.path.join(dump, "*attack_loop*buffer-assignment.txt"))
            with open(path) as f:
                totals.append(int(re.search(r"Total bytes used: (\d+)", f.read()).group(1)))
    return totals[1] - totals[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--validate", action="store_true",
                        help="also compare with XLA's buffer assignment on this CPU (minutes)")
    parser.add_argument("--validate-pairs", type=int, default=50,
                        help="SimCLR pairs A of the validation (fewer compile faster)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    rows = []
    for name, (model, shape, view, pairs, n, steps) in CONFIGS.items():
        attack = build_attack(model, shape, view, pairs, steps)
        estimate = estimate_attack_memory(attack, shape)
        flops = attack_flops(attack)
        parts = {**estimate.inputs, **{f"loop: {k}": v for k, v in estimate.carried.items()}}
        step = max((estimate.mine_step, estimate.delta_step), key=lambda d: sum(d.values()))
        parts.update({f"step: {k}": v for k, v in step.items()})
        row = {
            "config": name, "samples": n, "steps": steps,
            "bytes_per_sample": estimate.bytes_per_sample, "fixed_bytes": estimate.fixed_bytes,
            "parts": parts, "traffic_per_sample": estimate.traffic,
            "largest_batch": {gb: largest_batch(estimate, gb) for gb in DEVICE_SIZES},
            "hours": {gpu: n * estimate.seconds_per_sample(bw * GB) / 3600
                      for gpu, _, bw, _ in GPUS},
            "flops_per_sample": flops,
        }
        rows.append(row)
        print(f"## {name} (paper preset, T = {steps})\n")
        print(f"bytes per sample: {estimate.bytes_per_sample / 1e6:.1f} MB "
              f"(x{estimate.safety_factor} safety on "
              f"{estimate.bytes_per_sample / estimate.safety_factor / 1e6:.1f} MB); "
              f"shared by the batch: {estimate.fixed_bytes / 1e6:.1f} MB")
        largest = sorted(parts.items(), key=lambda kv: -kv[1])[:6]
        print("largest parts: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in largest))
        print("largest batch (90% of the device): " + ", ".join(
            f"{gb} GB: {b}" for gb, b in row["largest_batch"].items())
            + f" (the default is capped at {memory.MAX_BATCH_SIZE})")
        print(f"memory traffic: {estimate.traffic / GB:.0f} GB per sample")
        print(f"bandwidth floor for {n:,} samples: " + ", ".join(
            f"{gpu} ({bw} GB/s) {n * estimate.seconds_per_sample(bw * GB):,.0f} s = "
            f"{row['hours'][gpu]:.1f} h" for gpu, _, bw, _ in GPUS))
        print(f"compute: {flops / 1e12:.2f} TFLOP per sample; fp32 floor for {n:,} "
                  "samples: " + ", ".join(f"{gpu} ({peak} TFLOP/s) "
                                          f"{n * flops / (peak * 1e12) / 3600:.1f} h"
                                          for gpu, _, _, peak in GPUS))
        if args.validate:
            validate_pairs = None if pairs is None else args.validate_pairs
            small = build_attack(model, shape, view, validate_pairs, steps=1, mine_steps=1)
            formula = estimate_attack_memory(small, shape)
            formula = formula.bytes_per_sample / formula.safety_factor
            measured = xla_bytes_per_sample(model, shape, view, validate_pairs)
            row["validation"] = {"pairs": validate_pairs, "formula": formula, "xla": measured}
            settings = "T = 1, 1 MINE step" + ("" if pairs is None else f", A = {validate_pairs}")
            print(f"validation ({settings}): XLA's buffers on this CPU "
                  f"{measured / 1e6:.1f} MB per sample, formula "
                  f"{formula / 1e6:.1f} MB (x{formula / measured:.2f})")
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
