"""The ``uae`` command line: a thin layer over the library's functions.

Every subcommand prints a human summary, then, as its last line on stdout, one JSON
object that scripts can read (``uae ... | tail -n 1``). Errors print one line,
``uae: error: ...``, on stderr, with exit code 2 for bad arguments and 1 for
failures while running (missing or corrupt files, data not available offline...).

Adding a subcommand: write ``_add_<name>_parser(subparsers)``, which adds the parser
and calls ``set_defaults(func=_cmd_<name>)``, and ``_cmd_<name>(args)``, which does the
work and returns the dict printed as the last line; then list the adder in
``_SUBCOMMAND_PARSERS``.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import autoencoders
from uae_tf import __version__, _argtypes, datasets, models, reproduce
from uae_tf.evaluation import reconstruction_error
from uae_tf.generation import ENGINES, METHODS, generate, load_results
from uae_tf.presets import PRESETS
from uae_tf.reproduce.table4 import DEMO, print_table, run_table4
from uae_tf.runs import (
    CONFIG_FILE,
    MODEL_FILE,
    RECORD_FILE,
    ConfigMismatchError,
    file_sha256,
    model_file,
    ray_engine,
    train_once,
)
from uae_tf.training import load_model_dir, retrain
from uae_tf.views import VIEWS

PROG = "uae"
_EXIT_RUNTIME_ERROR = 1
_EXIT_USAGE_ERROR = 2
_EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """Bad command-line arguments, reported with exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line naming the help to read."""

    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


_int_at_least = _argtypes.int_at_least  # The subcommands' integer options.


def _add_dataset_arguments(parser):
    """Adds ``--dataset`` and ``--data-dir``, shared by the subcommands that read data."""
    parser.add_argument(
        "--dataset",
        required=True,
        choices=datasets.DATASETS,
        metavar="NAME",
        help=(
            f"dataset: {', '.join(datasets.DATASETS)}. 'mnist5k' and 'digits' ship with "
            "the package; the others are downloaded once by tensorflow-datasets"
        ),
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=(
            "tensorflow-datasets cache directory "
            "(default: $TFDS_DATA_DIR or ~/tensorflow_datasets)"
        ),
    )
    _argtypes.add_dataset_option_argument(parser)


def _dataset_options(args):
    """``--dataset-option`` pairs as a dict, checked against the dataset's options."""
    return datasets.resolve_options(args.dataset, **dict(args.dataset_options))


def _add_model_and_data_arguments(parser, split):
    """Adds ``--model``, ``--dataset``, ``--data-dir`` and ``--split`` (default ``split``)."""
    parser.add_argument(
        "--model", required=True, metavar="PATH",
        help="directory written by 'uae train' (holding model.keras), or a .keras file",
    )
    _add_dataset_arguments(parser)
    parser.add_argument(
        "--split", choices=datasets.SPLITS, default=split,
        help="dataset split (default: %(default)s)",
    )


