"""Device memory of the MinMax and penalty attacks, and the batch size it allows.

Every sample of a batch has its own statistics network, Adam moments and search
state, so an attack's memory is a fixed part (the model's weights, the random
view's projections) plus a part per sample. :func:`estimate_attack_memory`
computes both from the model, the view and the settings;
:func:`default_batch_size` divides a GPU's free memory by the part per sample;
:func:`is_out_of_memory` tells the out-of-memory errors on which the attacks
halve their batch and retry (:class:`~uae_tf.attacks.base.Attack`).

The formula, in 4-byte words per sample (P: the statistics network's parameters;
K views of V values each; D values per sample; T iterations, each drawing ``m + 1``
permutations of the K views for its ``m`` MINE steps; A: the statistics network's
activations on the K views; for the criterion's model, evaluated E times per
sample (E = 2 x pairs for the contrastive criterion), M: the outputs of its layers
with a kernel (convolutions, dense layers) and L: its largest layer output; G: the
contrastive criterion's augmented views, 8 image-sized tensors each)::

    inputs     = 3P + K*V + T*(m+1)*K + 2D + reference   (what the loop is given)
    carried    = 3P + 4D + 2T            (the loop's copy of theta and both Adam
                                          moments; delta, x + delta, the best and
                                          the lowest-f iterates; the histories)
    MINE step  = P + 2A + K*V            (gradient of theta; activations and their
                                          gradients; views of x + delta)
    delta step = 2A + 2K*V + D + E*(M + 2L) + G
                                         (the same through the view; the criterion's
                                          model kept for its backward pass, with two
                                          gradients in flight; the gradient of delta)
    per sample = safety * (inputs + carried + max(MINE step, delta step))

The loop's inputs stay alive while it runs (the caller holds them) and XLA copies
the statistics networks into the loop, so the networks, both Adam moments and the
gradient are seven copies of theta: for the conv view of MNIST that is 99% of the
total. The backward pass needs only the input gradient of the criterion's model,
for which XLA keeps the convolutions' and dense layers' outputs and recomputes
normalizations and activations from them.

Checked against XLA's own buffer assignment of the compiled loop on a CPU (the
growth from batch 1 to 2, ``bench/bench_memory.py --validate``), the formula
before the safety factor is 1.00-1.27 times it: 1.01 for the conv autoencoder's
conv view on MNIST, 1.27 for its random view (XLA fuses the statistics network's
activations more than counted), 1.11 for SimCLR's ResNet-18 stem on CIFAR-10 with
50 pairs. ``safety = 1.25`` covers what XLA's GPU backend may lay out otherwise
(its fusions and cuDNN's choices differ); a batch that still runs out of memory is
halved by the attack.

Memory traffic per sample (the bandwidth floor of ``bench/``) counts, for each of
the ``T*m`` Adam updates, 11 passes over theta (read forward and twice backward,
gradient written, a fused Adam update reading theta, gradient and both moments and
writing three) plus the activations written, read and differentiated (4A) and the
views read (2KV); each delta step adds 3 passes over theta, 4A, 4KV and 5E*M (the
criterion's model forward and backward, and forward again for f).
"""

import dataclasses
import math
import os
import re
import shutil
import subprocess

import keras
import numpy as np
import tensorflow as tf

from uae_tf import similarity as similarity_lib

