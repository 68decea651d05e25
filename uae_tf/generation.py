"""UAE generation over whole datasets: batched, written to disk as it goes, resumable.

:func:`generate` attacks every sample of an array with the MinMax attack (or makes
one of the paper's baseline augmentations, ``method="l2"`` or ``"gaussian"``, or
the ``"start"`` control, the attack's delta_0 alone) and
keeps its results in a directory::

    OUT/config.json          what produced the results (refused if it changes)
    OUT/chunks/NNNNNNNN.npz  one file per finished batch, written atomically
    OUT/uae.npz              all results, in dataset order (when complete)
                             (the chunks and uae.npz carry the run's identity, the
                             sha256 of its config: see :mod:`uae_tf.runs.chunks`)
    OUT/summary.json         n, asr, mean_mi, seconds, samples_per_second, config, versions,
                             execution (XLA or not, MINE kernel)
                             (seconds: the attack time summed over the chunks, so
                             with shards or Ray workers at once, compute, not wall time)

A run that is killed loses at most the batch in flight: run it again with the same
arguments and it attacks only the samples no chunk holds (the chunks are
:func:`uae_tf.runs.attack_in_chunks`'s). Each sample's randomness depends on
``(seed, index)`` only, so the resumed run ends with what an uninterrupted run
gives, whatever the batch size. For the same reason a run splits into shards
(``shard=(i, n)``, ``uae generate --shard I/N``) that run anywhere at once into one
directory and add up to what one process gives.

Engines: ``engine="local"`` (the default) attacks in this process;
``engine="ray"`` (``uae generate --engine ray``) hands the same chunks to Ray Data
actors on a Ray cluster (:mod:`uae_tf.runs.ray_engine`), each building the model
and attack once, and writes the same files: the same results (bit for bit when the
actors run TensorFlow on as many threads as this process; otherwise up to float
rounding), resumable by either engine.

:func:`generate` returns, and :func:`load_results` loads, a
:class:`GenerationResults`: the arrays and summary of a finished generation, read
once and passed to what uses it.
"""

import dataclasses
import functools
import tempfile
from pathlib import Path

import keras
import numpy as np

from uae_tf import _validation
from uae_tf._io import read_npz, write_json_atomic, write_npz_atomic
from uae_tf.attacks import GaussianAugmentation, MinMaxAttack, StartOnly
from uae_tf.criteria import ReconstructionCriterion
from uae_tf.presets import get_preset
from uae_tf.runs import (
    IDENTITY_KEY,
    array_sha256,
    attack_config,
    attack_in_chunks,
    config_sha256,
    file_sha256,
    ray_engine,
    read_json,
    shard_positions,
    versions,
)

METHODS = ("mine", "l2", "gaussian", "start")
ENGINES = ("local", "ray")
RESULTS_FILE = "uae.npz"
SUMMARY_FILE = "summary.json"
_ARRAYS = ("x_adv", "success", "mi", "f", "index", "mi_history", "c_history")


@dataclasses.dataclass(frozen=True, eq=False)
class GenerationResults:
    """A finished generation, loaded once: its per-sample arrays and what made them.

    Returned by :func:`generate` and :func:`load_results`, and passed down to what
    uses it (:meth:`uae_tf.UAESequence.from_results`, :func:`uae_tf.retrain`), so a
    results directory is read and validated once.

    Attributes:
        x_adv: ``[N, ...]`` the UAEs (or GA samples), in dataset order.
        success: ``[N]`` bool, whether each is a UAE.
        mi: ``[N]`` MINE estimate at the returned example (NaN for GA).
        f: ``[N]`` criterion value f_x at the returned example.
        index: ``[N]`` dataset rows of the samples (their seeds).
        mi_history: ``[N, T]`` MI after each attack iteration.
        c_history: ``[N, T]`` the constant c after each attack iteration.
        summary: The ``summary.json`` dict (``n``, ``asr``, ``mean_mi``,
            ``seconds``, ``config``, ``versions``...).
        path: The results directory.
        sha256: Hex sha256 of its ``uae.npz``, identifying these results.
    """

    x_adv: np.ndarray
    success: np.ndarray
    mi: np.ndarray
    f: np.ndarray
    index: np.ndarray
    mi_history: np.ndarray
    c_history: np.ndarray
    summary: dict
    path: Path
    sha256: str

    @property
    def config(self):
        """The config that made the results (``method``, ``preset``, ``attack``...)."""
        return self.summary["config"]

    @property
    def method(self):
        """``"mine"``, ``"l2"``, ``"gaussian"`` or ``"start"``."""
        return self.config["method"]

    @property
    def attack_success_rate(self):
        """Fraction of samples whose result is a UAE (the paper's ASR)."""
        return self.summary["asr"]

    def __len__(self):
        return len(self.success)

    def __repr__(self):
        return (f"GenerationResults(path={str(self.path)!r}, method={self.method!r}, "
                f"n={len(self)}, asr={self.attack_success_rate:.4g})")


