"""The fault sweep of issue 26: bad inputs and faults, each with the outcome it must have.

Runs well over a hundred cases through the command line and the Python API, the way
a new user meets them: bad arguments and seeds, models that are not autoencoders or
have NaN weights, run directories with a missing config, chunks of another run,
truncated and bit-flipped result files, directories of the wrong kind, full and
read-only disks, SIGKILL and SIGINT in the middle of a run. Each case states what a
correct outcome is, and the script classifies what happened:

* ``handled``: the expected refusal (the command's one ``uae: error:`` line with its
  exit code, 2 for bad arguments and 1 for failures, naming what it must name; in
  Python the expected exception, naming it), or success with a result checked
  correct (a resume bit for bit equal to an uninterrupted run...);
* ``unclear``: an error, but with another exit code or exception type, or not naming
  what it must;
* ``traceback``: a Python traceback (the command) or an exception of no documented
  kind (Python);
* ``silent``: success where it must fail, or a wrong result;
* ``lost``: finished work thrown away (a training run to the end and then not
  saved, a model replaced, chunks not reused).

The command-line cases run ``uae_tf.cli.main`` in this process (an exception that
escapes it is what would print a traceback), except those that need a process of
their own: signals, the ``uae`` console script. Full and read-only disks are tmpfs
and read-only bind mounts when this process may mount them (root), else the
kernel's file-size limit (RLIMIT_FSIZE) stands in for a full disk.

Usage (about 5 minutes on 2 cores)::

    PYTHONPATH=. python tools/fault_sweep.py [--workdir DIR] [--only SUBSTRING] [--verbose] [--list]

Prints one line per case and a table of counts; exits 1 if any case is not handled.
"""

import argparse
import collections
import contextlib
import dataclasses
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import uae_tf  # noqa: E402
from uae_tf import cli, datasets, generation, runs, training  # noqa: E402
from uae_tf._io import write_json_atomic, write_npz_atomic  # noqa: E402
from uae_tf.attacks import GaussianAugmentation, MinMaxAttack  # noqa: E402
from uae_tf.criteria import MarginCriterion, ReconstructionCriterion  # noqa: E402

OUTCOMES = ("handled", "unclear", "traceback", "silent", "lost")
# A MinMax attack small enough for a sweep (see tests/test_reliability.py).
SMALL = dict(view="random", steps=2, jit_compile=False,
             similarity={"mine_steps": 1, "num_projections": 4, "projection_dim": 4})
SIGNAL_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
TF_LOG_LINE = re.compile(r"[IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog")


@dataclasses.dataclass
class Result:
    """What one case gave: its outcome among :data:`OUTCOMES` and why."""

    outcome: str
    note: str = ""


@dataclasses.dataclass
class Case:
    """One bad input or fault: where it enters, what must happen, and the check."""

    name: str
    surface: str  # "cli" or "api"
    expect: str
    run: object  # () -> Result


CASES = []


def case(surface, expect):
    """Registers the decorated function ``() -> Result`` as a case."""
    def register(function):
        CASES.append(Case(function.__name__, surface, expect, function))
        return function
    return register


# --- How a case is judged ---------------------------------------------------------


def run_cli(argv):
    """``(code, stdout, stderr, escaped)`` of ``uae ARGV`` run in this process;
    ``escaped`` is the exception (with its traceback text) that left ``main``."""
    out, err = io.StringIO(), io.StringIO()
    escaped = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except BaseException as error:  # noqa: BLE001 - exactly what we look for
            code, escaped = None, (error, traceback.format_exc())
    return code, out.getvalue(), err.getvalue(), escaped


def cli_error(argv, code, *names):
    """The command must fail with exit ``code`` and one error line naming ``names``."""
    got, out, err, escaped = run_cli(argv)
    return judge_cli(got, err, escaped, code, names)


def judge_cli(got, err, escaped, code, names):
    if escaped is not None or "Traceback" in err:
        what = escaped[0] if escaped else err.strip().splitlines()[-1]
        return Result("traceback", f"{type(what).__name__ if escaped else ''} {what}"[:200])
    if got == 0:
        return Result("silent", "exit 0")
    # TensorFlow's C++ logging writes to stderr at import, before any uae code runs.
    lines = [line for line in err.strip().splitlines()
             if not (line.startswith("uae: warning") or TF_LOG_LINE.match(line))]
    missing = [n for n in names if not any(str(n) in line for line in lines)]
    if got != code or len(lines) != 1 or not lines[0].startswith("uae: error:") or missing:
        return Result("unclear", f"exit {got}, missing {missing}: {err.strip()[:200]}")
    return Result("handled", lines[0][:160])


def api_error(call, kind, *names):
    """``call()`` must raise ``kind`` whose message names ``names``."""
    try:
        value = call()
    except kind as error:
        missing = [n for n in names if str(n) not in str(error)]
        if missing:
            return Result("unclear", f"{type(error).__name__} missing {missing}: {error}"[:200])
        return Result("handled", f"{type(error).__name__}: {error}"[:160])
    except Exception as error:  # noqa: BLE001
        return Result("traceback", f"{type(error).__name__}: {error}"[:200])
    return Result("silent", f"returned {value!r}"[:200])


def correct(condition, note):
    """A case whose call succeeded: handled if ``condition``, else a silent wrong result."""
    return Result("handled" if condition else "silent", note)


def cli_ok(argv):
    """``(json line, stderr)`` of a command that must succeed, or raises AssertionError."""
    code, out, err, escaped = run_cli(argv)
    if code != 0:
        raise AssertionError(f"uae {' '.join(map(str, argv))} failed ({code}): {err}"
                             f"{escaped[1] if escaped else ''}")
    return json.loads(out.strip().splitlines()[-1]), err


class FitCounter:
    """Counts ``keras.Model.fit`` calls in this process (training that happened)."""

    def __init__(self):
        self.calls = 0
        self._fit = keras.Model.fit

        def counting(model, *args, **kwargs):
            self.calls += 1
            return self._fit(model, *args, **kwargs)

        keras.Model.fit = counting


FITS = None  # The FitCounter, installed by main.


# --- Disks that are full or read-only -----------------------------------------------


