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

import os

# Set before TensorFlow is first imported, which is when its C++ logging reads it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import __version__, datasets  # noqa: E402
from uae_tf.evaluation import reconstruction_error  # noqa: E402
from uae_tf.generation import generate  # noqa: E402
from uae_tf.presets import PRESETS  # noqa: E402
from uae_tf.views import VIEWS  # noqa: E402
from uae_tf.training import MODEL_FILE, RECORD_FILE, load_model_dir, train_autoencoder  # noqa: E402

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


def _int_at_least(minimum):
    """Returns an argparse ``type`` that parses an integer >= ``minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


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
        "Train one of the paper's autoencoders on a dataset's train split.",
        "Writes DIR/model.keras (the reconstruction model Phi) and DIR/train.json (loss\n"
        "history, config, package versions, wall time, training reconstruction error).\n"
        "Epochs default to the paper's Table 8. The last line printed is a JSON summary.",
        "  uae train --arch conv --dataset mnist5k --out runs/conv-mnist5k\n"
        "  uae train --arch dense --dataset digits --epochs 5 --seed 1 --out runs/dense",
    )
    parser.add_argument(
        "--arch",
        required=True,
        choices=autoencoders.ARCHITECTURES,
        help="autoencoder architecture (Section 5.4 of the paper)",
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
        default=autoencoders.default_batch_size,
        metavar="B",
        help="training batch size (default: %(default)s, as published)",
    )
    parser.add_argument(
        "--seed", type=_int_at_least(0), default=0, metavar="S",
        help="random seed (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the final JSON line, no progress"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory; created if missing, its model.keras and train.json replaced",
    )
    parser.set_defaults(func=_cmd_train)


def _cmd_train(args):
    """Trains and saves an autoencoder; returns the JSON summary."""
    if args.quiet:
        verbose = 0
    else:
        verbose = 1 if sys.stdout.isatty() else 2
    _, record = train_autoencoder(
        args.arch,
        args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        data_dir=args.data_dir,
        verbose=verbose,
    )
    config = record["config"]
    final_loss = record["history"]["loss"][-1]
    if not args.quiet:
        epochs = config["epochs"]
        print(
            f"Trained {config['arch']} autoencoder on {config['dataset']} (train split), "
            f"{epochs} epoch{'s' if epochs > 1 else ''} in {record['seconds']:.1f} s: "
            f"final loss {final_loss:.6g}, train reconstruction error "
            f"{record['train_reconstruction_error']:.6g}."
        )
        print(f"Wrote {os.path.join(args.out, MODEL_FILE)} and {RECORD_FILE}.")
    return {
        "out": args.out,
        "arch": config["arch"],
        "dataset": config["dataset"],
        "epochs": config["epochs"],
        "final_loss": final_loss,
        "train_reconstruction_error": record["train_reconstruction_error"],
        "seconds": record["seconds"],
    }


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
    parser.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        default=256,
        metavar="B",
        help=(
            "samples reconstructed at once; does not change the result "
            "(default: %(default)s)"
        ),
    )
    parser.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args):
    """Evaluates a saved model's reconstruction error; returns the JSON summary."""
    model, _ = load_model_dir(args.model)
    x, _ = datasets.load(args.dataset, args.split, data_dir=args.data_dir)
    try:
        error = reconstruction_error(model, x, batch_size=args.batch_size)
    except ValueError as err:
        raise ValueError(
            f"cannot evaluate {args.model} on {args.dataset!r} ({args.split} split): {err}"
        ) from err
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
        "Generate one MINE-UAE per sample of a dataset split (MinMax, Algorithm 1).",
        "Attacks the autoencoder saved by 'uae train' with its reconstruction criterion.\n"
        "Writes DIR/uae.npz (x_adv, success, mi, f, index) and DIR/summary.json (n, asr,\n"
        "mean_mi, seconds, samples_per_second, config, versions). Results are written in\n"
        "chunks as they are made: rerun the same command after an interruption and it\n"
        "resumes; a different configuration into the same DIR is refused.",
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k --limit 200 --out runs/uae\n"
        "  uae generate --model runs/conv-mnist5k --dataset mnist5k --preset paper \\\n"
        "      --batch-size 8 --out runs/uae-paper",
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
        "--preset", choices=sorted(PRESETS), default="fast",
        help="attack settings: 'paper' (T=40, 20 MINE steps) or 'fast' (T=20, 5 MINE "
        "steps; default)",
    )
    parser.add_argument(
        "--batch-size", type=_int_at_least(1), metavar="B",
        help="samples attacked at once; does not change the results (default: 32 with a "
        "GPU, else 1, the fastest on a CPU)",
    )
    parser.add_argument(
        "--seed", type=_int_at_least(0), default=0, metavar="S",
        help="random seed (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", required=True, metavar="DIR", help="results directory")
    parser.set_defaults(func=_cmd_generate)


def _cmd_generate(args):
    """Generates UAEs for a dataset split; returns the JSON summary."""
    model, _ = load_model_dir(args.model)
    x, _ = datasets.load(args.dataset, args.split, data_dir=args.data_dir)
    if args.limit is not None:
        x = x[: args.limit]
    config = {
        "model_sha256": _file_sha256(_model_file(args.model)),
        "dataset": args.dataset,
        "split": args.split,
        "limit": args.limit,
    }
    summary = generate(
        model, x, args.out, preset=args.preset, view=args.view, batch_size=args.batch_size,
        seed=args.seed, verbose=not args.quiet, config=config,
    )
    if not args.quiet:
        print(
            f"Generated {summary['n']} UAEs in {args.out}: ASR {summary['asr']:.1%}, mean MI "
            f"{summary['mean_mi']:.4g}, {summary['samples_per_second']:.3g} samples/s."
        )
    return {k: summary[k] for k in ("n", "asr", "mean_mi", "seconds", "samples_per_second")} | {
        "out": args.out
    }


def _model_file(path):
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SUBCOMMAND_PARSERS = (_add_train_parser, _add_evaluate_parser, _add_generate_parser)


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
            "  uae generate --model runs/conv-mnist5k --dataset mnist5k --limit 200 --out runs/uae\n\n"
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
    except (ValueError, OSError, datasets.DatasetUnavailableError) as err:
        return _fail(err, _EXIT_RUNTIME_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", _EXIT_INTERRUPTED)
    print(json.dumps(summary))
    return 0


def _fail(message, code):
    """Prints ``message`` as one ``uae: error:`` line on stderr; returns ``code``."""
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return code