def generate(
    model,
    x,
    out,
    indices=None,
    method="mine",
    preset="paper",
    view="auto",
    batch_size=None,
    seed=0,
    verbose=True,
    config=None,
    criterion=None,
    shard=None,
    engine="local",
    ray_address=None,
    workers=None,
    gpus_per_worker=None,
    **attack_kwargs,
):
    """Generates one UAE (or baseline augmentation) per sample of ``x``, resumably.

    Args:
        model: The autoencoder Phi (a Keras model), attacked with its
            reconstruction criterion.
        x: ``[N, ...]`` samples in [0, 1].
        out: Results directory (created if missing).
        indices: ``[N]`` dataset rows of the samples (stored in ``uae.npz`` as
            ``index`` and used as the samples' seeds); default ``range(N)``.
        method: ``"mine"`` (MINE-UAE, the method), ``"l2"`` (the L2-UAE baseline:
            MinMax maximizing the reconstruction loss) or ``"gaussian"`` (GA:
            ``x + N(0, sigma^2)`` clipped; pass ``sigma``, default 0.01) or
            ``"start"`` (the attack's start ``x + delta_0`` with no iteration, see
            :class:`uae_tf.attacks.StartOnly`; pass ``initial_perturbation``).
        preset: ``"paper"`` or ``"fast"`` (see :mod:`uae_tf.presets`); unused by
            ``"gaussian"``.
        view: ``"auto"``, ``"conv"`` or ``"random"`` (``"mine"`` only).
        batch_size: Samples attacked at once, and per chunk file; does not change
            the results. Default for ``"mine"`` and ``"l2"``: on a CPU 1 (16 for the
            random view's cache-sized networks); on a GPU as
            many as its free memory holds (see
            :func:`uae_tf.attacks.estimate_attack_memory`), up to 512; with
            ``engine="ray"``, whose driver cannot see the workers' memory, 32 when
            the workers use GPUs, else 1. 256 for ``"gaussian"`` and ``"start"``.
            A batch that runs out of memory is halved and retried; the chunk in
            flight is then made in smaller batches, and finished chunks stay.
        seed: Run seed, an integer in ``[0, 2**31)``.
        verbose: Show a progress bar.
        config: Extra JSON-serializable facts identifying the run (dataset, split,
            model file hash...), stored in and checked against ``config.json``.
        criterion: The attack's criterion; default ``ReconstructionCriterion(model)``
            (e.g. :class:`uae_tf.criteria.ContrastiveCriterion` for SimCLR).
            ``engine="local"`` only.
        shard: ``(i, n)`` to attack only shard ``i`` of ``n`` (every n-th sample
            from the i-th, :func:`uae_tf.runs.shard_positions`) into ``out``. Shards
            run anywhere, in any order, at the same time, and resume like a whole
            run; the one that finds every sample done writes ``uae.npz`` and
            ``summary.json``, exactly what an unsharded run gives. Default: all.
        engine: ``"local"`` (attack in this process) or ``"ray"`` (Ray Data actors
            on a Ray cluster, :mod:`uae_tf.runs.ray_engine`; needs
            ``pip install -e '.[ray]'``). Both write the same chunk files and give
            the same results, bit for bit when the actors run TensorFlow on as many
            threads as this process (else up to float rounding of reductions split
            differently); a run started by one resumes with the other.
            With ``"ray"``, the model goes to the workers as the bytes of a
            ``.keras`` file that this call saves (so workers need no access to
            your files), each actor loads it and builds the attack once, and the
            workers write their chunks into ``out`` themselves: on a cluster of
            several machines ``out`` must be on a filesystem they share.
        ray_address: ``engine="ray"``: the cluster, as ``ray.init(address=...)``
            takes it (``"auto"``: the one ``ray start`` runs here). Default: a new
            local Ray instance (or ``$RAY_ADDRESS``). Ignored when Ray is already
            initialized in this process; a Ray instance this call starts stays up
            for later calls (``ray.shutdown()`` ends it).
        workers: ``engine="ray"``: number of actors. Default: one per GPU, or
            without GPUs one per core (see :func:`uae_tf.runs.ray_engine.connect`).
        gpus_per_worker: ``engine="ray"``: GPUs per actor (0.5 shares a GPU
            between two; 0 forces CPU actors). Default: 1 if the cluster has GPUs,
            else 0.
        **attack_kwargs: Overrides of the preset's attack settings (e.g.
            ``initial_perturbation="glorot"``; ``similarity={"mine_steps": 2}``
            overrides entries of the preset's similarity), ``sigma`` for
            ``"gaussian"``, or ``initial_perturbation`` and ``epsilon`` for
            ``"start"``.

    Returns:
        The :class:`GenerationResults`; its ``summary`` is the dict written to
        ``out/summary.json``, whose ``asr`` is the fraction of samples whose result
        is a UAE (for GA: by chance). ``None`` when ``shard`` is given and other
        shards' samples are not done yet.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of other settings.
        ValueError: for an unknown ``method`` or ``engine``, bad ``x``/``indices``,
            or Ray settings the cluster cannot hold.
        uae_tf.runs.ray_engine.RayUnavailableError: for ``engine="ray"`` without Ray
            installed.

    Example:

    >>> results = uae_tf.generate(phi, x[:64], "runs/uae", preset="fast",
    ...                           engine="ray", workers=2)  # doctest: +SKIP
    """
    x = _validation.check_images(x, "x")
    seed = _validation.check_seed(seed)
    n = len(x)
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) != n:
        raise ValueError(f"indices must have {n} entries. Received {len(indices)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    shard = None if shard is None else _check_shard(shard)
    pool = _check_engine(engine, criterion, ray_address, workers, gpus_per_worker)
    if batch_size is None:
        batch_size = _default_batch_size(method, pool)
    settings = {"method": method, "preset": preset, "view": view, "batch_size": batch_size,
                "seed": seed, "attack_kwargs": attack_kwargs}
    attack, preset = _make_attack(model, criterion, **settings)
    # Left to the attack (a local MinMax run): sized to this device's memory.
    settings["batch_size"] = batch_size = attack.resolve_batch_size(x.shape[1:])
    run_config = {
        **(config or {}),
        "method": method,
        "preset": preset,
        "n": n,
        "indices_sha": array_sha256(indices)[:16],
        "attack": attack_config(attack),
    }
    positions = None if shard is None else shard_positions(n, *shard)
    out = Path(out)
    if pool is None:
        result, seconds = attack_in_chunks(attack, x, out, run_config, chunk_size=batch_size,
                                           indices=indices, verbose=verbose, positions=positions)
    else:
        make_attack = functools.partial(_attack_from_keras_file, _keras_file_bytes(model),
                                        settings)
        result, seconds = ray_engine.attack_on_ray(
            make_attack, x, out, run_config, batch_size, pool, indices=indices,
            verbose=verbose, positions=positions, expected_attack_config=run_config["attack"])
    if result is None:
        return None
    arrays = {k: getattr(result, k) for k in _ARRAYS if k != "index"} | {"index": indices}
    write_npz_atomic(out / RESULTS_FILE, **arrays,
                     **{IDENTITY_KEY: np.asarray(config_sha256(run_config))})
    summary = {
        "n": n,
        "asr": result.attack_success_rate,
        "mean_mi": _mean_or_none(result.mi),
        "mean_mi_successful": _mean_or_none(result.mi[result.success]),
        "seconds": seconds,
        "samples_per_second": n / seconds if seconds > 0 else None,
        "config": run_config,
        "versions": versions(),
        "execution": _execution(attack if pool is None else None),
    }
    write_json_atomic(out / SUMMARY_FILE, summary)
    return GenerationResults(**arrays, summary=summary, path=out,
                             sha256=file_sha256(out / RESULTS_FILE))


def _execution(attack):
    """How the local attack ran: XLA or graph mode, and the MINE kernel (``None``: unknown,
    e.g. on Ray actors, or no MINE)."""
    native = getattr(getattr(attack, "similarity", None), "uses_native_kernel", None)
    return {"xla": None if attack is None else attack.uses_xla,
            "mine_kernel": None if native is None else ("native" if native else "tf")}


def _check_engine(engine, criterion, ray_address, workers, gpus_per_worker):
    """The Ray :class:`~uae_tf.runs.ray_engine.Workers` for ``engine="ray"``, else None."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}. Received: engine={engine!r}")
    ray_settings = {"ray_address": ray_address, "workers": workers,
                    "gpus_per_worker": gpus_per_worker}
    if engine == "local":
        given = sorted(k for k, v in ray_settings.items() if v is not None)
        if given:
            raise ValueError(f"{', '.join(given)} apply to engine='ray' only. Received: "
                             f"engine={engine!r}")
        return None
    if criterion is not None:
        raise ValueError("engine='ray' attacks the model's reconstruction criterion; a "
                         f"criterion is for engine='local'. Received: criterion={criterion!r}")
    return ray_engine.connect(ray_address, workers, gpus_per_worker)


def _default_batch_size(method, pool):
    """Samples per batch: 256 for the one-shot methods; for MinMax, ``None`` locally
    (the attack sizes it to the device, see ``resolve_batch_size``) and on Ray 32
    when the workers use GPUs, else 1."""
    if method in ("gaussian", "start"):
        return 256
    if pool is None:
        return None
    return 32 if pool.num_gpus > 0 else 1


def _make_attack(model, criterion, method, preset, view, batch_size, seed, attack_kwargs):
    """Builds :func:`generate`'s attack; returns it and the preset it used (None if none)."""
    criterion = ReconstructionCriterion(model) if criterion is None else criterion
    attack_kwargs = dict(attack_kwargs)
    if method == "gaussian":
        unknown = set(attack_kwargs) - {"sigma"}
        if unknown:
            raise ValueError(f"method='gaussian' takes only sigma. Received: {sorted(unknown)}")
        return GaussianAugmentation(criterion, batch_size=batch_size, seed=seed,
                                    **attack_kwargs), None
    if method == "start":
        unknown = set(attack_kwargs) - {"initial_perturbation", "epsilon"}
        if unknown:
            raise ValueError(
                f"method='start' takes only initial_perturbation and epsilon. Received: "
                f"{sorted(unknown)}"
            )
        return StartOnly(criterion, batch_size=batch_size, seed=seed, **attack_kwargs), None
    settings = get_preset(preset)
    similarity = {**settings["similarity"], **attack_kwargs.pop("similarity", {}), "view": view}
    settings.update(attack_kwargs, similarity=similarity if method == "mine" else "l2")
    return MinMaxAttack(criterion, batch_size=batch_size, seed=seed, verbose=False,
                        **settings), preset


def _keras_file_bytes(model):
    """The bytes of ``model`` saved as a ``.keras`` file, to ship to Ray workers."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _attack_from_keras_file(model_bytes, settings):
    """On a Ray worker: loads the model from its ``.keras`` bytes, builds the attack."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.keras"
        path.write_bytes(model_bytes)
        model = keras.saving.load_model(path, compile=False)
    return _make_attack(model, None, **settings)[0]


def _check_shard(shard):
    """``shard`` as ``(i, n)`` ints with ``0 <= i < n``, or a ValueError naming it."""
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                       for v in shard)
            or not 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with ints 0 <= i < n. Received: shard={shard!r}")
    return int(shard[0]), int(shard[1])


