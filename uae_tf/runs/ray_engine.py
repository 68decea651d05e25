"""The Ray engine: the chunks of a run attacked by Ray Data actors, on one machine or many.

:func:`attack_on_ray` does what :func:`uae_tf.runs.attack_in_chunks` does, with the
same pieces: the driver opens the run and lists the chunks still to attack
(:func:`~uae_tf.runs.pending_chunks`); a ``ray.data`` pipeline over those chunks
hands them by ``map_batches`` to a pool of actors, each of which builds the attack
once and writes each chunk it is given (:func:`~uae_tf.runs.attack_chunk`); the
driver then merges the chunk files (:func:`~uae_tf.runs.merge_chunks`). The chunk
files are those the local engine writes, so the results are the same (bit for bit
when an actor runs TensorFlow on as many threads as the local process; with fewer,
some reductions split differently and round differently), and a run may be resumed
by either engine.

Faults: Ray Data restarts an actor that dies and retries the chunks it was
attacking on the restarted actor (its defaults: no limit on either). A chunk file
is named by its first sample and written atomically, and a chunk whose file is
already there is not attacked again, so a retry, a rerun after the driver died, or
two runs at once never lose or duplicate a sample.

Ray is an optional dependency (``pip install -e '.[ray]'``), imported only here
and only when the engine runs. The workers need uae-tf installed and, on a cluster
of several machines, the run directory on a filesystem they all share.
"""

import contextlib
import dataclasses
import json
import logging
import numbers
import os
import re
from pathlib import Path

import keras
import numpy as np

from uae_tf.runs._barrier import BARRIER_ENV
from uae_tf.runs.chunks import attack_chunk, merge_chunks, pending_chunks
from uae_tf.runs.config import attack_config

INSTALL_HINT = "pip install -e '.[ray]'"
# Environment switches the actors must share with the driver: TensorFlow's logging,
# oneDNN (it changes float rounding, so results equal the local engine's only with
# the same setting), the GPU memory budget of the default batch and the tests' pause
# of the chunk engines (uae_tf/runs/_barrier.py).
FORWARDED_ENV = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "UAE_GPU_MEMORY", BARRIER_ENV)


class RayUnavailableError(ImportError):
    """Raised when the Ray engine is asked for and Ray is not installed."""


class RayRunError(RuntimeError):
    """Raised when a Ray run stops on an error in a worker; its chunks are kept."""