BYTES_PER_VALUE = 4
SAFETY_FACTOR = 1.25
USABLE_FRACTION = 0.9
MAX_BATCH_SIZE = 512
UNKNOWN_GPU_BATCH_SIZE = 32
# On a CPU: statistics networks (with both Adam moments) of at most this many bytes
# per sample stay in the caches and batch well (the random view's 1.7 MB: a batch of
# 8 took 0.72x the time per sample of batch 1, of 16 about half); larger ones (the
# conv view's 146 MB) stream through memory, where a batch of 4-8 runs at 0.86-1.10x
# the time per sample of batch 1 (bench/README.md): no gain, so batch 1, the least
# memory.
CPU_CACHED_NETWORK_BYTES = 16 * 2**20
CPU_CACHED_BATCH_SIZE = 16
GPU_MEMORY_ENV = "UAE_GPU_MEMORY"
# Image-sized tensors per augmented view of the contrastive criterion (crop, four
# colour-jitter steps, grayscale, noise, clip), forward values and gradients.
_AUGMENTATION_TENSORS = 8
_OOM_MARKERS = ("out of memory", "resource exhausted", "resource_exhausted",
                "oom when allocating", "dst tensor is not initialized")


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """An attack's device memory: the parts per sample and the fixed part, in bytes.

    Attributes:
        inputs: Per-sample bytes of what the compiled loop is given (samples,
            delta_0, the criterion's reference, the statistics networks, their Adam
            moments, the views of x, the permutations), by name.
        carried: Per-sample bytes the loop carries besides its inputs, by name.
        mine_step: Per-sample temporaries of one MINE step, by name.
        delta_step: Per-sample temporaries of one delta step, by name.
        fixed: Bytes shared by the whole batch (model weights, random projections).
        traffic: Bytes a sample moves through memory over the whole attack.
        safety_factor: Factor on the per-sample total for the backend's temporaries.

    Example:

    >>> estimate = estimate_attack_memory(MinMaxAttack(criterion, **get_preset("paper")))
    >>> estimate.bytes_per_sample / 1e6, estimate.largest_batch(40e9)
    """

    inputs: dict
    carried: dict
    mine_step: dict
    delta_step: dict
    fixed: dict
    traffic: int
    safety_factor: float = SAFETY_FACTOR

    @property
    def bytes_per_sample(self):
        """Device bytes each sample of a batch adds, safety factor included."""
        steps = max(sum(self.mine_step.values()), sum(self.delta_step.values()))
        total = sum(self.inputs.values()) + sum(self.carried.values()) + steps
        return int(math.ceil(self.safety_factor * total))

    @property
    def fixed_bytes(self):
        """Device bytes the batch shares, whatever its size."""
        return int(sum(self.fixed.values()))

    def largest_batch(self, device_bytes):
        """The most samples that fit in ``device_bytes`` of device memory (may be 0)."""
        return max(0, int((device_bytes - self.fixed_bytes) // self.bytes_per_sample))

    def seconds_per_sample(self, bandwidth):
        """The memory-bandwidth floor: ``traffic / bandwidth`` (bytes per second)."""
        return self.traffic / bandwidth


def estimate_attack_memory(attack, input_shape=None):
    """Computes the device memory of a MinMax or penalty attack (see the module's formula).

    Builds the attack's similarity for ``input_shape`` if it is not built (as the
    attack's first call does); nothing is run but the view on one zero sample.

    Args:
        attack: A :class:`~uae_tf.attacks.MinMaxAttack` or
            :class:`~uae_tf.attacks.PenaltyAttack`.
        input_shape: Shape of one sample; default the criterion model's input shape.

    Returns:
        A :class:`MemoryEstimate`.

    Raises:
        ValueError: if ``input_shape`` is not given and the model does not say it.

    Example:

    >>> attack = MinMaxAttack(ReconstructionCriterion(conv_ae), **get_preset("paper"))
    >>> estimate_attack_memory(attack).bytes_per_sample  # about 0.42 GB
    """
    criterion, step = attack.criterion, attack._step
    if input_shape is None:
        model = criterion.model
        if model is None or not getattr(model, "inputs", None):
            raise ValueError(
                "input_shape is needed: the criterion's model does not give its input shape."
            )
        input_shape = model.inputs[0].shape[1:]
    input_shape = tuple(int(d) for d in input_shape)
    attack._build(input_shape)
    sample = int(np.prod(input_shape))
    steps = attack.steps
    kept, largest, evaluations, extra = _criterion_activations(criterion, sample)
    model_values = kept + 2 * largest
    criterion_values = evaluations * model_values + extra
    inputs = {"x": sample, "delta": sample,
              "reference": _reference_values(criterion, input_shape)}
    carried = {"samples (delta, x + delta, best, lowest f)": 4 * sample,
               "histories": 2 * steps}
    mine_step, delta_step = {}, {"gradient of delta": sample, "criterion": criterion_values}
    fixed = {"model weights": _weights(criterion)}
    similarity = step.similarity
    traffic_per_iteration = 5 * evaluations * kept
    traffic_per_update = 0
    if isinstance(similarity, similarity_lib.MINESimilarity):
        network = similarity.network
        views = similarity.built_view(tf.zeros((1, *input_shape)))
        k, view_values = int(views.shape[1]), int(np.prod(views.shape[1:]))
        p = network.num_parameters()
        a = k * _network_activations(network)
        draws = steps * similarity.draws_per_iteration
        inputs.update({"statistics networks": p, "Adam moments": 2 * p,
                       "views of x": view_values, "permutations": draws * k})
        carried["statistics networks and Adam moments"] = 3 * p
        mine_step = {"gradient": p, "activations and their gradients": 2 * a,
                     "views of x + delta": view_values}
        delta_step.update({"activations and their gradients": 2 * a,
                           "views of x + delta and their gradient": 2 * view_values})
        if hasattr(similarity.built_view, "projections"):
            fixed["random projections"] = int(np.prod(similarity.built_view.projections.shape))
        traffic_per_update = 11 * p + 4 * a + 2 * view_values
        traffic_per_iteration += 3 * p + 4 * a + 4 * view_values
        updates = steps * similarity.steps_per_iteration
    else:
        draws = steps * similarity.draws_per_iteration
        state = _state_values(similarity, input_shape, draws)
        inputs["similarity state"] = state
        carried["similarity state"] = state
        if isinstance(similarity, similarity_lib.L2Similarity):
            delta_step["similarity model"] = model_values
            traffic_per_iteration += 5 * kept
        updates = 0
    traffic = updates * traffic_per_update + steps * traffic_per_iteration
    return MemoryEstimate(
        inputs=_bytes(inputs), carried=_bytes(carried), mine_step=_bytes(mine_step),
        delta_step=_bytes(delta_step), fixed=_bytes(fixed),
        traffic=BYTES_PER_VALUE * getattr(attack, "search_steps", 1) * int(traffic),
    )


def _bytes(values):
    """``{name: values}`` as ``{name: bytes}``."""
    return {name: BYTES_PER_VALUE * int(v) for name, v in values.items()}


def _network_activations(network):
    """Values a statistics network computes on one view (both branches, both terms)."""
    per_branch = network.hidden_units + network.features
    if network.kind == "conv":
        h, w, _ = network.view_shape
        per_branch += 4 * (h - 1) * (w - 1) + (h - 1) * (w - 1) * network.conv_filters
    # bx + by, its ReLU and the shuffled branch for the joint and the marginal term.
    return 2 * per_branch + 5 * network.features


def _criterion_activations(criterion, sample):
    """``(kept, largest, evaluations, other)``: values per evaluation of the criterion's
    model kept for the backward pass and of its largest layer output, evaluations per
    sample, and other values per sample (the contrastive criterion's augmentations)."""
    from uae_tf.criteria import ContrastiveCriterion

    model = getattr(criterion, "simclr", criterion.model)
    outputs = [] if model is None else list(_layer_outputs(model))
    kept = sum(values for values, has_kernel in outputs if has_kernel)
    largest = max((values for values, _ in outputs), default=0)
    if isinstance(criterion, ContrastiveCriterion):
        views = 2 * criterion.pairs
        return kept, largest, views, _AUGMENTATION_TENSORS * views * sample
    return kept, largest, 1, 0


def _layer_outputs(model):
    """Yields ``(one sample's output values, whether the layer has a kernel)`` for the
    model's layers, nested models' layers included."""
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            yield from _layer_outputs(layer)
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue  # a layer of a subclassed model, never called symbolically
        yield int(np.prod([d for d in shape[1:] if d is not None])), hasattr(layer, "kernel")


def _weights(criterion):
    model = getattr(criterion, "simclr", criterion.model)
    return 0 if model is None else int(model.count_params())


def _reference_values(criterion, input_shape):
    """Per-sample values of ``criterion.reference``, from its traced output shapes."""
    labels = tf.TensorSpec([None], tf.int32) if criterion.needs_labels else None
    function = tf.function(
        lambda x, labels, seeds: criterion.reference(x, labels, seeds))
    concrete = function.get_concrete_function(
        tf.TensorSpec([None, *input_shape]), labels, tf.TensorSpec([None, 2], tf.int32))
    return _values_per_sample(concrete.structured_outputs) + (1 if labels is not None else 0)


def _state_values(similarity, input_shape, num_draws):
    """Per-sample values of a similarity's initial state, from its traced shapes."""
    function = tf.function(lambda x, seeds: similarity.initial_state(x, seeds, num_draws))
    concrete = function.get_concrete_function(
        tf.TensorSpec([None, *input_shape]), tf.TensorSpec([None, 2], tf.int32))
    return _values_per_sample(concrete.structured_outputs)


def _values_per_sample(structure):
    """Values per sample of a nest of traced tensors with a batch axis of unknown size.

    Tensors without an unknown axis are shared by the batch and not counted.
    """
    total = 0
    for tensor in tf.nest.flatten(structure):
        dims = tensor.shape.as_list() if tensor.shape.rank else []
        if None in dims:
            total += int(np.prod([d for d in dims if d is not None]))
    return total


def parse_bytes(text):
    """Bytes in ``"40GB"``, ``"16GiB"``, ``"512MB"``, ``"4e10"`` or ``"40000000000"``.

    Raises:
        ValueError: naming the text when it is none of these.
    """
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][0-9]+)?)\s*([KMGT]?)(i?)B?\s*", str(text))
    if match is None:
        raise ValueError(
            f"{GPU_MEMORY_ENV} must be bytes such as 40GB, 16GiB or 4e10. Received: {text!r}"
        )
    number, prefix, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " KMGT".index(prefix or " "))


