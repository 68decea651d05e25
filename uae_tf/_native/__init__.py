"""The fused CPU kernel of per-sample MINE training, built on first use.

``UaeMineTrain`` is one TensorFlow op that runs S Adam steps of a batch of
statistics networks (:class:`uae_tf.mine.StatisticsNetwork`) on the CPU, with the
network, loss and update of :func:`uae_tf.mine.train_step`. It exists for speed:
each step reads a first-layer kernel and its Adam moments in one fused pass (7
passes over the kernel per step, against 13 in XLA's CPU code;
``bench/README.md``).

uae-tf installs as pure Python, so the op is compiled here, the first time it is
needed, with the C++ compiler ``$CXX`` (default ``g++``), from two translation
units:

* ``mine_kernels.cc``, all of the arithmetic, which includes no TensorFlow or
  Eigen header and is compiled for this machine's CPU (:func:`isa_flags`:
  ``-march=native -mprefer-vector-width=512`` on x86-64, ``-mcpu=native`` on
  aarch64, nothing elsewhere);
* ``mine_train_op.cc``, the op's registration, input checks and thread pool,
  compiled with TensorFlow's own flags (``tf.sysconfig``) and no ISA flag.

The split is what lets the op build on every CPU: TensorFlow's bundled Eigen
does not compile under every instruction set g++ can target (AVX512-FP16, on
Sapphire Rapids and newer Xeons, breaks its ``PacketMathFP16.h``), and only the
arithmetic needs the machine's vector units. If the tuned kernels still fail to
compile, they are built once more with portable flags (``-O3 -fno-math-errno``
only), which is slower but gives the same op.

The library goes to ``$UAE_TF_CACHE/native`` (default ``~/.cache/uae_tf/native``)
under a name that hashes the sources, the TensorFlow version, the compiler's
identity (``$CXX --version``), every command line and the CPU's features, so a
change to any of them builds anew. The cache is guarded as ``torch``'s extension
builder guards its own: one build at a time per library (a file lock), the
library written to a temporary file and renamed into place (mode 0644), the
directory and the library checked to belong to the user and not be writable by
others before anything is loaded from them, a library that fails to load rebuilt
once. A build that fails is remembered on disk under the same name (a
``.failed`` file with the compiler's ``error:`` lines first), so later processes
(every Ray actor, every CLI call) do not spend a compile on it again; delete that
file, or change the compiler or TensorFlow, to try again.

``UAE_TF_NATIVE=0`` turns the kernel off; :func:`load` then, like a failed build,
returns ``None`` with the reason in :func:`unavailable_reason`.
"""

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import tensorflow as tf

HERE = Path(__file__).parent
KERNELS_SOURCE = HERE / "mine_kernels.cc"
OP_SOURCE = HERE / "mine_train_op.cc"
HEADER = HERE / "mine_kernels.h"
SOURCES = (HEADER, KERNELS_SOURCE, OP_SOURCE)

#: Flags of the arithmetic's translation unit on every machine.
OPTIMIZE_FLAGS = ("-O3", "-fno-math-errno")
#: Flags of the op glue (TensorFlow's own compile flags are added to them).
GLUE_FLAGS = ("-O2", "-Wno-deprecated-declarations", "-Wno-interference-size")
#: The instruction-set flags of the arithmetic, by ``platform.machine()``.
ISA_FLAGS = {
    "x86_64": ("-march=native", "-mprefer-vector-width=512"),
    "amd64": ("-march=native", "-mprefer-vector-width=512"),
    "aarch64": ("-mcpu=native",),
    "arm64": ("-mcpu=native",),
}
#: How many of the compiler's ``error:`` lines a failure message quotes first.
ERROR_LINES = 20

_lock = threading.Lock()
_state = {"library": None, "error": None, "tried": False, "info": None}


