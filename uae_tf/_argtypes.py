"""Argument parsing shared by the ``uae`` command line and the experiments."""

import argparse

from uae_tf._tabular import SOURCES
from uae_tf._validation import SEED_LIMIT, check_seed
from uae_tf.distribution import normalize as normalize_devices
from uae_tf.presets import PRESETS


def int_at_least(minimum):
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


def names_among(choices):
    """Returns an argparse ``type`` that parses comma-separated names, each one of ``choices``."""

    def parse(text):
        names = tuple(name.strip() for name in text.split(","))
        if any(name not in choices for name in names):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated names among {','.join(choices)}, got {text!r}")
        return names

    return parse


def float_at_least(minimum):
    """Returns an argparse ``type`` that parses a finite number >= ``minimum``."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum:g}, got {text!r}")
        return value

    return parse


def positive_float(text):
    """Parses a finite number > 0 (a standard deviation, a rate)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def seed(text):
    """Parses ``--seed``: an integer the library's one seed check accepts (see
    :func:`uae_tf._validation.check_seed`); argparse names the option in the error."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer in [0, {SEED_LIMIT - 1}], got {text!r}") from None


def add_seed_argument(parser, help="random seed", default=0):
    """Adds ``--seed S``, parsed by :func:`seed` (``help`` says what it seeds)."""
    parser.add_argument(
        "--seed", type=seed, default=default, metavar="S",
        help=help + (" (default: %(default)s)" if default is not None else ""),
    )


def initial_perturbation(text):
    """Parses ``--initial-perturbation``: ``"glorot"`` or a radius in [0, 1]."""
    if text == "glorot":
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected 'glorot' or a number in [0, 1], got {text!r}")
    return value


def shard(text):
    """Parses ``--shard I/N``: shard I (0-based) of N, as ``(I, N)``."""
    parts = text.split("/")
    try:
        i, n = (int(part) for part in parts)
    except ValueError:
        i = n = None
    if len(parts) != 2 or i is None or not 0 <= i < n:
        raise argparse.ArgumentTypeError(
            f"expected I/N with integers 0 <= I < N (e.g. 0/4), got {text!r}")
    return i, n


def devices(text):
    """Parses ``--devices``: a count N >= 1 or comma-separated device names (``GPU:0,GPU:1``)."""
    try:
        return normalize_devices(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of devices >= 1 or device names such as GPU:0,GPU:1, got {text!r}"
        ) from None


def dataset_option(text):
    """Parses ``--dataset-option KEY=VALUE`` into ``(KEY, VALUE)`` (checked by the loader)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. fill=observed_mean), "
                                         f"got {text!r}")
    return key, value


def add_dataset_option_argument(parser):
    """Adds ``--dataset-option KEY=VALUE`` (repeatable) as ``dataset_options``, a list of pairs."""
    parser.add_argument(
        "--dataset-option", dest="dataset_options", action="append", type=dataset_option,
        default=[], metavar="KEY=VALUE",
        help="an option of the dataset's loader, repeatable (the first value is the "
        "default): " + "; ".join(
            f"{name} takes {option}=" + "|".join(values)
            for name, source in SOURCES.items() for option, values in source.options))


def add_devices_argument(parser):
    """Adds ``--devices``: train under tf.distribute.MirroredStrategy on several devices."""
    parser.add_argument(
        "--devices", type=devices, metavar="N|NAMES",
        help="devices to train on, each batch split across them (tf.distribute."
        "MirroredStrategy): N (1: one device; N >= 2: the first N GPUs, or CPUs "
        "without a GPU) or names such as GPU:0,GPU:1 (default: every GPU when "
        "TensorFlow sees two or more, else one device)",
    )


# One name, one meaning and one help text per concept, for every subcommand (the
# README's "One vocabulary" table lists them).
QUIET_HELP = "print only the final JSON line: no progress, no summary"


def add_quiet_argument(parser):
    """Adds ``--quiet``: print only the final JSON line."""
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)


_ATTACK_BATCH_SIZE_DEFAULT = ("1 on a CPU (16 for the random view's cache-sized networks); "
                              "on a GPU as many as its free memory holds, up to 512")


def add_attack_batch_size_argument(parser, default=_ATTACK_BATCH_SIZE_DEFAULT):
    """Adds ``--attack-batch-size``: samples attacked at once (results do not depend on it)."""
    parser.add_argument(
        "--attack-batch-size", type=int_at_least(1), metavar="B",
        help=f"samples attacked at once; does not change the results (default: {default})",
    )


def add_steps_arguments(parser, steps, mine_steps=None, what="per sample",
                        default_help="%(default)s"):
    """Adds ``--steps`` (T, MinMax iterations) and, if ``mine_steps`` is given, ``--mine-steps``.

    ``default_help`` says what the default of ``--steps`` is, when ``steps`` alone
    does not (``None``: the preset's).
    """
    parser.add_argument(
        "--steps", type=int_at_least(1), default=steps, metavar="T",
        help=f"MinMax iterations {what} (default: {default_help})",
    )
    if mine_steps is not None:
        parser.add_argument(
            "--mine-steps", type=int_at_least(1), default=mine_steps, metavar="K",
            help="MINE Adam steps per MinMax iteration (default: %(default)s)",
        )


def add_replicate_arguments(parser, preset="fast"):
    """Adds ``--preset`` (the experiments' CPU-sized default), ``--seeds`` and ``--seed``."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=preset,
                        help="attack settings (default: %(default)s)")
    parser.add_argument("--seeds", type=int_at_least(1), default=1, metavar="N",
                        help="replicates, seeds S..S+N-1 (default: %(default)s)")
    add_seed_argument(parser, help="first seed")