def require_ray():
    """Imports and returns the ``ray`` module, or raises a :class:`RayUnavailableError`.

    Raises:
        RayUnavailableError: if ``ray`` (with Ray Data) cannot be imported; the
            message says how to install it.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise RayUnavailableError(
            f"The Ray engine needs Ray, which is not installed ({error}). Install it "
            f"with: {INSTALL_HINT}   (or: pip install 'uae-tf[ray]')"
        ) from error
    return ray


@dataclasses.dataclass(frozen=True)
class Workers:
    """The actor pool of a Ray run: how many actors, and what each reserves.

    Attributes:
        count: Number of actors, each building the attack once.
        num_cpus: CPU cores each actor reserves; on CPU actors also the threads
            TensorFlow uses in it.
        num_gpus: GPUs each actor reserves (a fraction shares a GPU); 0 for CPU
            actors.
    """

    count: int
    num_cpus: int
    num_gpus: float


def runtime_env(environ=None):
    """The Ray ``runtime_env`` that gives the actors the driver's ``FORWARDED_ENV``.

    Ray's workers do not inherit the driver's environment, so without it an actor
    would log what the driver silences and could round differently (oneDNN).

    Args:
        environ: The driver's environment (default ``os.environ``).

    Returns:
        ``{"env_vars": {...}}`` of the switches that are set, or ``None``.
    """
    environ = os.environ if environ is None else environ
    env_vars = {name: environ[name] for name in FORWARDED_ENV if name in environ}
    return {"env_vars": env_vars} if env_vars else None


def connect(address=None, workers=None, gpus_per_worker=None):
    """Connects to Ray (unless connected) and sizes the actor pool to its resources.

    Args:
        address: Where the Ray cluster is, as ``ray.init(address=...)`` takes it
            (``"auto"``: the cluster ``ray start`` runs on this machine; a
            ``host:port``...). Default: ``$RAY_ADDRESS`` if set, else a new local
            Ray instance on this machine's cores and GPUs. Unused when Ray is
            already initialized in this process: that cluster is used. A new
            connection forwards the driver's ``FORWARDED_ENV`` to the actors
            (see :func:`runtime_env`).
        workers: Number of actors. Default: one per GPU (``gpus // gpus_per_worker``)
            when the actors use GPUs, else one per core.
        gpus_per_worker: GPUs each actor reserves (``0.5``: two actors per GPU; 0:
            CPU actors on a cluster with GPUs). Default: 1 if the cluster has GPUs,
            else 0.

    Returns:
        The :class:`Workers`: on CPUs, each actor reserves ``cores // workers`` cores
        (one core group each); on GPUs, ``gpus_per_worker`` GPUs and one core.

    Raises:
        RayUnavailableError: if Ray is not installed.
        ValueError: for a bad ``workers`` or ``gpus_per_worker``, or one the
            cluster's resources cannot hold, naming the value.
    """
    if workers is not None and (isinstance(workers, bool)
                                or not isinstance(workers, numbers.Integral) or workers < 1):
        raise ValueError(f"workers must be a positive int. Received: workers={workers!r}")
    if gpus_per_worker is not None and (
            isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, numbers.Real)
            or not 0 <= gpus_per_worker < float("inf")):
        raise ValueError("gpus_per_worker must be a number >= 0. "
                         f"Received: gpus_per_worker={gpus_per_worker!r}")
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env())
    resources = ray.cluster_resources()
    cores, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1 if gpus >= 1 else 0
    if gpus_per_worker > 0:
        count = int(workers or gpus // gpus_per_worker)
        if count < 1 or count * gpus_per_worker > gpus:
            raise ValueError(
                f"The Ray cluster has {gpus:g} GPUs, too few for workers={workers!r} with "
                f"gpus_per_worker={gpus_per_worker!r}; use fewer, or gpus_per_worker=0 for "
                "CPU workers."
            )
        return Workers(count, num_cpus=1, num_gpus=float(gpus_per_worker))
    count = int(workers or cores)
    if not 1 <= count <= cores:
        raise ValueError(
            f"The Ray cluster has {cores} CPU cores, too few for workers={count} (each "
            "worker needs at least one)."
        )
    return Workers(count, num_cpus=cores // count, num_gpus=0.0)


def attack_on_ray(make_attack, x, out, config, chunk_size, workers, indices=None, labels=None,
                  verbose=False, positions=None, expected_attack_config=None):
    """Runs the attack that ``make_attack()`` builds on ``x``, chunk by chunk, on Ray actors.

    Takes what :func:`uae_tf.runs.attack_in_chunks` takes and returns what it
    returns, except that the attack is built by each actor (once, in its
    ``__init__``) from ``make_attack``, a picklable callable such as a
    ``functools.partial`` of a module-level function over a model file's bytes and
    settings: a live Keras model does not travel to other processes.

    Args:
        make_attack: Picklable callable with no arguments that returns the attack,
            ``attack(x, labels=..., indices=...) -> AttackResult``; called once per
            actor, on the worker.
        x: ``[N, ...]`` samples, put once in Ray's object store for the actors.
        out: The run directory; on several machines, on a filesystem all share.
        config: JSON-serializable facts identifying the run (``out/config.json``).
        chunk_size: Samples per chunk file; does not change the results.
        workers: The :class:`Workers` of :func:`connect` (Ray must be connected).
        indices: ``[N]`` dataset rows of the samples (their seeds); default
            ``range(N)``.
        labels: ``[N]`` labels for supervised attacks, or ``None``.
        verbose: Show a progress bar, and Ray Data's execution logs.
        positions: The positions in ``x`` to attack (a shard); default all.
        expected_attack_config: If given, the :func:`uae_tf.runs.attack_config`
            every actor's attack must have: an actor whose attack differs (another
            uae-tf version on a worker...) fails instead of writing chunks.

    Returns:
        ``(result, seconds)`` as :func:`uae_tf.runs.attack_in_chunks` returns them.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of another config.
        ValueError: if a chunk file is corrupt or not of this run.
        RayRunError: if an actor fails (its attack differs from
            ``expected_attack_config``, uae-tf is missing on a worker...), naming
            the worker's error; the chunks written so far are kept.
    """
    ray = require_ray()
    out = Path(out).resolve()  # Ray workers do not share the driver's working directory.
    indices = np.arange(len(x)) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    chunks = pending_chunks(out, config, chunk_size, indices, positions)
    if chunks:
        # Referenced until the pipeline ends: a restarted actor reads it again.
        data = ray.put({"x": x, "indices": indices, "labels": labels})
        pipeline = ray.data.from_items([{"positions": c} for c in chunks],
                                       override_num_blocks=len(chunks))
        attacked = pipeline.map_batches(
            _ChunkWorker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers.count),
            num_cpus=workers.num_cpus,
            num_gpus=workers.num_gpus or None,
            fn_constructor_kwargs={
                "make_attack": make_attack,
                "data": [data],  # In a list: the actor gets the reference and reads it.
                "out": str(out),
                "workers": workers,
                "expected_attack_config": expected_attack_config,
            },
        )
        try:
            with _quiet_ray_data(ray, verbose):
                _consume(attacked, sum(len(c) for c in chunks), verbose)
        except ray.exceptions.RayError as error:
            raise RayRunError(
                f"The Ray run stopped on an error in a worker: {_worker_error(error)}. The "
                f"chunks finished are kept in {out}: rerun to resume."
            ) from error
    return merge_chunks(out, indices)


def _consume(attacked, total, verbose):
    """Runs the pipeline to its end, showing the samples attacked."""
    progbar = keras.utils.Progbar(total, unit_name="sample") if verbose else None
    samples = 0
    for batch in attacked.iter_batches(batch_size=None, batch_format="numpy"):
        samples += int(np.sum(batch["samples"]))
        if progbar is not None:
            progbar.update(samples)


@contextlib.contextmanager
def _quiet_ray_data(ray, verbose):
    """Ray Data's own progress bars off (ours is shown), and its INFO logs unless verbose."""
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.print_on_execution_start
    logger = logging.getLogger("ray.data")
    level = logger.level
    context.enable_progress_bars = False
    context.print_on_execution_start = verbose
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        context.enable_progress_bars, context.print_on_execution_start = saved
        logger.setLevel(level)