def _mount(*args):
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def full_disk(work):
    """A directory on a filesystem with no room: a full 64 KiB tmpfs when we may mount
    one, else one whose writes fail by RLIMIT_FSIZE."""
    directory = Path(tempfile.mkdtemp(dir=work, prefix="full-"))
    if _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)):
        try:
            with open(directory / "filler", "wb", buffering=0) as filler:
                with contextlib.suppress(OSError):
                    while filler.write(b"\0" * 4096):
                        pass
            yield directory
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield directory
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@contextlib.contextmanager
def read_only(work):
    """A read-only directory: a read-only bind mount (root ignores permission bits);
    ``None`` when this process may not mount."""
    source = Path(tempfile.mkdtemp(dir=work, prefix="ro-src-"))
    target = Path(tempfile.mkdtemp(dir=work, prefix="ro-"))
    if not _mount("--bind", str(source), str(target)):
        yield None
        return
    try:
        if not _mount("-o", "remount,bind,ro", str(target)):
            yield None
            return
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


# --- Shared material, made once -------------------------------------------------------


class Fixtures:
    """Models and runs the cases use, made once under ``work``."""

    def __init__(self, work):
        self.work = Path(work)
        self.x = datasets.load("mnist5k", "train")[0]
        self.conv = self.path("conv")
        cli_ok(["train", "--arch", "conv", "--dataset", "mnist5k", "--epochs", 1, "--limit",
                200, "--quiet", "--out", self.conv])
        self.conv_model = training.load_model_dir(self.conv)[0]
        self.dense = self.path("dense")
        cli_ok(["train", "--arch", "dense", "--dataset", "mnist5k", "--epochs", 1, "--limit",
                200, "--quiet", "--out", self.dense])
        self.dense_model = training.load_model_dir(self.dense)[0]
        self.classifier = self.path("classifier")
        cli_ok(["train", "--arch", "classifier", "--dataset", "mnist5k", "--epochs", 1,
                "--limit", 200, "--quiet", "--out", self.classifier])
        self.classifier_model = training.load_model_dir(self.classifier)[0]
        self.nan = self.path("nan")
        nan_model = keras.models.clone_model(self.dense_model)
        nan_model.set_weights([np.full_like(w, np.nan) for w in nan_model.get_weights()])
        nan_model.save(self.nan / runs.MODEL_FILE)
        self.nan_model = nan_model
        # A GA generation by the command line (its config names the model's hash).
        self.ga = self.path("ga")
        cli_ok(["generate", "--model", self.conv, "--dataset", "mnist5k", "--limit", 200,
                "--method", "gaussian", "--quiet", "--out", self.ga])
        # A small MinMax generation of 6 samples in 3 chunks, and its results.
        self.mine = self.path("mine")
        self.mine_results = generation.generate(self.conv_model, self.x[:6], self.mine,
                                                batch_size=2, verbose=False, **SMALL)

    def path(self, name):
        """A new empty directory ``work/NAME`` (a number added if taken)."""
        path = self.work / name
        index = 1
        while path.exists():
            path = self.work / f"{name}-{index}"
            index += 1
        path.mkdir(parents=True)
        return path

    def copy(self, source, name):
        """A copy of directory ``source`` under a new name."""
        target = self.work / name
        index = 1
        while target.exists():
            target = self.work / f"{name}-{index}"
            index += 1
        shutil.copytree(source, target)
        return target

    def mine_again(self, out, **kwargs):
        """Generates the small MinMax run into ``out`` (to resume or be refused)."""
        return generation.generate(kwargs.pop("model", self.conv_model),
                                   kwargs.pop("x", self.x[:6]), out, batch_size=2,
                                   verbose=False, **{**SMALL, **kwargs})


F = None  # The Fixtures, made by main.


def same_results(a, b):
    """Whether two results hold the same arrays bit for bit."""
    return all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
               for k in ("x_adv", "success", "mi", "f", "mi_history", "c_history"))


def flip(path, offset, bit=0x10):
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= bit
    path.write_bytes(bytes(data))


def truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


# --- Command line: arguments (exit 2, naming the option) ----------------------------

TRAIN = ["train", "--arch", "conv", "--dataset", "mnist5k", "--out", "unused"]
GENERATE = ["generate", "--model", "unused", "--dataset", "mnist5k", "--out", "unused"]


def _argument_case(name, argv, *names):
    def check():
        return cli_error(argv, 2, *names)
    check.__name__ = name
    case("cli", "exit 2, one line naming " + ", ".join(map(str, names)))(check)


for _name, _argv, _names in [
    ("train_unknown_arch", ["train", "--arch", "vae", "--dataset", "mnist5k", "--out", "x"],
     ["'vae'"]),
    ("train_unknown_dataset", ["train", "--arch", "conv", "--dataset", "imagenet", "--out", "x"],
     ["'imagenet'"]),
    ("train_epochs_0", [*TRAIN, "--epochs", "0"], ["--epochs"]),
    ("train_epochs_negative", [*TRAIN, "--epochs", "-3"], ["--epochs"]),
    ("train_epochs_text", [*TRAIN, "--epochs", "ten"], ["--epochs"]),
    ("train_batch_size_0", [*TRAIN, "--batch-size", "0"], ["--batch-size"]),
    ("train_limit_0", [*TRAIN, "--limit", "0"], ["--limit"]),
    ("train_no_out", ["train", "--arch", "conv", "--dataset", "mnist5k"], ["--out"]),
    ("train_seed_negative", [*TRAIN, "--seed", "-1"], ["--seed"]),
    ("train_seed_2_32", [*TRAIN, "--seed", "4294967296"], ["--seed"]),
    ("train_seed_2_31", [*TRAIN, "--seed", str(2**31)], ["--seed"]),
    ("train_seed_float", [*TRAIN, "--seed", "1.7"], ["--seed"]),
    ("train_seed_2_63", [*TRAIN, "--seed", str(2**63)], ["--seed"]),
    ("train_features_not_concrete", [*TRAIN, "--features", "5"], ["--features"]),
    ("train_devices_0", [*TRAIN, "--devices", "0"], ["--devices"]),
    ("train_devices_text", [*TRAIN, "--devices", "banana"], ["--devices"]),
    ("generate_unknown_method", [*GENERATE, "--method", "fgsm"], ["'fgsm'"]),
    ("generate_sigma_negative", [*GENERATE, "--method", "gaussian", "--sigma", "-0.5"],
     ["--sigma"]),
    ("generate_sigma_0", [*GENERATE, "--method", "gaussian", "--sigma", "0"], ["--sigma"]),
    ("generate_sigma_nan", [*GENERATE, "--method", "gaussian", "--sigma", "nan"], ["--sigma"]),
    ("generate_initial_perturbation_2", [*GENERATE, "--initial-perturbation", "2"],
     ["--initial-perturbation"]),
    ("generate_unknown_view", [*GENERATE, "--view", "pca"], ["'pca'"]),
    ("generate_unknown_preset", [*GENERATE, "--preset", "slow"], ["'slow'"]),
    ("generate_attack_batch_size_0", [*GENERATE, "--attack-batch-size", "0"],
     ["--attack-batch-size"]),
    ("generate_shard_2_of_2", [*GENERATE, "--shard", "2/2"], ["'2/2'"]),
    ("generate_shard_of_0", [*GENERATE, "--shard", "1/0"], ["'1/0'"]),
    ("generate_shard_text", [*GENERATE, "--shard", "half"], ["'half'"]),
    ("generate_gpus_per_worker_negative", [*GENERATE, "--gpus-per-worker", "-1"],
     ["--gpus-per-worker"]),
    ("generate_limit_0", [*GENERATE, "--limit", "0"], ["--limit"]),
    ("generate_unknown_split", [*GENERATE, "--split", "val"], ["'val'"]),
    ("generate_seed_2_32", [*GENERATE, "--seed", "4294967296"], ["--seed"]),
    ("generate_seed_negative", [*GENERATE, "--seed", "-1"], ["--seed"]),
    ("evaluate_unknown_split", ["evaluate", "--model", "m", "--dataset", "mnist5k", "--split",
                                "val"], ["'val'"]),
    ("evaluate_no_model", ["evaluate", "--dataset", "mnist5k"], ["--model"]),
    ("retrain_epochs_0", ["retrain", "--model", "m", "--augment", "a", "--epochs", "0", "--out",
                          "o"], ["--epochs"]),
    ("retrain_seed_negative", ["retrain", "--model", "m", "--augment", "a", "--seed", "-5",
                               "--out", "o"], ["--seed"]),
    ("table4_seeds_0", ["reproduce", "table4", "--dataset", "digits", "--arch", "dense",
                        "--seeds", "0", "--out", "o"], ["--seeds"]),
    ("table4_seed_2_32", ["reproduce", "table4", "--dataset", "digits", "--arch", "dense",
                          "--seed", "4294967296", "--out", "o"], ["--seed"]),
    ("figure10b_epsilon_300", ["reproduce", "figure10b", "--table7", "t", "--epsilons", "300",
                               "--out", "o"], ["--epsilons"]),
    ("figure10b_seed_2_40", ["reproduce", "figure10b", "--table7", "t", "--seed", str(2**40),
                             "--out", "o"], ["--seed"]),
    ("unknown_command", ["attack"], ["'attack'"]),
    ("unknown_experiment", ["reproduce", "table99", "--out", "o"], ["'table99'"]),
]:
    _argument_case(_name, _argv, *_names)