def _add_subparser(subparsers, name, summary, description, examples):
    """Adds subcommand ``name`` with its summary, description and examples epilog."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\n{description}",
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_train_parser(subparsers):
    """Adds ``uae train``."""
    parser = _add_subparser(
        subparsers,
        "train",
        "Train one of the paper's autoencoders (or the classifier its supervised attacks "
        "target) on a dataset's train split.",
        "Writes DIR/model.keras (the reconstruction model Phi) and DIR/train.json (loss\n"
        "history, config, package versions, wall time, training reconstruction error).\n"
        "DIR/config.json records the settings: rerun with them and the model is reused;\n"
        "other settings into the same DIR are refused unless --overwrite is given.\n"
        "With --devices (or by itself when TensorFlow sees two or more GPUs) each batch\n"
        "is split across several devices (tf.distribute.MirroredStrategy).\n"
        "Epochs default to the paper's Table 8. With --arch classifier: the Carlini-Wagner\n"
        "classifier (logits), 50 epochs, test accuracy in train.json. With --arch simclr:\n"
        "SimCLR (small encoder and Adam; ResNet-18 and LARS on cifar10), test contrastive\n"
        "loss and the accuracy of both linear probes (published: the head fine-tuned on\n"
        "crops and flips; frozen: Adam on fixed features) in train.json. The last line\n"
        "printed is a JSON summary.",
        "  uae train --arch conv --dataset mnist5k --out runs/conv-mnist5k\n"
        "  uae train --arch dense --dataset digits --epochs 5 --seed 1 --out runs/dense\n"
        "  uae train --arch classifier --dataset mnist5k --epochs 15 --out runs/cw\n"
        "  uae train --arch simclr --dataset mnist5k --limit 1000 --out runs/simclr\n"
        "  uae train --arch concrete --dataset mnist5k --features 50 --out runs/concrete",
    )
    parser.add_argument(
        "--arch",
        required=True,
        choices=tuple(models.ARCHITECTURES),
        help="autoencoder architecture (Section 5.4 of the paper), or 'classifier': the "
        "Carlini-Wagner classifier the supervised attacks target (50 epochs by default)",
    )
    _add_dataset_arguments(parser)
    parser.add_argument(
        "--epochs",
        type=_int_at_least(1),
        metavar="N",
        help="training epochs (default: the paper's Table 8 value for ARCH and NAME)",
    )
    parser.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        metavar="B",
        help=f"training batch size (default: {autoencoders.default_batch_size} for the "
        f"autoencoders, as published; {models.get('classifier').default_batch_size} for the "
        "classifier, as Carlini and Wagner; simclr: 512 on cifar10, as published, else "
        f"{models.get('simclr').default_batch_size})",
    )
    _argtypes.add_seed_argument(parser)
    parser.add_argument(
        "--limit", type=_int_at_least(1), metavar="N",
        help="train on the first N samples of the train split only (default: all)",
    )
    parser.add_argument(
        "--features", type=_int_at_least(1), metavar="M",
        help="--arch concrete only: features selected (default: 50, 10 for mice_protein)",
    )
    _argtypes.add_devices_argument(parser)
    _add_quiet_and_out_arguments(parser)
    parser.set_defaults(func=_cmd_train)


def _add_quiet_and_out_arguments(parser):
    """Adds ``--quiet``, ``--out`` and ``--overwrite`` of the subcommands that train."""
    _argtypes.add_quiet_argument(parser)
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="model directory (created if missing); one that holds a model of the same "
        "settings is reused, one of other settings refused",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the model in DIR, whatever its settings (it is deleted first)",
    )


def _train_into(args, config, train):
    """Trains into ``args.out`` through :func:`uae_tf.runs.train_once`, honouring
    ``--overwrite``; returns ``(record, trained)``."""
    out = Path(args.out)
    if args.overwrite:
        for name in (RECORD_FILE, MODEL_FILE, CONFIG_FILE):
            (out / name).unlink(missing_ok=True)
    try:
        record, trained = train_once(out, config, train)
    except ConfigMismatchError as error:
        raise ConfigMismatchError(
            f"{error} Or pass --overwrite to train a new model in its place.") from error
    return record, trained


def _report_written(args, summary, trained):
    """Says where the model is (written, or reused); returns ``summary`` with ``trained``."""
    if not args.quiet:
        out = Path(args.out)
        if trained:
            print(f"Wrote {out / MODEL_FILE} and {RECORD_FILE}.")
        else:
            print(f"{out} already holds this model (same settings): reused, nothing trained. "
                  "Pass --overwrite to train it again.")
    return {**summary, "trained": trained}


def _fit_verbosity(args):
    """Keras fit verbosity: none with --quiet, a bar on a terminal, else a line per epoch."""
    if args.quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _report_training(args, record, what):
    """Prints the summary of a training run; returns its JSON dict."""
    config = record["config"]
    final_loss = record["history"]["loss"][-1]
    replicas = record.get("replicas", 1)
    if not args.quiet:
        epochs = config["epochs"]
        if replicas > 1:
            what += f", each batch split across {', '.join(record['devices'])}"
        print(
            f"Trained {config['arch']} autoencoder on {what}, {epochs} epoch"
            f"{'s' if epochs > 1 else ''} in {record['seconds']:.1f} s: final loss "
            f"{final_loss:.6g}, reconstruction error train {record['train_reconstruction_error']:.6g}"
            f", test {record['test_reconstruction_error']:.6g}."
        )
    return {
        "out": args.out,
        "arch": config["arch"],
        "dataset": config["dataset"],
        "epochs": config["epochs"],
        "final_loss": final_loss,
        "train_reconstruction_error": record["train_reconstruction_error"],
        "test_reconstruction_error": record["test_reconstruction_error"],
        "seconds": record["seconds"],
        "replicas": replicas,
    }


def _cmd_train(args):
    """Trains and saves a model of ``uae_tf.models.ARCHITECTURES``; returns the JSON summary."""
    architecture = models.get(args.arch)
    extra = {}
    if args.features is not None:
        if args.arch != "concrete":
            raise _UsageError("--features applies to --arch concrete only")
        extra["features"] = args.features
    if args.dataset_options:
        if args.arch != "concrete":
            raise _UsageError("--dataset-option applies to --arch concrete only (the "
                              "datasets with options are tabular)")
        extra["dataset_options"] = _dataset_options(args)
    if args.devices is not None:
        if architecture.kind != "autoencoder":
            autoencoder_archs = [name for name, entry in models.ARCHITECTURES.items()
                                 if entry.kind == "autoencoder"]
            raise _UsageError(
                f"--devices applies to the autoencoders (--arch {', '.join(autoencoder_archs)}) "
                f"only. Received: --arch {args.arch}"
            )
        extra["devices"] = args.devices
    # What identifies the model: the arguments as given (None: the default), less
    # where the data is cached and the devices, which do not change it.
    config = {"arch": args.arch, "dataset": args.dataset, "epochs": args.epochs,
              "batch_size": args.batch_size, "seed": args.seed, "limit": args.limit,
              "features": args.features}
    options = _dataset_options(args)
    if options:  # Only for datasets with options, so the others' configs stay.
        config["dataset_options"] = options
    record, trained = _train_into(args, config, lambda out: architecture.train(
        args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out=out,
        data_dir=args.data_dir,
        verbose=_fit_verbosity(args),
        limit=args.limit,
        **extra,
    ))
    if args.arch == "concrete":
        summary = _report_concrete(args, record)
    elif architecture.kind == "classifier":
        summary = _report_classifier(args, record)
    elif architecture.kind == "contrastive":
        summary = _report_contrastive(args, record)
    else:
        summary = _report_training(args, record, f"{args.dataset} (train split)")
    return _report_written(args, summary, trained)


def _report_concrete(args, record):
    """Prints the summary of a concrete autoencoder's training; returns its JSON dict."""
    summary = _report_training(args, record, f"{args.dataset} (train split)")
    tries = record["tries"]
    if not args.quiet:
        converged = "converged" if tries[-1]["converged"] else "did not converge"
        print(
            f"Selected {len(record['selected_features'])} features; ExtraTrees test accuracy "
            f"{record['test_accuracy']:.2%}; mean max selection probability "
            f"{record['mean_max_probability']:.4f} ({converged} after {len(tries)} run"
            f"{'s' if len(tries) > 1 else ''}, {record['epochs_trained']} epochs in the last)."
        )
    return {**summary, "selected_features": record["selected_features"],
            "test_accuracy": record["test_accuracy"],
            "mean_max_probability": record["mean_max_probability"],
            "epochs_trained": record["epochs_trained"], "runs": len(tries)}