def gpu_memory_budget():
    """Bytes of the first visible GPU's memory an attack may use now, or None if unknown.

    In order:

    1. ``UAE_GPU_MEMORY`` (``"40GB"``, ``"16GiB"``, bytes): the memory of the
       device the attacks may take, as given (for a shared GPU, or where
       ``nvidia-smi`` is missing).
    2. ``nvidia-smi`` on the first GPU of ``CUDA_VISIBLE_DEVICES`` (else GPU 0):
       90% of its free memory (the rest for the CUDA context, cuBLAS and cuDNN
       workspaces and fragmentation). Once TensorFlow has allocated on the GPU
       its allocator holds most of the device, which ``nvidia-smi`` reports as
       used; the free memory is then taken as the device's total, assuming the
       GPU is this process's (one generation per GPU, as the engines run).

    From either, TensorFlow's bytes in use on ``GPU:0`` (the model's weights, the
    random view's projections) are subtracted.

    Returns:
        Bytes, or ``None`` when neither says (no ``nvidia-smi``, or it failed).
    """
    current, peak = _tensorflow_gpu_memory()
    override = os.environ.get(GPU_MEMORY_ENV)
    if override:
        return max(0, parse_bytes(override) - current)
    queried = _query_nvidia_smi()
    if queried is None:
        return None
    total, used = queried
    free = total if peak > 0 else total - used
    return max(0, int(USABLE_FRACTION * free) - current)