def parameter_order(network):
    """The op's order of a network's parameter names (see ``mine_train_op.cc``)."""
    names = []
    for branch in ("x", "y"):
        if network.kind == "conv":
            names += [f"{branch}_conv_kernel", f"{branch}_conv_bias"]
        names += [f"{branch}_dense1_kernel", f"{branch}_dense1_bias",
                  f"{branch}_dense2_kernel", f"{branch}_dense2_bias"]
    return names + ["output_kernel"]


def cache_dir():
    """Where built libraries go: ``$UAE_TF_CACHE/native`` or ``~/.cache/uae_tf/native``."""
    root = os.environ.get("UAE_TF_CACHE") or Path.home() / ".cache" / "uae_tf"
    return Path(root) / "native"


def compiler():
    """The C++ compiler: ``$CXX``, default ``g++``."""
    return os.environ.get("CXX") or "g++"


def isa_flags(machine=None):
    """The arithmetic's instruction-set flags for ``machine`` (default this one's)."""
    return ISA_FLAGS.get((machine or platform.machine()).lower(), ())


def _cpu_features():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler_identity(cxx):
    """``cxx --version`` and ``-dumpmachine``, or raises RuntimeError if it cannot run."""
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler {cxx!r} on PATH (set CXX to choose one)")
    parts = []
    for flag in ("--version", "-dumpmachine"):
        try:
            done = subprocess.run([cxx, flag], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            raise RuntimeError(f"the C++ compiler {cxx!r} does not run: {error}") from error
        parts.append(done.stdout.strip())
    if not parts[0]:
        raise RuntimeError(f"the C++ compiler {cxx!r} does not answer {cxx} --version")
    return "\n".join(parts)


def commands(workdir, output, isa=None, cxx=None):
    """The three command lines of a build: the kernels, the glue, the link.

    Args:
        workdir: Where the object files go.
        output: The library's path.
        isa: The arithmetic's ISA flags (default :func:`isa_flags`); ``()`` for
            the portable build.
        cxx: The compiler (default :func:`compiler`).
    """
    cxx = cxx or compiler()
    isa = isa_flags() if isa is None else tuple(isa)
    workdir = Path(workdir)
    kernels_o, op_o = str(workdir / "mine_kernels.o"), str(workdir / "mine_train_op.o")
    return [
        [cxx, "-std=c++17", "-fPIC", *OPTIMIZE_FLAGS, *isa, "-c", str(KERNELS_SOURCE),
         "-o", kernels_o],
        [cxx, "-std=c++17", "-fPIC", *GLUE_FLAGS, *tf.sysconfig.get_compile_flags(),
         f"-I{HERE}", "-c", str(OP_SOURCE), "-o", op_o],
        [cxx, "-shared", op_o, kernels_o, "-o", str(output), *tf.sysconfig.get_link_flags()],
    ]


def library_path(cxx_identity=None):
    """The path of the built library for these sources, TensorFlow, compiler, commands and CPU.

    Raises:
        RuntimeError: when the compiler is missing (its identity is part of the key).
    """
    cxx = compiler()
    identity = cxx_identity if cxx_identity is not None else _compiler_identity(cxx)
    key = hashlib.sha256()
    parts = [source.read_bytes() for source in SOURCES]
    parts += [tf.__version__.encode(), cxx.encode(), identity.encode(),
              json.dumps(commands("WORK", "OUTPUT")).encode(),
              json.dumps(commands("WORK", "OUTPUT", isa=())).encode(),
              _cpu_features().encode(), platform.machine().encode()]
    for part in parts:
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"mine_train-{key.hexdigest()[:16]}.so"


_ERROR_LINE = re.compile(r"(^|: )(fatal )?error: |undefined reference")


def _error_summary(cxx, name, returncode, output):
    """The compiler's ``error:`` lines first, then the tail of its output."""
    errors = [line for line in output.splitlines() if _ERROR_LINE.search(line)]
    head = f"{cxx} failed to build {name} (exit {returncode})"
    if errors:
        head += ":\n" + "\n".join(errors[:ERROR_LINES])
        if len(errors) > ERROR_LINES:
            head += f"\n... and {len(errors) - ERROR_LINES} more error lines"
    return head + "\n--- the compiler's output, last 4,000 characters ---\n" + output[-4000:]


def _run(command, name):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"{command[0]} could not build {name}: {error}") from error
    if done.returncode != 0:
        raise RuntimeError(_error_summary(command[0], name, done.returncode,
                                          done.stderr + done.stdout))