def _report_classifier(args, record):
    """Prints the summary of a classifier's training run; returns its JSON dict."""
    config = record["config"]
    if not args.quiet:
        print(
            f"Trained the Carlini-Wagner {config['variant']} classifier on {args.dataset} "
            f"(train split), {config['epochs']} epochs in {record['seconds']:.1f} s: test "
            f"accuracy {record['test_accuracy']:.2%}."
        )
    return {
        "out": args.out,
        "arch": "classifier",
        "dataset": config["dataset"],
        "epochs": config["epochs"],
        "final_loss": record["history"]["loss"][-1],
        "train_accuracy": record["train_accuracy"],
        "test_accuracy": record["test_accuracy"],
        "seconds": record["seconds"],
    }


def _report_contrastive(args, record):
    """Prints the summary of a SimCLR pre-training run; returns its JSON dict."""
    config = record["config"]
    probes = {protocol: result["test_accuracy"]
              for protocol, result in record["linear_probe"].items()}
    if not args.quiet:
        print(
            f"Trained SimCLR ({config['encoder']} encoder) on {args.dataset} (train split), "
            f"{config['epochs']} epochs in {record['seconds']:.1f} s: test contrastive loss "
            f"{record['test_contrastive_loss']:.4f}, linear-probe test accuracy "
            + ", ".join(f"{accuracy:.2%} ({protocol})" for protocol, accuracy in probes.items())
            + "."
        )
    return {
        "out": args.out,
        "arch": "simclr",
        "dataset": config["dataset"],
        "epochs": config["epochs"],
        "final_loss": record["history"]["loss"][-1],
        "test_contrastive_loss": record["test_contrastive_loss"],
        "linear_probe_accuracy": probes,
        "seconds": record["seconds"],
    }