# A line of a Python traceback naming the exception: "ValueError: message".
_ERROR_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception): .*")


def _worker_error(error):
    """The worker's own exception in Ray's report ``error`` (its last one not Ray's)."""
    lines = [line for line in str(error).splitlines()
             if _ERROR_LINE.fullmatch(line) and not line.startswith("ray.")]
    return lines[-1] if lines else type(error).__name__


class _ChunkWorker:
    """A Ray Data actor: builds the attack once, then attacks each chunk it is handed."""

    def __init__(self, make_attack, data, out, workers, expected_attack_config):
        import ray

        _configure_tensorflow(workers)
        self.attack = make_attack()
        if expected_attack_config is not None:
            _check_same_attack(attack_config(self.attack), expected_attack_config)
        arrays = ray.get(data[0])
        self.x, self.indices, self.labels = arrays["x"], arrays["indices"], arrays["labels"]
        self.out = out

    def __call__(self, batch):
        samples = []
        for positions in batch["positions"]:
            attack_chunk(self.attack, self.x, positions, self.out, indices=self.indices,
                         labels=self.labels)
            samples.append(len(positions))
        return {"samples": np.asarray(samples, np.int64)}


def _configure_tensorflow(workers):
    """Sizes TensorFlow to the actor's reservation, before it runs anything."""
    import tensorflow as tf

    if workers.num_gpus == 0:
        # One core group per actor: TensorFlow would otherwise use every core of the
        # machine in each actor.
        tf.config.threading.set_intra_op_parallelism_threads(workers.num_cpus)
        tf.config.threading.set_inter_op_parallelism_threads(workers.num_cpus)
    elif workers.num_gpus < 1:
        # Actors sharing a GPU: TensorFlow would otherwise take all its memory.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)


def _check_same_attack(actual, expected):
    """Raises a ValueError naming the settings in which an actor's attack differs."""
    actual, expected = json.loads(json.dumps(actual)), json.loads(json.dumps(expected))
    if actual != expected:
        keys = sorted(k for k in set(actual) | set(expected) if actual.get(k) != expected.get(k))
        raise ValueError(
            "A Ray worker built another attack than the driver's (settings "
            f"{', '.join(keys)} differ): install the same uae-tf on every worker."
        )