@case("cli", "exit 2: --workers is for --engine ray")
def generate_workers_with_local_engine():
    return cli_error(["generate", "--model", F.conv, "--dataset", "mnist5k", "--workers", 2,
                      "--out", F.work / "unused"], 2, "--workers")


@case("cli", "exit 2: --sigma is for --method gaussian")
def generate_sigma_with_mine():
    return cli_error(["generate", "--model", F.conv, "--dataset", "mnist5k", "--sigma", 0.1,
                      "--out", F.work / "unused"], 2, "--sigma")


@case("cli", "exit 2: --initial-perturbation is not for --method gaussian")
def generate_initial_perturbation_with_gaussian():
    return cli_error(["generate", "--model", F.conv, "--dataset", "mnist5k", "--method",
                      "gaussian", "--initial-perturbation", 0.1, "--out", F.work / "unused"],
                     2, "--initial-perturbation")


# --- Command line: models and data (exit 1, naming the file or the problem) ----------


@case("cli", "exit 1 naming the missing path")
def evaluate_missing_model():
    return cli_error(["evaluate", "--model", F.work / "no-such", "--dataset", "mnist5k"], 1,
                     F.work / "no-such")


@case("cli", "exit 1: model.keras is not a readable Keras model")
def evaluate_corrupt_model():
    directory = F.path("corrupt-model")
    (directory / runs.MODEL_FILE).write_bytes(b"\0not a zip" * 50)
    return cli_error(["evaluate", "--model", directory, "--dataset", "mnist5k"], 1,
                     "model.keras is not a readable Keras model")


@case("cli", "exit 1: a truncated model.keras is not a readable Keras model")
def evaluate_truncated_model():
    directory = F.copy(F.conv, "truncated-model")
    truncate(directory / runs.MODEL_FILE, 2000)
    return cli_error(["evaluate", "--model", directory, "--dataset", "mnist5k"], 1,
                     "model.keras")


@case("cli", "exit 1: a .txt file is not a .keras file")
def evaluate_text_file_as_model():
    path = F.path("text") / "model.txt"
    path.write_text("hello")
    return cli_error(["evaluate", "--model", path, "--dataset", "mnist5k"], 1,
                     "is not a .keras file")


@case("cli", "exit 1 naming both shapes")
def evaluate_on_other_image_shape():
    return cli_error(["evaluate", "--model", F.conv, "--dataset", "digits"], 1,
                     "(28, 28, 1)", "8, 8, 1)")


@case("cli", "exit 1: NaN reconstructions are no error to report")
def evaluate_nan_weights():
    return cli_error(["evaluate", "--model", F.nan, "--dataset", "mnist5k"], 1,
                     "NaN or infinite")


@case("cli", "exit 1: a classifier is not a reconstruction model")
def evaluate_classifier():
    return cli_error(["evaluate", "--model", F.classifier, "--dataset", "mnist5k"], 1,
                     "output shape")


@case("cli", "exit 1 naming the missing model")
def generate_missing_model():
    return cli_error(["generate", "--model", F.work / "none", "--dataset", "mnist5k",
                      "--out", F.work / "g-missing"], 1, F.work / "none")


for _limit in (1, 3):
    def _generate_classifier(limit=_limit):
        return cli_error(["generate", "--model", F.classifier, "--dataset", "mnist5k",
                          "--limit", limit, "--out", F.path("g-classifier")], 1,
                         "must return outputs of its input's shape")
    _generate_classifier.__name__ = f"generate_classifier_limit_{_limit}"
    case("cli", "exit 1: a classifier is not an autoencoder")(_generate_classifier)


@case("cli", "exit 1: NaN criterion, not 'ASR 0%'")
def generate_nan_weights():
    return cli_error(["generate", "--model", F.nan, "--dataset", "mnist5k", "--limit", 2,
                      "--method", "gaussian", "--out", F.path("g-nan")], 1, "NaN or infinite f")


@case("cli", "exit 1: another seed into a run directory is refused, naming seed")
def generate_other_seed_into_run():
    return cli_error(["generate", "--model", F.conv, "--dataset", "mnist5k", "--limit", 200,
                      "--method", "gaussian", "--seed", 3, "--out", F.ga], 1,
                     "another configuration", "seed: 0 -> 3")