def build(path=None):
    """Compiles the op into ``path`` (default :func:`library_path`) and returns its build record.

    The arithmetic is compiled with :func:`isa_flags`; if that fails, once more
    with portable flags. The library is written to a temporary directory beside
    ``path`` and renamed into place, readable by all (0644). This function takes
    no lock and remembers nothing; :func:`load` does both.

    Returns:
        A dict: ``path``, ``isa_flags`` used, ``portable`` (whether the tuned build
        failed), ``tuned_error`` (its message, or ``None``), ``seconds``,
        ``compiler`` (``$CXX --version``'s first line).

    Raises:
        RuntimeError: when the compiler is missing or both builds fail, with the
            compiler's ``error:`` lines first.
    """
    cxx = compiler()
    identity = _compiler_identity(cxx)
    path = Path(path) if path is not None else library_path(identity)
    _make_private_dir(path.parent)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=path.stem + ".", dir=path.parent) as work:
        work = Path(work)
        output = work / path.name
        kernels_tuned, glue, link = commands(work, output, cxx=cxx)
        tuned_error, isa = None, isa_flags()
        try:
            _run(kernels_tuned, KERNELS_SOURCE.name)
        except RuntimeError as error:
            if not isa:
                raise
            tuned_error, isa = str(error), ()
            _run(commands(work, output, isa=(), cxx=cxx)[0], KERNELS_SOURCE.name)
        _run(glue, OP_SOURCE.name)
        _run(link, path.name)
        output.chmod(0o644)
        os.replace(output, path)
    return {"path": str(path), "isa_flags": list(isa), "portable": tuned_error is not None,
            "tuned_error": tuned_error, "seconds": round(time.perf_counter() - start, 1),
            "compiler": identity.splitlines()[0]}


def _make_private_dir(directory):
    """Creates ``directory`` (0755) if missing; refuses one that others could write into.

    A directory of the user's own that is group- or world-writable (an old
    ``umask``) is made 0755; one owned by another user is refused.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info = directory.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise RuntimeError(
            f"the native kernel's cache {directory} belongs to another user (uid "
            f"{info.st_uid}); loading code from it is unsafe. Set UAE_TF_CACHE to a "
            "directory of your own.")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        directory.chmod(stat.S_IMODE(info.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))


def _check_owned(path):
    """Refuses to load ``path`` unless the user owns it and nobody else can write it."""
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise RuntimeError(f"{path} belongs to another user (uid {info.st_uid}); not loading it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RuntimeError(f"{path} is writable by others (mode {oct(stat.S_IMODE(info.st_mode))});"
                           " not loading it")


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive ``flock`` on ``path`` (one build at a time across processes)."""
    import fcntl  # noqa: PLC0415 (POSIX only; load() checks os.name first)

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _failure_path(path):
    return path.with_suffix(".failed")


def _info_path(path):
    return path.with_suffix(".json")