def _add_retrain_parser(subparsers):
    """Adds ``uae retrain``."""
    parser = _add_subparser(
        subparsers,
        "retrain",
        "Retrain a model's architecture from scratch on originals plus augmentation.",
        "Reads the architecture, dataset, training samples, batch size and seed from\n"
        "MODEL/train.json and trains a fresh model on the originals plus one augmentation\n"
        "each from AUGMENT (written by 'uae generate' on the train split): failed UAEs,\n"
        "and samples AUGMENT does not cover, are replicated, as in the paper. Epochs\n"
        "default to the augmented column of Table 8. Writes DIR/model.keras and\n"
        "DIR/train.json with the test reconstruction error (reused, or refused, as for\n"
        "'uae train'). AUGMENT must have been generated against MODEL itself (its\n"
        "model_sha256), unless --allow-other-model is given. With --devices (or by\n"
        "itself when TensorFlow sees two or more GPUs) each batch is split across\n"
        "several devices (tf.distribute.MirroredStrategy).",
        "  uae retrain --model runs/conv-mnist5k --augment runs/uae --out runs/conv-uae\n"
        "  uae retrain --model runs/conv-mnist5k --augment runs/ga-0.01 --epochs 10 \\\n"
        "      --seed 1 --out runs/conv-ga\n"
        "  uae retrain --model runs/conv-mnist5k --augment runs/uae --devices 2 \\\n"
        "      --out runs/conv-uae   # each batch split across the first two GPUs",
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="directory written by 'uae train'"
    )
    parser.add_argument(
        "--augment", required=True, metavar="DIR", help="directory written by 'uae generate'"
    )
    parser.add_argument(
        "--epochs", type=_int_at_least(1), metavar="N",
        help="training epochs (default: the augmented column of the paper's Table 8)",
    )
    _argtypes.add_seed_argument(parser, help="random seed (default: the original model's)",
                                default=None)
    parser.add_argument(
        "--allow-other-model", action="store_true",
        help="retrain on an augmentation made against another model than MODEL's (refused "
        "by default: UAEs are specific to the model they fool)",
    )
    _argtypes.add_devices_argument(parser)
    _add_quiet_and_out_arguments(parser)
    parser.set_defaults(func=_cmd_retrain)