@case("cli", "exit 1: another model into a run directory is refused, naming model_sha256")
def generate_other_model_into_run():
    return cli_error(["generate", "--model", F.dense, "--dataset", "mnist5k", "--limit", 200,
                      "--method", "gaussian", "--out", F.ga], 1, "model_sha256")


def _orphaned_ga():
    orphan = F.copy(F.ga, "ga-orphan")
    (orphan / "config.json").unlink()
    (orphan / "uae.npz").unlink()
    return orphan


@case("cli", "exit 1: chunks without config.json are not adopted by another model")
def generate_orphan_chunks_other_model():
    orphan = _orphaned_ga()
    result = cli_error(["generate", "--model", F.dense, "--dataset", "mnist5k", "--limit", 200,
                        "--method", "gaussian", "--out", orphan], 1, "without a config.json")
    if result.outcome == "silent":
        result.note += "; uae.npz labelled with the dense model"
    return result


@case("cli", "exit 1: chunks without config.json are not relabelled with another seed")
def generate_orphan_chunks_other_seed():
    return cli_error(["generate", "--model", F.conv, "--dataset", "mnist5k", "--limit", 200,
                      "--method", "gaussian", "--seed", 3, "--out", _orphaned_ga()], 1,
                     "without a config.json")


def _ga_with_stray_chunk(prepare):
    out = F.copy(F.ga, "ga-stray")
    (out / "uae.npz").unlink()
    chunk = out / "chunks" / "00000000.npz"
    prepare(chunk)
    return out, chunk


def _generate_ga_into(out, *names):
    return cli_error(["generate", "--model", F.conv, "--dataset", "mnist5k", "--limit", 200,
                      "--method", "gaussian", "--out", out], 1, *names)


@case("cli", "exit 1 naming a chunk copied from a run of another sigma")
def generate_chunk_of_another_run():
    other = F.path("ga-other")
    cli_ok(["generate", "--model", F.conv, "--dataset", "mnist5k", "--limit", 200, "--method",
            "gaussian", "--sigma", 0.02, "--quiet", "--out", other])
    out, chunk = _ga_with_stray_chunk(
        lambda chunk: shutil.copy(other / "chunks" / "00000000.npz", chunk))
    return _generate_ga_into(out, chunk, "another run")


@case("cli", "exit 1 naming a chunk of a --method start run")
def generate_chunk_of_a_start_run():
    start = F.path("start")
    cli_ok(["generate", "--model", F.conv, "--dataset", "mnist5k", "--limit", 200, "--method",
            "start", "--quiet", "--out", start])
    out, chunk = _ga_with_stray_chunk(
        lambda chunk: shutil.copy(start / "chunks" / "00000000.npz", chunk))
    return _generate_ga_into(out, chunk)


for _keep in (0, 100, 5000, -200):
    def _truncated_chunk(keep=_keep):
        out, chunk = _ga_with_stray_chunk(lambda chunk: truncate(chunk, keep if keep >= 0 else
                                                                 chunk.stat().st_size + keep))
        return _generate_ga_into(out, chunk, "delete it")
    _truncated_chunk.__name__ = f"generate_truncated_chunk_{_keep}"
    case("cli", "exit 1 naming the truncated chunk, saying to delete it")(_truncated_chunk)

for _offset in (40, 700, 20000, 300000):
    def _flipped_chunk(offset=_offset):
        out, chunk = _ga_with_stray_chunk(lambda chunk: flip(chunk, offset))
        return _generate_ga_into(out, chunk, "delete it")
    _flipped_chunk.__name__ = f"generate_bit_flipped_chunk_{_offset}"
    case("cli", "exit 1 naming the bit-flipped chunk")(_flipped_chunk)


@case("cli", "exit 1 naming a chunk of random bytes")
def generate_random_bytes_chunk():
    out, chunk = _ga_with_stray_chunk(
        lambda chunk: chunk.write_bytes(np.random.default_rng(0).bytes(3000)))
    return _generate_ga_into(out, chunk, "delete it")


@case("cli", "exit 1: a config.json of another kind is refused")
def generate_into_foreign_config():
    out = F.path("foreign")
    (out / "config.json").write_text('{"something": "else"}')
    return _generate_ga_into(out, "not a uae-tf config")


@case("cli", "exit 1 naming an unreadable config.json")
def generate_into_corrupt_config():
    out = F.copy(F.ga, "ga-bad-config")
    (out / "config.json").write_text("{not json")
    return _generate_ga_into(out, "config.json is not a readable")


@case("cli", "exit 1: --out is a file")
def generate_out_is_a_file():
    path = F.path("file-out") / "file"
    path.write_text("x")
    return _generate_ga_into(path, path)


@case("cli", "exit 1 naming the full disk's path; no partial file left")
def generate_onto_a_full_disk():
    with full_disk(F.work) as disk:
        out = disk / "run"
        result = _generate_ga_into(out, out)
        left = [p.name for p in out.rglob("*") if p.is_file()] if out.exists() else []
    if result.outcome == "handled" and any(name.endswith(".tmp") for name in left):
        return Result("unclear", f"temp files left: {left}")
    return result


@case("cli", "exit 1 naming the read-only --out")
def generate_onto_a_read_only_disk():
    with read_only(F.work) as directory:
        if directory is None:
            return Result("unclear", "could not mount a read-only directory: not run")
        return _generate_ga_into(directory / "run", directory / "run")


# --- Command line: reading another command's directory ------------------------------


def _retrain_error(model, augment, *names, extra=()):
    """``uae retrain --model MODEL --augment AUGMENT`` must fail (exit 1) naming ``names``."""
    return cli_error(["retrain", "--model", model, "--augment", augment, *extra, "--out",
                      F.path("retrained")], 1, *names)


@case("cli", "exit 1 naming a truncated uae.npz, saying to delete it")
def retrain_truncated_uae_npz():
    out = F.copy(F.ga, "ga-truncated")
    truncate(out / "uae.npz", 3000)
    return _retrain_error(F.conv, out, out / "uae.npz", "delete it")


@case("cli", "exit 1 naming a bit-flipped uae.npz")
def retrain_bit_flipped_uae_npz():
    out = F.copy(F.ga, "ga-flipped")
    flip(out / "uae.npz", 5000)
    return _retrain_error(F.conv, out, out / "uae.npz")


