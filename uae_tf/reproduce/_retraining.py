"""What the retraining experiments (table4, table5, table9, second-run) share.

Each trains an autoencoder, makes augmentations of its training samples against it,
retrains from scratch on originals plus augmentations, and adds the
``original-same-steps`` control. The pieces, all resumable through
:mod:`uae_tf.runs`:

* :func:`train_row` -- one model directory, trained once and reused while its
  config holds;
* :func:`generate_row` -- one augmentation of the training samples, its config
  naming the data and the model attacked;
* :func:`same_steps_epochs` -- the epochs that give the control as many gradient
  steps as an augmented row;
* :func:`summarize` -- a report row per method: test error over replicates,
  ASR, improvement over a base row;
* :func:`add_arguments` and :func:`common_kwargs` -- their shared command-line
  options, with CPU-sized defaults.
"""

import functools
import math
import sys
import time
from pathlib import Path

import numpy as np

import autoencoders
from uae_tf import datasets, training
from uae_tf._argtypes import initial_perturbation as parse_initial_perturbation
from uae_tf._argtypes import (
    add_attack_batch_size_argument,
    add_quiet_argument,
    add_replicate_arguments,
    add_steps_arguments,
    int_at_least,
)
from uae_tf._validation import check_positive_int
from uae_tf.generation import generate
from uae_tf.presets import PRESETS
from uae_tf.reproduce.reports import printer
from uae_tf.runs import check_config, file_sha256, model_file, train_once
from uae_tf.views import VIEWS

DEFAULT_ATTACK_BATCH_SIZE = 16


def train_row(log, out, epochs, train, augmentation=None, transform=None):
    """Trains an autoencoder into ``out`` once (see :func:`uae_tf.runs.train_once`).

    Args:
        log: Prints a progress line.
        out: The model directory.
        epochs: Training epochs.
        train: The other arguments of :func:`uae_tf.train_autoencoder`, or, with
            ``arch="concrete"``, of :func:`uae_tf.train_concrete` plus that ``arch``.
        augmentation: A :class:`uae_tf.generation.GenerationResults`, a list of
            them, or ``None``.
        transform: A :class:`uae_tf.ConventionalAugmentation`, or ``None`` (then
            the model's config has no ``transform`` key, as before it existed).

    Returns:
        The training record.
    """
    if augmentation is None:
        sha = None
    elif isinstance(augmentation, (list, tuple)):
        sha = [one.sha256 for one in augmentation]
    else:
        sha = augmentation.sha256
    config = {**train, "epochs": epochs, "augmentation": sha}
    if transform is not None:
        config["transform"] = transform.get_config()
    what = "originals" if augmentation is None else "originals + augmentation"
    if transform is not None:
        what += f", {transform}"
    log(f"[seed {train['seed']}] {out.name}: training on {what}, {epochs} epochs")
    if train.get("arch") == "concrete":
        if transform is not None:
            raise ValueError("The concrete autoencoder trains without a transform.")
        settings = {key: value for key, value in train.items() if key != "arch"}
        fit = functools.partial(training.train_concrete, **settings)
    else:
        fit = functools.partial(training.train_autoencoder, transform=transform, **train)
    record, trained = train_once(out, config, lambda directory: fit(
        epochs=epochs, out=directory, augmentation=augmentation, verbose=0))
    done = f"({record['seconds']:.0f} s)" if trained else "(done before)"
    accuracy = (f", accuracy {record['test_accuracy']:.2%}" if "test_accuracy" in record
                else "")
    log(f"[seed {train['seed']}] {out.name}: test error "
        f"{record['test_reconstruction_error']:.6f}{accuracy} {done}")
    return record


def generate_row(log, model_dir, x_train, out, row, method, seed, dataset, limit,
                 attack_batch_size=None, verbose=True, dataset_options=None, steps=None,
                 **kwargs):
    """Makes one augmentation of ``x_train`` against the model in ``model_dir``, resumably.

    Args:
        log: Prints a progress line.
        model_dir: The model directory of the autoencoder attacked.
        x_train: The training samples (the first ``limit`` of ``dataset``'s train split).
        out: The results directory.
        row: The row's name, for the progress lines.
        method: A method of :func:`uae_tf.generate`.
        seed: The run's seed.
        dataset: The dataset's name, for the results' config.
        limit: The training samples' limit, for the results' config.
        attack_batch_size: Samples attacked at once.
        verbose: Print progress (the attack's bar on a terminal only).
        dataset_options: The dataset's resolved options (see
            :func:`uae_tf.datasets.resolve_options`), for the results' config when
            not empty.
        steps: MinMax iterations T of a ``"mine"`` or ``"l2"`` attack (``None``:
            the preset's).
        **kwargs: Settings of :func:`uae_tf.generate` (``preset``, ``view``...).

    Returns:
        The :class:`uae_tf.generation.GenerationResults`.
    """
    if steps is not None:
        kwargs["steps"] = steps
    phi, _ = training.load_model_dir(model_dir)
    log(f"[seed {seed}] {row}: generating {len(x_train)} augmentations")
    began = time.perf_counter()
    results = generate(
        phi, x_train, out, method=method, batch_size=attack_batch_size, seed=seed,
        verbose=verbose and method in ("mine", "l2") and sys.stdout.isatty(),
        config={"dataset": dataset, "split": "train", "limit": limit,
                **({"dataset_options": dataset_options} if dataset_options else {}),
                "model_sha256": file_sha256(model_file(model_dir))},
        **kwargs,
    )
    log(f"[seed {seed}] {row}: ASR {results.attack_success_rate:.1%} "
        f"({time.perf_counter() - began:.0f} s)")
    return results