def _cmd_retrain(args):
    """Retrains on originals plus augmentation; returns the JSON summary."""
    augment = load_results(args.augment)
    model = model_file(args.model)
    config = {"model_sha256": file_sha256(model) if model.is_file() else None,
              "augment_sha256": augment.sha256, "epochs": args.epochs, "seed": args.seed}
    record, trained = _train_into(args, config, lambda out: retrain(
        args.model, augment, epochs=args.epochs, seed=args.seed, out=out,
        verbose=_fit_verbosity(args), devices=args.devices,
        allow_other_model=args.allow_other_model,
    ))
    augmentation = record["config"]["augmentation"]
    summary = _report_training(
        args, record,
        f"{record['n_train']} originals of {record['config']['dataset']} plus their "
        f"{augmentation['method']} augmentations",
    )
    return _report_written(args, summary, trained)


def _add_evaluate_parser(subparsers):
    """Adds ``uae evaluate``."""
    parser = _add_subparser(
        subparsers,
        "evaluate",
        "Measure a trained model's reconstruction error on a dataset split.",
        "The error is the paper's metric (Table 4's \"average L2 reconstruction loss\"):\n"
        "the mean over samples of each sample's mean squared error over its pixels.\n"
        'The last line printed is JSON: {"reconstruction_error": ..., "n": ..., ...}.',
        "  uae evaluate --model runs/conv-mnist5k --dataset mnist5k\n"
        "  uae evaluate --model runs/conv-mnist5k/model.keras --dataset mnist5k --split train",
    )
    _add_model_and_data_arguments(parser, split="test")
    _argtypes.add_quiet_argument(parser)
    parser.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args):
    """Evaluates a saved model's reconstruction error; returns the JSON summary."""
    model, _ = load_model_dir(args.model)
    x, _ = datasets.load(args.dataset, args.split, data_dir=args.data_dir,
                         **_dataset_options(args))
    try:
        error = reconstruction_error(model, x)
    except ValueError as err:
        raise ValueError(
            f"cannot evaluate {args.model} on {args.dataset!r} ({args.split} split): {err}"
        ) from err
    if not args.quiet:
        print(
            f"Reconstruction error of {args.model} on {args.dataset} ({args.split} split, "
            f"{len(x)} samples): {error:.6g}"
        )
    return {
        "reconstruction_error": error,
        "n": len(x),
        "dataset": args.dataset,
        "split": args.split,
    }