def _mean_or_none(values):
    """Mean as a float, or None (JSON null) when empty or undefined (GA's NaN MI)."""
    return float(np.mean(values)) if len(values) and np.all(np.isfinite(values)) else None


def load_results(out):
    """Loads a finished generation, validated, as a :class:`GenerationResults`.

    Args:
        out: A results directory of :func:`generate` (``uae generate --out``).

    Returns:
        The :class:`GenerationResults` of ``out/uae.npz`` and ``out/summary.json``.

    Raises:
        FileNotFoundError: if the directory holds no finished generation.
        ValueError: if a file is corrupt or not a uae-tf generation's, or
            ``uae.npz`` was made by another run than ``summary.json`` describes,
            naming the file.

    Example:

    >>> results = uae_tf.load_results("runs/uae")  # doctest: +SKIP
    >>> results.method, results.attack_success_rate  # doctest: +SKIP
    ('mine', 0.98)
    """
    out = Path(out)
    for name in (RESULTS_FILE, SUMMARY_FILE):
        if not (out / name).is_file():
            raise FileNotFoundError(
                f"{out / name} does not exist: run `uae generate` into {out} first."
            )
    summary = read_json(out / SUMMARY_FILE, "generation summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise ValueError(f"{out / SUMMARY_FILE} is not a uae-tf generation summary (no config).")
    if summary["config"].get("method") not in METHODS:
        raise ValueError(
            f"{out / SUMMARY_FILE} names no method of {METHODS}. "
            f"Received: method={summary['config'].get('method')!r}"
        )
    path = out / RESULTS_FILE
    rebuild = (f"delete it and rerun `uae generate` with the run's arguments into {out}: it "
               "is rebuilt from the chunks")
    arrays = read_npz(path, rebuild)
    made_by, expected = arrays.pop(IDENTITY_KEY, None), config_sha256(summary["config"])
    # A uae.npz without an identity predates them; the summary beside it vouches for it.
    if made_by is not None and str(made_by) != expected:
        raise ValueError(
            f"{path} was made by another run than {out / SUMMARY_FILE} describes (config "
            f"sha256 {str(made_by)[:12]}..., the summary's {expected[:12]}...; copied from "
            f"another run?); {rebuild}."
        )
    missing = set(_ARRAYS) - set(arrays)
    if missing:
        raise ValueError(f"{path} is not a uae-tf results file: it lacks {sorted(missing)}.")
    lengths = {k: len(arrays[k]) for k in _ARRAYS}
    if set(lengths.values()) != {summary.get("n")}:
        raise ValueError(
            f"{path} does not match {out / SUMMARY_FILE}: n={summary.get('n')!r}, "
            f"array lengths {lengths}."
        )
    return GenerationResults(**{k: arrays[k] for k in _ARRAYS}, summary=summary, path=out,
                             sha256=file_sha256(path))