def same_steps_epochs(steps, n_train, batch_size):
    """Epochs over ``n_train`` samples that take at least ``steps`` gradient steps."""
    return math.ceil(steps / math.ceil(n_train / batch_size))


def summarize(records, rows, base):
    """One report row per method, over replicates.

    Args:
        records: ``{method: [training record (+ "asr" for augmented rows), one per
            replicate]}``.
        rows: The methods, in the report's order.
        base: The method the improvement is relative to.

    Returns:
        A list of dicts: ``method``, ``test_error`` (mean over replicates),
        ``test_error_std`` (``None`` with one replicate), ``asr`` (mean, or
        ``None``), ``improvement_pct`` over ``base`` (positive: lower error),
        ``epochs`` (trained: a concrete autoencoder's convergence rule may double
        them), ``steps``, ``train_seconds`` and, for concrete autoencoders,
        ``accuracy`` (mean downstream accuracy of the selected features).
    """
    reference = float(np.mean([r["test_reconstruction_error"] for r in records[base]]))
    summary = []
    for method in rows:
        errors = np.array([r["test_reconstruction_error"] for r in records[method]])
        asr = [r["asr"] for r in records[method] if "asr" in r]
        first = records[method][0]
        summary.append({
            "method": method,
            "test_error": float(errors.mean()),
            "test_error_std": float(errors.std(ddof=1)) if len(errors) > 1 else None,
            "asr": float(np.mean(asr)) if asr else None,
            "improvement_pct": 100.0 * (reference - float(errors.mean())) / reference,
            "epochs": first.get("epochs_trained", first["config"]["epochs"]),
            "steps": first["steps"],
            "train_seconds": float(np.mean([r["seconds"] for r in records[method]])),
        })
        if "test_accuracy" in first:
            summary[-1]["accuracy"] = float(np.mean([r["test_accuracy"]
                                                     for r in records[method]]))
    return summary


def paired_differences(records, method, rows):
    """``method``'s test error minus each other row's, replicate by replicate.

    Replicate r of every row trains from the same initial weights (its seed), so the
    per-replicate difference removes what the rows share, and a difference whose
    sign holds in every replicate can be read even where it is smaller than the
    rows' own spread over replicates.

    Args:
        records: As for :func:`summarize`.
        method: The row compared (``"mine-uae"``).
        rows: The methods, in the report's order; ``method`` itself is skipped.

    Returns:
        A list of dicts: ``method`` (the other row), ``differences`` (one per
        replicate; negative: ``method`` has the lower error), ``mean``, ``std``
        (``None`` with one replicate) and ``same_sign`` (every difference of one
        strict sign).
    """
    own = np.array([r["test_reconstruction_error"] for r in records[method]])
    paired = []
    for other in rows:
        if other == method:
            continue
        d = own - np.array([r["test_reconstruction_error"] for r in records[other]])
        paired.append({
            "method": other,
            "differences": [float(v) for v in d],
            "mean": float(d.mean()),
            "std": float(d.std(ddof=1)) if len(d) > 1 else None,
            "same_sign": bool(np.all(d < 0) or np.all(d > 0)),
        })
    return paired


def experiment_config(dataset, arch, preset, seeds, seed, limit, view, epochs,
                      augmented_epochs, initial_perturbation, data_dir, steps=None, **extra):
    """The settings every retraining experiment records, checked, plus ``extra``.

    ``seeds`` replicates from ``seed`` become the list ``seeds``; ``epochs`` and
    ``augmented_epochs`` of ``None`` mean Table 8's for ``arch`` (which may be
    ``None`` when ``extra`` names the architectures). ``steps``, the attacks' T, is
    recorded when given (``None``, the preset's, leaves it out, so the config of a
    run made before the setting existed stays what it was). Raises ``ValueError``
    naming an unknown setting.
    """
    check_settings(dataset, preset, view, arch)
    seeds = check_positive_int(seeds, "seeds")
    if steps is not None:
        extra["steps"] = check_positive_int(steps, "steps")
    if arch is not None:
        epochs = epochs or autoencoders.default_epochs(arch, dataset)
        augmented_epochs = (augmented_epochs
                            or autoencoders.default_epochs(arch, dataset, augmented=True))
    config = {
        "dataset": dataset,
        "arch": arch,
        "preset": preset,
        "seeds": [seed + r for r in range(seeds)],
        "limit": limit,
        "view": view,
        "epochs": epochs,
        "augmented_epochs": augmented_epochs,
        "initial_perturbation": initial_perturbation,
        "batch_size": autoencoders.default_batch_size,
        "data_dir": None if data_dir is None else str(data_dir),
        **extra,
    }
    if arch is None:
        del config["arch"]
    return config