@case("cli", "exit 1: a uae.npz copied from another run does not match its summary")
def retrain_uae_npz_of_another_run():
    other = F.path("ga-sigma")
    cli_ok(["generate", "--model", F.conv, "--dataset", "mnist5k", "--limit", 200, "--method",
            "gaussian", "--sigma", 0.05, "--quiet", "--out", other])
    out = F.copy(F.ga, "ga-swapped")
    shutil.copy(other / "uae.npz", out / "uae.npz")
    return _retrain_error(F.conv, out, "made by another run")


for _name, _model, _augment, _names, _expect in [
    ("retrain_missing_augment", "conv", "none", ["uae generate"], "--augment does not exist"),
    ("retrain_model_dir_as_augment", "conv", "conv", ["uae generate"],
     "--augment is a model directory"),
    ("retrain_generation_dir_as_model", "ga", "ga", ["train.json"],
     "--model is a generation directory"),
    ("retrain_classifier", "classifier", "ga", ["'classifier'"], "--model is a classifier"),
    ("retrain_uaes_of_another_model", "dense", "ga", ["another model", "--allow-other-model"],
     "UAEs of another model are refused without --allow-other-model"),
]:
    def _retrain_case(model=_model, augment=_augment, names=_names):
        where = {"none": F.work / "none"}
        return _retrain_error(where.get(model) or getattr(F, model),
                              where.get(augment) or getattr(F, augment), *names)
    _retrain_case.__name__ = _name
    case("cli", "exit 1: " + _expect)(_retrain_case)


@case("cli", "success: --allow-other-model retrains on them, recording the augmentation")
def retrain_uaes_of_another_model_allowed():
    summary, _ = cli_ok(["retrain", "--model", F.dense, "--augment", F.ga, "--epochs", 1,
                         "--allow-other-model", "--quiet", "--out", F.path("r-allowed")])
    return correct(summary["trained"] and summary["arch"] == "dense", str(summary)[:120])


@case("cli", "exit 1: an augmentation of another dataset")
def retrain_augmentation_of_another_dataset():
    digits = F.path("digits-model")
    cli_ok(["train", "--arch", "dense", "--dataset", "digits", "--epochs", 1, "--quiet",
            "--out", digits])
    return _retrain_error(digits, F.ga, "expected the train split of 'digits'",
                          extra=["--allow-other-model"])


def _figure10b(directory, *names):
    return cli_error(["reproduce", "figure10b", "--table7", directory, "--out",
                      F.path("fig10b")], 1, *names)


@case("cli", "exit 1: figure10b --table7 of a generation directory")
def figure10b_generation_dir():
    return _figure10b(F.ga, "not a finished 'uae reproduce table7' directory",
                      "uae-tf/generation/v1")


@case("cli", "exit 1: figure10b --table7 of a Table 4 directory")
def figure10b_table4_dir():
    table4 = F.path("table4-like")
    runs.check_config(table4, {"seeds": [0], "dataset": "mnist5k"}, format="uae-tf/table4/v1")
    return _figure10b(table4, "uae-tf/table4/v1")


@case("cli", "exit 1: figure10b --table7 of a model directory")
def figure10b_model_dir():
    return _figure10b(F.conv, "uae-tf/model/v1")


@case("cli", "exit 1: figure10b --table7 that does not exist")
def figure10b_missing_dir():
    return _figure10b(F.work / "none", "config.json does not exist")


@case("cli", "exit 1: figure10b --table7 of an unfinished Table 7 run")
def figure10b_unfinished_table7():
    table7 = F.path("table7-unfinished")
    runs.check_config(table7, {"seeds": [0]}, format="uae-tf/table7/v1")
    return _figure10b(table7, "no report.json")


@case("cli", "exit 1: table4 --out of a generation directory")
def table4_into_generation_dir():
    return cli_error(["reproduce", "table4", "--dataset", "digits", "--arch", "dense",
                      "--out", F.ga], 1, "not a uae-tf config of format 'uae-tf/table4/v1'")


# --- Command line: training into --out ----------------------------------------------


def _train_into(out, *more):
    return ["train", "--arch", "dense", "--dataset", "digits", "--epochs", 1, "--quiet",
            *more, "--out", out]


def _train_error_before_fit(out):
    """``uae train --out OUT`` must fail naming OUT, and before any training."""
    fits = FITS.calls
    result = cli_error(_train_into(out), 1, out)
    return Result("lost", "trained, then failed") if FITS.calls > fits else result


@case("cli", "exit 1 naming the read-only --out, before training")
def train_onto_a_read_only_disk():
    with read_only(F.work) as directory:
        if directory is None:
            return Result("unclear", "could not mount a read-only directory: not run")
        return _train_error_before_fit(directory / "model")


@case("cli", "exit 1 naming the full --out, before training")
def train_onto_a_full_disk():
    with full_disk(F.work) as disk:
        return _train_error_before_fit(disk / "model")


@case("cli", "exit 1: --out is a file, before training")
def train_out_is_a_file():
    path = F.path("train-file") / "file"
    path.write_text("x")
    return _train_error_before_fit(path)


@case("cli", "exit 1: --arch dense over a conv model is refused and the model kept")
def train_other_arch_over_a_model():
    out = F.copy(F.conv, "conv-kept")
    before = (out / runs.MODEL_FILE).read_bytes()
    result = cli_error(["train", "--arch", "dense", "--dataset", "mnist5k", "--epochs", 1,
                        "--limit", 200, "--out", out], 1, "arch: 'conv' -> 'dense'",
                       "--overwrite")
    if (out / runs.MODEL_FILE).read_bytes() != before:
        return Result("lost", "the conv model was replaced")
    return result


@case("cli", "exit 1: another seed over a model is refused")
def train_other_seed_over_a_model():
    out = F.copy(F.conv, "conv-seed")
    return cli_error(["train", "--arch", "conv", "--dataset", "mnist5k", "--epochs", 1,
                      "--limit", 200, "--seed", 1, "--out", out], 1, "seed: 0 -> 1")


@case("cli", "success: the same settings reuse the model, nothing trained")
def train_same_settings_reuses():
    out = F.copy(F.conv, "conv-same")
    before = (out / runs.MODEL_FILE).read_bytes()
    summary, _ = cli_ok(["train", "--arch", "conv", "--dataset", "mnist5k", "--epochs", 1,
                         "--limit", 200, "--quiet", "--out", out])
    return correct(summary["trained"] is False
                   and (out / runs.MODEL_FILE).read_bytes() == before, str(summary)[:120])


@case("cli", "success: --overwrite trains the new architecture in its place")
def train_overwrite():
    out = F.copy(F.conv, "conv-overwritten")
    summary, _ = cli_ok(["train", "--arch", "dense", "--dataset", "mnist5k", "--epochs", 1,
                         "--limit", 200, "--overwrite", "--quiet", "--out", out])
    record = json.loads((out / runs.RECORD_FILE).read_text())
    return correct(summary["trained"] and record["config"]["arch"] == "dense", "dense")