def _add_generate_parser(subparsers):
    """Adds ``uae generate``."""
    parser = _add_subparser(
        subparsers,
        "generate",
        "Generate one MINE-UAE (or baseline augmentation) per sample of a dataset split.",
        "Attacks the autoencoder saved by 'uae train' with its reconstruction criterion:\n"
        "--method mine is the MinMax attack with per-sample MINE (Algorithm 1), l2 the\n"
        "L2-UAE baseline (MinMax maximizing the reconstruction loss), gaussian the GA\n"
        "baseline (x + N(0, sigma^2), clipped to [0, 1]).\n"
        "Writes DIR/uae.npz (x_adv, success, mi, f, index) and DIR/summary.json (n, asr,\n"
        "mean_mi, seconds, samples_per_second, config, versions). Results are written in\n"
        "chunks as they are made: rerun the same command after an interruption and it\n"
        "resumes; a different configuration into the same DIR is refused.",
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k --limit 200 \\\n"
        "      --preset fast --out runs/uae\n"
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k \\\n"
        "      --out runs/uae-paper   # the paper's settings; on a GPU, batches that fill it\n"
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k --method gaussian \\\n"
        "      --sigma 0.01 --out runs/ga-0.01\n"
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k --shard 0/4 \\\n"
        "      --out runs/uae   # and 1/4, 2/4, 3/4: anywhere, into the same DIR\n"
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k --engine ray \\\n"
        "      --address auto --out /shared/runs/uae   # on the Ray cluster 'ray start' runs",
    )
    parser.add_argument(
        "--method", choices=METHODS, default="mine",
        help="mine (MINE-UAE, default), l2 (L2-UAE baseline), gaussian (GA baseline) or "
        "start (the attack's delta_0 alone, a control)",
    )
    parser.add_argument(
        "--sigma", type=_argtypes.positive_float, metavar="S",
        help="noise standard deviation of --method gaussian (default: 0.01)",
    )
    parser.add_argument(
        "--initial-perturbation", type=_argtypes.initial_perturbation, metavar="R",
        help="start of delta for mine and l2: 'glorot' (the published code's start; "
        "default), 0 (Algorithm 1 as printed) or a radius R for uniform noise in [-R, R]",
    )
    _add_model_and_data_arguments(parser, split="train")
    parser.add_argument(
        "--limit", type=_int_at_least(1), metavar="N",
        help="attack only the first N samples of the split (default: all)",
    )
    parser.add_argument(
        "--view", choices=VIEWS, default="auto",
        help="per-sample MINE view: conv (first Conv2D's feature maps), random "
        "(Gaussian projections) or auto (conv if the model has one; default)",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="paper",
        help="attack settings: 'paper' (T=40, 20 MINE steps; default, tens of seconds a "
        "sample on a CPU with the conv view) or 'fast' (T=20, 5 MINE steps)",
    )
    _argtypes.add_attack_batch_size_argument(parser)
    _argtypes.add_seed_argument(parser)
    parser.add_argument(
        "--shard", type=_argtypes.shard, metavar="I/N",
        help="attack only shard I of N (every N-th sample from the I-th, I = 0..N-1) into "
        "DIR; run the N shards anywhere, at once or in turn, with the same other "
        "arguments and --out: the last to finish writes uae.npz, exactly what one "
        "process gives (default: all samples)",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, default="local",
        help="local: attack in this process (default); ray: Ray Data actors on a Ray "
        "cluster, each loading the model and building the attack once, writing the same "
        "chunk files with the same results (bit for bit at equal thread counts) "
        "(needs: pip install -e '.[ray]')",
    )
    parser.add_argument(
        "--address", metavar="ADDR",
        help="--engine ray: the Ray cluster, as ray.init takes it ('auto': the one 'ray "
        "start' runs on this machine; default: $RAY_ADDRESS, else a new local Ray "
        "instance); on several machines DIR must be on a filesystem they share",
    )
    parser.add_argument(
        "--workers", type=_int_at_least(1), metavar="N",
        help="--engine ray: number of actors (default: one per GPU, or without GPUs one "
        "per core; on CPUs each reserves cores/N cores)",
    )
    parser.add_argument(
        "--gpus-per-worker", type=_argtypes.float_at_least(0), metavar="G",
        help="--engine ray: GPUs per actor, e.g. 0.5 for two per GPU, 0 for CPU actors "
        "(default: 1 if the cluster has GPUs, else 0)",
    )
    _argtypes.add_quiet_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="results directory")
    parser.set_defaults(func=_cmd_generate)