def _write_atomic(path, text):
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _load_or_build():
    """The loaded library and its build record; raises RuntimeError with the reason."""
    if os.name != "posix":
        raise RuntimeError("the fused MINE kernel builds on Linux and macOS only")
    identity = _compiler_identity(compiler())
    path = library_path(identity)
    _make_private_dir(path.parent)
    failed = _failure_path(path)
    with _file_lock(path.with_suffix(".lock")):
        if failed.exists():
            _check_owned(failed)
            raise RuntimeError(
                failed.read_text() + f"\n(remembered from an earlier build in {failed}; "
                "delete that file to try again)")
        for attempt in range(2):
            if not path.exists():
                try:
                    info = build(path)
                except RuntimeError as error:
                    _write_atomic(failed, str(error))
                    raise
                _write_atomic(_info_path(path), json.dumps(info, indent=1))
            _check_owned(path)
            try:
                library = tf.load_op_library(str(path))
            except (OSError, tf.errors.OpError) as error:
                # A library that exists but does not load (truncated, from another
                # toolchain): rebuild it once, then remember the failure.
                path.unlink(missing_ok=True)
                if attempt == 1:
                    message = f"{path.name} was built but does not load: {error}"
                    _write_atomic(failed, message)
                    raise RuntimeError(message) from error
                continue
            try:
                info = json.loads(_info_path(path).read_text())
            except (OSError, ValueError):
                info = {"path": str(path)}
            return library, info
    raise AssertionError("unreachable")


def disabled():
    """Whether ``UAE_TF_NATIVE=0`` turns the kernel off."""
    return os.environ.get("UAE_TF_NATIVE", "1") == "0"


def load():
    """Returns the loaded op library, building it first if needed; ``None`` if unavailable.

    The result is remembered for the process, and a failed build on disk for
    every process (see the module docstring); :func:`unavailable_reason` says why
    it is ``None``. A library built with portable flags (the tuned build failed)
    is used, with a warning that says why.
    """
    with _lock:
        if _state["tried"]:
            return _state["library"]
        _state["tried"] = True
        if disabled():
            _state["error"] = "turned off by UAE_TF_NATIVE=0"
            return None
        try:
            _state["library"], _state["info"] = _load_or_build()
        except (OSError, RuntimeError) as error:
            _state["error"] = str(error)
            return None
        if _state["info"].get("portable"):
            warnings.warn(
                "The fused MINE kernel was built with portable flags, because the build "
                f"for this CPU failed; it runs, more slowly: {_state['info']['tuned_error']}")
        return _state["library"]


def unavailable_reason():
    """Why :func:`load` returned ``None`` (``None`` if it did not, or was not called)."""
    return _state["error"]


def build_info():
    """How the loaded library was built (see :func:`build`); ``None`` before :func:`load`."""
    return _state["info"]


def train_steps(network, params, adam_state, x_views, y_views, permutations, learning_rate):
    """``S`` Adam steps of :func:`uae_tf.mine.train_step` in one call of the fused op.

    Args:
        network: The :class:`~uae_tf.mine.StatisticsNetwork`.
        params: Its ``[B, ...]`` parameters.
        adam_state: ``{"m", "v", "step"}`` (:func:`uae_tf.mine.adam_init`).
        x_views: ``[B, K, ...view_shape]`` views of x.
        y_views: The same of x + delta.
        permutations: ``[S, B, K]`` int32, step s's permutation of the views.
        learning_rate: Adam step size.

    Returns:
        ``(params, adam_state, mi)`` after the S steps, with ``mi`` the ``[S, B]``
        estimates of each step's forward pass (before its update).

    Raises:
        RuntimeError: if the op library is unavailable.
    """
    library = load()
    if library is None:
        raise RuntimeError(f"the fused MINE kernel is unavailable: {unavailable_reason()}")
    names = parameter_order(network)
    new_params, new_m, new_v, mi = library.uae_mine_train(
        [params[n] for n in names],
        [adam_state["m"][n] for n in names],
        [adam_state["v"][n] for n in names],
        tf.convert_to_tensor(x_views, tf.float32),
        tf.convert_to_tensor(y_views, tf.float32),
        tf.convert_to_tensor(permutations, tf.int32),
        tf.cast(adam_state["step"], tf.float32),
        tf.cast(learning_rate, tf.float32),
    )
    steps = tf.cast(tf.shape(permutations)[0], tf.float32)
    state = {"m": dict(zip(names, new_m)), "v": dict(zip(names, new_v)),
             "step": adam_state["step"] + steps}
    return dict(zip(names, new_params)), state, mi