@case("cli", "exit 1: a model directory without config.json (older uae-tf) is refused")
def train_over_a_model_without_config():
    out = F.copy(F.conv, "conv-legacy")
    (out / "config.json").unlink()
    return cli_error(["train", "--arch", "dense", "--dataset", "mnist5k", "--epochs", 1,
                      "--limit", 200, "--out", out], 1, "without a config.json")


# --- Command line: signals and the console script (processes of their own) ----------


def _uae(*argv, check=False, timeout=900):
    return subprocess.run([sys.executable, "-m", "uae_tf", *map(str, argv)], env=SIGNAL_ENV,
                          capture_output=True, text=True, timeout=timeout, check=check)


SLOW_GENERATE = ["generate", "--dataset", "mnist5k", "--limit", 4, "--preset", "fast", "--view",
                 "random", "--attack-batch-size", 1, "--quiet"]


def _killed_run(sig):
    """Starts the slow generation, sends ``sig`` once its first chunk is written;
    returns ``(out, process)``."""
    out = F.path(f"killed-{sig}")
    process = subprocess.Popen([sys.executable, "-m", "uae_tf", *map(str, SLOW_GENERATE),
                                "--model", F.conv, "--out", out], env=SIGNAL_ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if list((out / "chunks").glob("*.npz")):
            break
        time.sleep(0.1)
    process.send_signal(sig)
    process.wait(timeout=120)
    return out, process


_REFERENCE = {}


def _uninterrupted():
    """The slow generation run straight through, once: what a resumed run must equal."""
    if "out" not in _REFERENCE:
        out = F.path("straight")
        _uae(*SLOW_GENERATE, "--model", F.conv, "--out", out, check=True)
        _REFERENCE["out"] = out
    return generation.load_results(_REFERENCE["out"])


def _resumed_equals_straight(out, process):
    kept = sorted(p.name for p in (out / "chunks").glob("*.npz"))
    if (out / "uae.npz").exists() or not kept:
        return Result("unclear", f"killed too late or too early (chunks {kept})")
    stray = [p.name for p in out.rglob("*.tmp")]
    times = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.npz")}
    rerun = _uae(*SLOW_GENERATE, "--model", F.conv, "--out", out)
    if rerun.returncode != 0:
        return Result("unclear", f"rerun failed: {rerun.stderr[-300:]}")
    if any((out / "chunks" / name).stat().st_mtime_ns != t for name, t in times.items()):
        return Result("lost", "the chunks of the killed run were attacked again")
    same = same_results(generation.load_results(out), _uninterrupted())
    note = f"{len(kept)} of 4 chunks kept, {len(stray)} temp files"
    return correct(same and not stray, note + ("" if same else "; results differ"))


@case("cli", "SIGKILL: no uae.npz nor temp file; the rerun resumes to what a straight run gives")
def generate_sigkill_then_resume():
    return _resumed_equals_straight(*_killed_run(signal.SIGKILL))


@case("cli", "SIGINT: exit 130 with one line; the rerun resumes, bit for bit")
def generate_sigint_then_resume():
    out, process = _killed_run(signal.SIGINT)
    err = process.stderr.read()
    if "Traceback" in err:
        return Result("traceback", err.strip().splitlines()[-1])
    if process.returncode != 130 or "uae: error: interrupted" not in err:
        return Result("unclear", f"exit {process.returncode}: {err[-200:]}")
    return _resumed_equals_straight(out, process)


@case("cli", "SIGKILL while training: no model.keras, and the rerun trains")
def train_sigkill_then_rerun():
    out = F.path("train-killed")
    argv = ["train", "--arch", "conv", "--dataset", "mnist5k", "--epochs", 3, "--quiet",
            "--out", out]
    process = subprocess.Popen([sys.executable, "-m", "uae_tf", *map(str, argv)],
                               env=SIGNAL_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "config.json").exists():
        time.sleep(0.1)
    time.sleep(3)  # into the training
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (out / runs.MODEL_FILE).exists():
        return Result("unclear", "finished before the kill: not run")
    stray = [p.name for p in out.iterdir() if p.name.startswith(".")]
    rerun = _uae(*argv)
    summary = json.loads(rerun.stdout.strip().splitlines()[-1]) if rerun.returncode == 0 else {}
    return correct(not stray and summary.get("trained") is True,
                   f"temp files {stray}, rerun {summary.get('trained')}")


@case("cli", "the console script: --seed 2**32 exits 2 with one line, no traceback")
def console_script_seed():
    executable = shutil.which("uae")
    if executable is None:
        return Result("unclear", "no `uae` on PATH: not run")
    run = subprocess.run([executable, "generate", "--model", "m", "--dataset", "mnist5k",
                          "--seed", str(2**32), "--out", "o"], env=SIGNAL_ENV,
                         capture_output=True, text=True, timeout=300)
    return judge_cli(run.returncode, run.stderr, None, 2, ["--seed"])


# --- Python API ---------------------------------------------------------------------


def _attack(**kwargs):
    """SMALL's MinMax attack of the conv autoencoder."""
    similarity = uae_tf.MINESimilarity(view="random", mine_steps=1, num_projections=4,
                                       projection_dim=4)
    settings = {"steps": 2, "jit_compile": False, "similarity": similarity, **kwargs}
    return MinMaxAttack(ReconstructionCriterion(F.conv_model), **settings)


def _api_case(name, expect, call, kind, *names):
    def check():
        return api_error(call, kind, *names)
    check.__name__ = name
    case("api", expect)(check)


SEED = "seed must be an integer in [0, 2147483647]"
for _name, _call in [
    ("attack_seed_negative", lambda: _attack(seed=-1)),
    ("attack_seed_float", lambda: _attack(seed=1.7)),
    ("attack_seed_2_32", lambda: _attack(seed=2**32)),
    ("attack_seed_bool", lambda: _attack(seed=True)),
    ("ga_seed_2_31", lambda: GaussianAugmentation(ReconstructionCriterion(F.conv_model),
                                                  seed=2**31)),
    ("generate_seed_negative", lambda: generation.generate(F.conv_model, F.x[:2],
                                                           F.path("g-seed"), seed=-1)),
    ("generate_seed_2_32", lambda: generation.generate(F.conv_model, F.x[:2], F.path("g-seed"),
                                                       seed=2**32)),
    ("generate_seed_float", lambda: generation.generate(F.conv_model, F.x[:2],
                                                        F.path("g-seed"), seed=1.0)),
    ("train_seed_2_31", lambda: uae_tf.train_autoencoder("dense", "digits", seed=2**31)),
    ("mine_estimate_seed_negative", lambda: uae_tf.estimate_mutual_information(
        np.zeros((1, 4, 2)), np.zeros((1, 4, 2)), steps=1, seed=-1)),
    ("random_view_seed_2_40", lambda: uae_tf.RandomView((28, 28, 1), seed=2**40)),
    ("sequence_seed_negative", lambda: uae_tf.UAESequence(F.x[:2], F.x[:2], seed=-3)),
]:
    _api_case(_name, "ValueError naming seed and its range", _call, ValueError, SEED)

for _name, _call, _names in [
    ("attack_nan_input", lambda: _attack()(np.full((1, 28, 28, 1), np.nan, np.float32)),
     ["NaN"]),
    ("attack_8_bit_input", lambda: _attack()(F.x[:1] * 255), ["divide 8-bit images by 255"]),
    ("attack_one_sample_without_batch_axis", lambda: _attack()(F.x[0]), ["x[None]"]),
    ("attack_rank_3_batch", lambda: _attack()(F.x[:3, :, :, 0]),
     ["(28, 28, 1)", "3 samples of shape (28, 28)"]),
    ("attack_other_shape", lambda: _attack()(np.zeros((2, 8, 8, 1), np.float32)),
     ["(28, 28, 1)", "(8, 8, 1)"]),
    ("attack_empty_input", lambda: _attack()(np.zeros((0, 28, 28, 1), np.float32)),
     ["non-empty"]),
    ("attack_text_input", lambda: _attack()(np.array([["a"]])), ["numeric"]),
    ("attack_indices_wrong_length", lambda: _attack()(F.x[:2], indices=[0]), ["indices"]),
    ("attack_indices_negative", lambda: _attack()(F.x[:2], indices=[-1, 0]), ["indices"]),
    ("attack_indices_float", lambda: _attack()(F.x[:2], indices=[0.5, 1.5]), ["indices"]),
    ("attack_batch_size_0", lambda: _attack(batch_size=0), ["batch_size"]),
    ("attack_jit_compile_text", lambda: _attack(jit_compile="yes"), ["jit_compile"]),
    ("attack_unknown_similarity", lambda: MinMaxAttack(ReconstructionCriterion(F.conv_model),
                                                       similarity="cosine"), ["cosine"]),
    ("attack_initial_perturbation_2", lambda: _attack(initial_perturbation=2.0),
     ["initial_perturbation"]),
    ("margin_without_labels", lambda: MinMaxAttack(MarginCriterion(F.classifier_model),
                                                   steps=2)(F.x[:2]), ["labels"]),
    ("margin_labels_out_of_range", lambda: MinMaxAttack(MarginCriterion(F.classifier_model),
                                                        steps=2)(F.x[:2], labels=[3, 12]),
     ["labels must be classes in [0, 10)"]),
    ("ga_sigma_negative", lambda: GaussianAugmentation(ReconstructionCriterion(F.conv_model),
                                                       sigma=-1), ["sigma"]),
    ("criterion_kappa_negative", lambda: ReconstructionCriterion(F.conv_model, kappa=-1),
     ["kappa"]),
    ("reconstruction_criterion_of_classifier",
     lambda: ReconstructionCriterion(F.classifier_model), ["output shape=(None, 10)"]),
    ("generate_classifier", lambda: generation.generate(F.classifier_model, F.x[:1],
                                                        F.path("g-cls")), ["output shape"]),
    ("generate_unknown_method", lambda: generation.generate(F.conv_model, F.x[:2],
                                                            F.path("g-m"), method="fgsm"),
     ["'fgsm'"]),
    ("generate_unknown_engine", lambda: generation.generate(F.conv_model, F.x[:2],
                                                            F.path("g-e"), engine="spark"),
     ["'spark'"]),
    ("generate_bad_shard", lambda: generation.generate(F.conv_model, F.x[:2], F.path("g-s"),
                                                       shard=(3, 3)), ["shard"]),
    ("generate_workers_local", lambda: generation.generate(F.conv_model, F.x[:2],
                                                           F.path("g-w"), workers=2),
     ["workers"]),
    ("generate_ga_unknown_option", lambda: generation.generate(
        F.conv_model, F.x[:2], F.path("g-o"), method="gaussian", steps=3), ["sigma"]),
    ("reconstruction_error_nan_weights", lambda: uae_tf.reconstruction_error(F.nan_model,
                                                                            F.x[:2]),
     ["NaN or infinite"]),
    ("generate_nan_weights", lambda: generation.generate(F.nan_model, F.x[:2], F.path("g-n"),
                                                         **SMALL), ["NaN or infinite f"]),
    ("mine_estimate_nan_views", lambda: uae_tf.estimate_mutual_information(
        np.full((1, 4, 2), np.nan), np.zeros((1, 4, 2)), steps=1), ["x_views", "NaN"]),
    ("mine_estimate_shape_mismatch", lambda: uae_tf.estimate_mutual_information(
        np.zeros((2, 5, 3)), np.zeros((2, 6, 3))), ["same shape"]),
    ("mine_estimate_steps_0", lambda: uae_tf.estimate_mutual_information(
        np.zeros((1, 4, 2)), np.zeros((1, 4, 2)), steps=0), ["steps"]),
    ("train_unknown_arch", lambda: uae_tf.train_autoencoder("vae", "digits"), ["'vae'"]),
    ("train_epochs_0", lambda: uae_tf.train_autoencoder("dense", "digits", epochs=0),
     ["epochs"]),
    ("unknown_preset", lambda: uae_tf.get_preset("slow"), ["slow"]),
    ("sequence_wrong_length", lambda: uae_tf.UAESequence(F.x[:3], F.x[:2]), ["x_aug"]),
]:
    _api_case(_name, "ValueError naming " + ", ".join(_names), _call, ValueError, *_names)


@case("api", "FileNotFoundError naming the missing results")
def load_results_missing():
    return api_error(lambda: generation.load_results(F.work / "none"), FileNotFoundError,
                     "uae generate")


@case("api", "FileNotFoundError naming the missing model")
def load_model_dir_missing():
    return api_error(lambda: training.load_model_dir(F.work / "none"), FileNotFoundError,
                     F.work / "none")


def _results_copy(damage):
    out = F.copy(F.mine, "mine-damaged")
    damage(out)
    return out


for _name, _damage, _names in [
    ("load_results_truncated", lambda out: truncate(out / "uae.npz", 500),
     ["uae.npz is corrupt", "delete it"]),
    ("load_results_bit_flipped", lambda out: flip(out / "uae.npz", 300), ["uae.npz"]),
    ("load_results_empty_file", lambda out: (out / "uae.npz").write_bytes(b""),
     ["uae.npz is corrupt"]),
    ("load_results_corrupt_summary", lambda out: (out / "summary.json").write_text("{oops"),
     ["summary.json is not a readable"]),
    ("load_results_summary_of_other_n", lambda out: (out / "summary.json").write_text(
        json.dumps({**json.loads((out / "summary.json").read_text()), "n": 5})),
     ["does not match"]),
    ("load_results_uae_npz_of_another_seed", lambda out: shutil.copy(
        _other_seed_run() / "uae.npz", out / "uae.npz"), ["made by another run"]),
]:
    def _load_damaged(damage=_damage, names=_names):
        return api_error(lambda: generation.load_results(_results_copy(damage)), ValueError,
                         *names)
    _load_damaged.__name__ = _name
    case("api", "ValueError naming " + ", ".join(_names))(_load_damaged)


def _other_seed_run():
    if "seed" not in _REFERENCE:
        out = F.path("mine-seed-1")
        F.mine_again(out, seed=1)
        _REFERENCE["seed"] = out
    return _REFERENCE["seed"]


@case("api", "ValueError naming a chunk of another seed's run")
def resume_with_chunk_of_another_seed():
    out = F.copy(F.mine, "mine-stray")
    (out / "uae.npz").unlink()
    stray = out / "chunks" / "00000002.npz"
    shutil.copy(_other_seed_run() / "chunks" / "00000002.npz", stray)
    return api_error(lambda: F.mine_again(out), ValueError, stray, "another run")


@case("api", "ConfigMismatchError: chunks without config.json, under the dense model")
def resume_orphan_chunks_with_other_model():
    out = F.copy(F.mine, "mine-orphan")
    (out / "config.json").unlink()
    return api_error(lambda: F.mine_again(out, model=F.dense_model), runs.ConfigMismatchError,
                     "without a config.json", "Restore")


@case("api", "ConfigMismatchError naming the seed")
def resume_with_other_seed():
    return api_error(lambda: F.mine_again(F.mine, seed=2), runs.ConfigMismatchError,
                     "seed: 0 -> 2")


@case("api", "success: a resume after a lost chunk, in other batches, equals the whole run")
def resume_in_other_batches_equals_whole_run():
    out = F.copy(F.mine, "mine-resumed")
    (out / "chunks" / "00000002.npz").unlink()
    (out / "uae.npz").unlink()
    resumed = generation.generate(F.conv_model, F.x[:6], out, batch_size=1, verbose=False,
                                  **SMALL)
    whole = F.mine_results
    close = (np.allclose(resumed.x_adv, whole.x_adv, rtol=1e-4, atol=1e-6)
             and np.array_equal(resumed.success, whole.success))
    return correct(close, "equal up to float rounding of other batches")


@case("api", "success: the chunks of a run from before run identity resume under their config")
def resume_chunks_without_identity():
    out = F.copy(F.mine, "mine-legacy")
    for path in (out / "chunks").glob("*.npz"):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != runs.IDENTITY_KEY}
        write_npz_atomic(path, **arrays)
    (out / "uae.npz").unlink()
    return correct(same_results(F.mine_again(out), F.mine_results), "bit for bit")