def _cmd_generate(args):
    """Generates UAEs for a dataset split; returns the JSON summary."""
    ray_options = {"ray_address": args.address, "workers": args.workers,
                   "gpus_per_worker": args.gpus_per_worker}
    if args.engine == "ray":
        ray_engine.require_ray()  # Fails before the model and data are loaded.
    else:
        for option, value in zip(("--address", "--workers", "--gpus-per-worker"),
                                 ray_options.values()):
            if value is not None:
                raise _UsageError(f"{option} applies to --engine ray only")
    model, _ = load_model_dir(args.model)
    options = _dataset_options(args)
    x, _ = datasets.load(args.dataset, args.split, data_dir=args.data_dir, **options)
    if args.limit is not None:
        x = x[: args.limit]
    config = {
        "model_sha256": file_sha256(model_file(args.model)),
        "dataset": args.dataset,
        **({"dataset_options": options} if options else {}),
        "split": args.split,
        "limit": args.limit,
    }
    if args.method == "gaussian":
        if args.initial_perturbation is not None:
            raise _UsageError("--initial-perturbation applies to --method mine and l2 only")
        extra = {"sigma": 0.01 if args.sigma is None else args.sigma}
    else:
        if args.sigma is not None:
            raise _UsageError("--sigma applies to --method gaussian only")
        extra = {} if args.initial_perturbation is None else {
            "initial_perturbation": args.initial_perturbation}
    results = generate(
        model, x, args.out, method=args.method, preset=args.preset, view=args.view,
        batch_size=args.attack_batch_size, seed=args.seed, verbose=not args.quiet, config=config,
        shard=args.shard, engine=args.engine, **ray_options, **extra,
    )
    if results is None:
        shard = f"{args.shard[0]}/{args.shard[1]}"
        if not args.quiet:
            print(f"Shard {shard} is done; other shards' samples are still missing in "
                  f"{args.out}. The last shard to finish writes uae.npz.")
        return {"shard": shard, "complete": False, "out": args.out}
    summary = results.summary
    if not args.quiet:
        made = {"mine": "MINE-UAEs", "l2": "L2-UAEs", "gaussian": "GA samples",
                "start": "start-only samples"}[args.method]
        mi = "" if summary["mean_mi"] is None else f", mean MI {summary['mean_mi']:.4g}"
        print(
            f"Generated {summary['n']} {made} in {args.out}: ASR {summary['asr']:.1%}{mi}, "
            f"{summary['samples_per_second']:.3g} samples/s."
        )
    return {k: summary[k] for k in ("n", "asr", "mean_mi", "seconds", "samples_per_second")} | {
        "out": args.out, "complete": True
    }


def _add_demo_parser(subparsers):
    """Adds ``uae demo``."""
    fixed = ", ".join(f"{k}={v}" for k, v in DEMO.items()
                      if k not in ("limit", "epochs", "augmented_epochs"))
    parser = _add_subparser(
        subparsers,
        "demo",
        "Offline demo: UAE data augmentation (Table 4) on the embedded MNIST subset.",
        f"Trains the paper's conv autoencoder on {DEMO['limit']} embedded MNIST digits, makes\n"
        "one MINE-UAE, L2-UAE and Gaussian-noise augmentation per digit, retrains on each\n"
        "augmented set and on the originals for as many steps, and compares test\n"
        "reconstruction errors on the 1,000 test digits. About 6 minutes on 2 CPU cores;\n"
        "rerun the same command to resume after an interruption. It is\n"
        f"'uae reproduce table4' with: {fixed}, and --limit and --epochs below.\n"
        "--limit 256 trains a better baseline and takes about 9.5 minutes; smaller\n"
        "--limit and --epochs make a quicker, rougher run (a smoke test).",
        "  uae demo\n  uae demo --out runs/demo\n  uae demo --limit 8 --epochs 2 --out runs/tiny",
    )
    parser.add_argument(
        "--limit", type=_int_at_least(1), default=DEMO["limit"], metavar="N",
        help="training digits, each attacked once (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=_int_at_least(1), default=DEMO["epochs"], metavar="N",
        help="epochs of 'original' and of every augmented row (default: %(default)s)",
    )
    parser.add_argument(
        "--out", default="uae-demo", metavar="DIR", help="output directory (default: %(default)s)"
    )
    _argtypes.add_quiet_argument(parser)
    parser.set_defaults(func=_cmd_demo)