def begin(out, config, format, verbose):
    """Opens an experiment directory: refuses other settings, loads the training samples.

    Returns:
        ``(out, log, started, x_train)``: ``out`` as a ``Path`` (created), the
        progress printer, the start time (``time.perf_counter``) and the first
        ``config["limit"]`` training samples.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, config, format=format)
    started = time.perf_counter()
    x_train = load_train_split(config["dataset"], config["limit"], config["data_dir"])
    return out, printer(verbose), started, x_train


def check_settings(dataset, preset, view, arch=None):
    """Raises ``ValueError`` naming the value when a setting is unknown."""
    if arch is not None and arch not in autoencoders.ARCHITECTURES:
        raise ValueError(f"arch must be one of {autoencoders.ARCHITECTURES}. Received: {arch!r}")
    if dataset not in datasets.DATASETS:
        raise ValueError(f"dataset must be one of {datasets.DATASETS}. Received: {dataset!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: {preset!r}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}. Received: {view!r}")


def load_train_split(dataset, limit, data_dir, dataset_options=None):
    """The first ``limit`` samples of ``dataset``'s train split (refused when empty)."""
    x_train, _ = datasets.load(dataset, "train", data_dir=data_dir, **(dataset_options or {}))
    x_train = x_train[:limit]
    if len(x_train) == 0:
        raise ValueError(f"The train split of {dataset!r} is empty.")
    return x_train


def add_arguments(parser, limit, epochs, augmented_epochs, view="random"):
    """Adds the options the retraining experiments share, with their CPU defaults.

    ``epochs`` and ``augmented_epochs`` of ``None`` mean Table 8's.

    ``--dataset``, ``--preset``/``--seeds``/``--seed``, ``--limit``, ``--view``,
    ``--epochs``, ``--augmented-epochs``, ``--initial-perturbation``, ``--steps``,
    ``--attack-batch-size``, ``--data-dir``, ``--quiet``, ``--out``.
    """
    parser.add_argument("--dataset", required=True, choices=datasets.DATASETS, metavar="NAME",
                        help=f"dataset: {', '.join(datasets.DATASETS)}")
    add_replicate_arguments(parser)
    parser.add_argument("--limit", type=int_at_least(1), default=limit, metavar="N",
                        help="use the first N training samples (default: %(default)s; a number "
                        "above the split's size uses all)")
    parser.add_argument("--view", choices=VIEWS, default=view,
                        help="MINE view (default: %(default)s)")
    parser.add_argument("--epochs", type=int_at_least(1), default=epochs, metavar="N",
                        help="epochs of the models trained without UAEs (default: "
                        f"{epochs or 'Table 8'})")
    parser.add_argument("--augmented-epochs", type=int_at_least(1), default=augmented_epochs,
                        metavar="N", help="epochs of the models trained with UAEs (default: "
                        f"{augmented_epochs or 'Table 8, augmented'})")
    parser.add_argument("--initial-perturbation", type=parse_initial_perturbation,
                        default="glorot", metavar="R",
                        help="delta_0 of the attacks: 'glorot' (published code; default), 0 "
                        "(Algorithm 1) or a radius")
    add_steps_arguments(parser, None, what="of the MINE-UAE attacks",
                        default_help="the preset's, fast 20, paper 40")
    # 16, as `uae demo`: on a CPU, batches of the random view's attack run faster than
    # one sample at a time.
    add_attack_batch_size_argument(parser, default=str(DEFAULT_ATTACK_BATCH_SIZE))
    parser.set_defaults(attack_batch_size=DEFAULT_ATTACK_BATCH_SIZE)
    parser.add_argument("--data-dir", metavar="DIR", help="tensorflow-datasets cache directory")
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="experiment directory")


def common_kwargs(args):
    """The keyword arguments of the ``run_*`` functions that :func:`add_arguments` parses."""
    return dict(
        dataset=args.dataset, out=args.out, preset=args.preset, seeds=args.seeds,
        seed=args.seed, limit=args.limit, view=args.view, epochs=args.epochs,
        augmented_epochs=args.augmented_epochs,
        initial_perturbation=args.initial_perturbation, steps=args.steps,
        attack_batch_size=args.attack_batch_size, data_dir=args.data_dir,
        verbose=not args.quiet,
    )