@case("api", "OSError naming the file on a full disk; no temp file left")
def write_onto_a_full_disk():
    with full_disk(F.work) as disk:
        target = disk / "big.npz"
        result = api_error(lambda: write_npz_atomic(target, x=np.zeros(100_000)), OSError,
                           target)
        left = [p.name for p in disk.iterdir() if p.name != "filler"]
    if result.outcome == "handled" and left:
        return Result("unclear", f"left {left}")
    return result


@case("api", "OSError naming summary.json on a full disk")
def write_json_onto_a_full_disk():
    with full_disk(F.work) as disk:
        return api_error(lambda: write_json_atomic(disk / "summary.json",
                                                   {"x": list(range(100_000))}),
                         OSError, disk / "summary.json")


@case("api", "ValueError: retrain on UAEs of another model")
def retrain_uaes_of_another_model_api():
    return api_error(lambda: training.retrain(F.dense, F.ga, epochs=1, verbose=0), ValueError,
                     "another model")


@case("api", "ValueError naming chunks of another method (no identity to tell them)")
def merge_legacy_chunk_of_another_method():
    out = F.copy(F.mine, "mine-misfit")
    path = out / "chunks" / "00000002.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != runs.IDENTITY_KEY}
    arrays["mi_history"] = np.zeros((2, 0), np.float32)
    write_npz_atomic(path, **arrays)
    return api_error(lambda: runs.merge_chunks(out, np.arange(6)), ValueError, path,
                     "mi_history")