def _cmd_demo(args):
    """Runs the demo; returns the JSON summary."""
    settings = {**DEMO, "limit": args.limit, "epochs": args.epochs,
                "augmented_epochs": args.epochs}
    report = run_table4(**settings, out=args.out, verbose=not args.quiet)
    if not args.quiet:
        print_table(report)
        out = os.path.abspath(args.out)
        print(
            f"\nReport: {os.path.join(out, 'report.md')} (figures fig5_uaes.png and "
            f"mi_c_history.png beside it). This is a small run ({report['n_train']} "
            "training digits, few epochs, one seed): read the README before reading much "
            "into the differences."
        )
    return {"out": args.out, "rows": report["rows"], "seconds": report["seconds"]}


def _add_reproduce_parser(subparsers):
    """Adds ``uae reproduce NAME``, one sub-subcommand per experiment of uae_tf.reproduce."""
    parser = _add_subparser(
        subparsers,
        "reproduce",
        "Reproduce one of the paper's tables or figures.",
        "Each experiment writes OUT/report.json, OUT/report.md and its figures, keeps its\n"
        "intermediate results in OUT and resumes when rerun after an interruption.",
        "\n".join(f"  uae reproduce {name} --help" for name in reproduce.EXPERIMENTS),
    )
    experiments = parser.add_subparsers(
        title="experiments", dest="experiment", required=True, metavar="NAME"
    )
    for name, module in reproduce.EXPERIMENTS.items():
        sub = experiments.add_parser(
            name, help=module.SUMMARY, description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)


_SUBCOMMAND_PARSERS = (
    _add_train_parser,
    _add_evaluate_parser,
    _add_generate_parser,
    _add_retrain_parser,
    _add_reproduce_parser,
    _add_demo_parser,
)


def build_parser():
    """Returns the ``uae`` argument parser, one subparser per subcommand.

    Each subparser sets ``func``, the function that runs the subcommand on the parsed
    arguments and returns the JSON-serializable dict printed as the last line.
    """
    parser = _ArgumentParser(
        prog=PROG,
        description=(
            "Unsupervised adversarial examples (MINE + MinMax) and their use as data "
            "augmentation, in Keras 3 / TensorFlow 2.\n\n"
            "Each command prints a short summary and, as its last line, a JSON object."
        ),
        epilog=(
            "examples:\n"
            "  uae train --arch conv --dataset mnist5k --out runs/conv-mnist5k\n"
            "  uae evaluate --model runs/conv-mnist5k --dataset mnist5k\n"
            "  uae generate --model runs/conv-mnist5k --dataset mnist5k --limit 200 --preset fast \\\n"
            "      --out runs/uae\n\n"
            "Run 'uae COMMAND --help' for a command's options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    for add_parser in _SUBCOMMAND_PARSERS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Runs the ``uae`` command line.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 1 when a command fails while running (bad data,
        missing or corrupt files, dataset not available), 2 for bad arguments, 130
        when interrupted.

    Example:

    >>> main(["evaluate", "--model", "runs/conv", "--dataset", "mnist5k"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        return _fail(err, _EXIT_USAGE_ERROR)
    except SystemExit as exit_:  # --help and --version
        return exit_.code or 0
    try:
        summary = args.func(args)
    except _UsageError as err:
        return _fail(err, _EXIT_USAGE_ERROR)
    except (ValueError, OSError, datasets.DatasetUnavailableError,
            ray_engine.RayUnavailableError, ray_engine.RayRunError) as err:
        return _fail(err, _EXIT_RUNTIME_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", _EXIT_INTERRUPTED)
    print(json.dumps(_finite(summary), allow_nan=False))
    return 0


def _finite(value, key="result"):
    """``value`` with NaN and infinities as ``None`` (JSON ``null``; JSON has no NaN),
    each one warned about on stderr, naming its key."""
    if isinstance(value, dict):
        return {k: _finite(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, key) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        print(f"{PROG}: warning: {key} is {value}, printed as null", file=sys.stderr)
        return None
    return value


def _fail(message, code):
    """Prints ``message`` as one ``uae: error:`` line on stderr; returns ``code``."""
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return code
