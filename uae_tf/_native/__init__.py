"""The fused CPU kernel of per-sample MINE training, built on first use.

``mine_train.cc`` is one TensorFlow op, ``UaeMineTrain``, that runs S Adam steps
of a batch of statistics networks (:class:`uae_tf.mine.StatisticsNetwork`) on the
CPU, with the network, loss and update of :func:`uae_tf.mine.train_step`. It
exists for speed: each step reads a first-layer kernel and its Adam moments in
one fused pass (7 passes over the kernel per step, against 13 in XLA's CPU code;
``bench/README.md``).

uae-tf installs as pure Python, so the op is compiled here, the first time it is
needed, with the C++ compiler ``$CXX`` (default ``g++``) against the installed
TensorFlow's headers (``tf.sysconfig``), for this machine's CPU
(``-march=native``), into ``$UAE_TF_CACHE/native`` (default
``~/.cache/uae_tf/native``). The file name holds a hash of the source, the
TensorFlow version, the compiler flags and the CPU's features, so a changed
source, TensorFlow or machine builds anew, and concurrent builds (Ray actors)
each write their own file and rename it into place. ``UAE_TF_NATIVE=0`` turns the
kernel off; :func:`load` then, like a failed build, returns ``None`` with the
reason in :func:`unavailable_reason`.
"""

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import tensorflow as tf

SOURCE = Path(__file__).with_name("mine_train.cc")
OPTIMIZE_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno")

_lock = threading.Lock()
_state = {"library": None, "error": None, "tried": False}


def parameter_order(network):
    """The op's order of a network's parameter names (see ``mine_train.cc``)."""
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


def _cpu_features():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _command(output):
    compiler = os.environ.get("CXX", "g++")
    return [compiler, "-std=c++17", "-shared", "-fPIC", *OPTIMIZE_FLAGS,
            "-Wno-deprecated-declarations", str(SOURCE), "-o", str(output),
            *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def library_path():
    """The path of the built library for this source, TensorFlow, compiler and CPU."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), os.environ.get("CXX", "g++").encode(),
                 " ".join(OPTIMIZE_FLAGS).encode(), _cpu_features().encode(),
                 platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"mine_train-{key.hexdigest()[:16]}.so"


def build(path=None):
    """Compiles ``mine_train.cc`` to ``path`` (default :func:`library_path`) and returns it.

    Raises:
        RuntimeError: when the compiler is missing or fails, with its output.
    """
    path = Path(path or library_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    command = _command("OUTPUT")
    if shutil.which(command[0]) is None:
        raise RuntimeError(f"no C++ compiler {command[0]!r} on PATH (set CXX to choose one)")
    handle, temporary = tempfile.mkstemp(prefix=path.stem + ".", suffix=".so", dir=path.parent)
    os.close(handle)
    try:
        done = subprocess.run(_command(temporary), capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed to build {SOURCE.name} (exit {done.returncode}):\n"
                + done.stderr[-4000:])
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def disabled():
    """Whether ``UAE_TF_NATIVE=0`` turns the kernel off."""
    return os.environ.get("UAE_TF_NATIVE", "1") == "0"


def load():
    """Returns the loaded op library, building it first if needed; ``None`` if unavailable.

    A failure is remembered for the process (see :func:`unavailable_reason`).
    """
    with _lock:
        if _state["tried"]:
            return _state["library"]
        _state["tried"] = True
        if disabled():
            _state["error"] = "turned off by UAE_TF_NATIVE=0"
            return None
        try:
            path = library_path()
            if not path.exists():
                build(path)
            _state["library"] = tf.load_op_library(str(path))
        except (OSError, RuntimeError, subprocess.SubprocessError, tf.errors.OpError) as error:
            _state["error"] = str(error)
        return _state["library"]


def unavailable_reason():
    """Why :func:`load` returned ``None`` (``None`` if it did not, or was not called)."""
    return _state["error"]


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