# --- Running and counting -------------------------------------------------------------


def main(argv=None):
    """Runs the cases, prints one line each and the table of counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="where the cases write (default: a temp directory)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="print each case's note")
    parser.add_argument("--list", action="store_true", help="list the cases, run none")
    args = parser.parse_args(argv)
    selected = [c for c in CASES if not args.only or args.only in c.name]
    if args.list:
        for one in selected:
            print(f"{one.surface:3s} {one.name}: {one.expect}")
        print(f"{len(selected)} cases")
        return 0
    global F, FITS
    work = Path(args.workdir or tempfile.mkdtemp(prefix="uae-fault-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    FITS = FitCounter()
    began = time.perf_counter()
    F = Fixtures(work)
    print(f"Fixtures in {time.perf_counter() - began:.0f} s under {work}", flush=True)
    counts = collections.Counter()
    by_surface = collections.Counter()
    failures = []
    for number, one in enumerate(selected, 1):
        try:
            result = one.run()
        except Exception as error:  # noqa: BLE001 - a case's own setup failed
            result = Result("traceback", f"setup: {type(error).__name__}: {error}"[:200])
        counts[result.outcome] += 1
        by_surface[one.surface] += 1
        if result.outcome != "handled":
            failures.append((one, result))
        note = f"  {result.note}" if args.verbose or result.outcome != "handled" else ""
        print(f"{number:3d} {one.surface:3s} {result.outcome:9s} {one.name}: {one.expect}"
              f"{note}", flush=True)
    print()
    print("| cases | CLI | API | handled well | unclear errors | tracebacks | silent wrong "
          "results | lost work | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(selected)} | {by_surface['cli']} | {by_surface['api']} | "
          f"{counts['handled']} | {counts['unclear']} | {counts['traceback']} | "
          f"{counts['silent']} | {counts['lost']} | {time.perf_counter() - began:.0f} |")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