def _tensorflow_gpu_memory():
    """``(bytes in use, peak bytes)`` of TensorFlow's allocator on GPU:0; zeros if none."""
    try:
        info = tf.config.experimental.get_memory_info("GPU:0")
    except (ValueError, RuntimeError):
        return 0, 0
    return int(info["current"]), int(info["peak"])


def _query_nvidia_smi():
    """``(total, used)`` bytes of the first visible GPU from ``nvidia-smi``, or None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
    try:
        done = subprocess.run(
            [smi, "--query-gpu=memory.total,memory.used", "--format=csv,noheader,nounits",
             "-i", visible], capture_output=True, text=True, timeout=30, check=True)
        total, used = (float(v) for v in done.stdout.strip().splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    mib = 1024 * 1024
    return int(total * mib), int(used * mib)


def default_batch_size(estimate=None):
    """Samples attacked at once when the caller does not say.

    On a CPU, 16 when the per-sample statistics networks and their Adam moments fit
    in ``CPU_CACHED_NETWORK_BYTES`` (they stay in the caches and batches pay), else 1
    (streamed networks run no faster per sample in batches there, and batch 1 needs
    the least memory; see ``bench/README.md``). On a GPU, as many samples as
    :func:`gpu_memory_budget` holds at ``estimate.bytes_per_sample`` each, clamped
    to [1, 512]; 32 when the budget or the estimate is unknown.

    Args:
        estimate: The attack's :class:`MemoryEstimate`, a function returning it
            or ``None``.
    """
    if callable(estimate):
        estimate = estimate()
    if not tf.config.list_physical_devices("GPU"):
        networks = 0 if estimate is None else (
            estimate.inputs.get("statistics networks", 0) + estimate.inputs.get("Adam moments", 0))
        return CPU_CACHED_BATCH_SIZE if 0 < networks <= CPU_CACHED_NETWORK_BYTES else 1
    budget = gpu_memory_budget()
    if estimate is None or budget is None:
        return UNKNOWN_GPU_BATCH_SIZE
    return int(np.clip(budget // estimate.bytes_per_sample, 1, MAX_BATCH_SIZE))


def is_out_of_memory(error):
    """Whether ``error`` is a device running out of memory.

    TensorFlow raises ``ResourceExhaustedError`` (XLA's "Out of memory while
    trying to allocate", the allocator's "OOM when allocating"); a failed copy
    to the GPU or a cuBLAS or cuDNN allocation can surface as an
    ``InternalError`` whose message says so.
    """
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return True
    if isinstance(error, (tf.errors.InternalError, tf.errors.UnknownError)):
        message = str(error).lower()
        return any(marker in message for marker in _OOM_MARKERS)
    return False
