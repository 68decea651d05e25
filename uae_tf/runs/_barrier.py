"""A test-only pause of the chunk engines, so that a test kills a run at a known point.

Tests of resume and fault tolerance kill a run while it has chunks left to do. Left
to timing, a fast machine may finish every chunk before the kill lands. With the
environment variable ``UAE_TEST_CHUNK_BARRIER`` naming a path ``B``, a process about
to write a chunk file while the run already has one on disk first writes ``B.reached``
(JSON: its process id and the chunk file it holds) and waits until ``B.release``
exists. So the run pauses after its first chunk with the next one attacked but not
written, and stays there: the chunks on disk are known, and the process named in
``B.reached`` is one to kill. Every process of the run pauses the same way (a Ray
actor too: :mod:`uae_tf.runs.ray_engine` forwards the variable), so none runs ahead
while the test acts; creating ``B.release`` lets them all go on.

Both engines write chunks through :func:`uae_tf.runs.attack_chunk`, which calls
:func:`wait_before_writing`. Unset, as everywhere outside the tests, it does nothing.
"""

import os
import time
from pathlib import Path

from uae_tf._io import write_json_atomic

BARRIER_ENV = "UAE_TEST_CHUNK_BARRIER"
# Seconds a paused process waits for the release before it gives up with an error,
# so that a test that dies before releasing it leaves no process behind for good.
TIMEOUT = 600.0
_POLL_SECONDS = 0.05


def wait_before_writing(chunk_path):
    """Pauses before ``chunk_path`` is written, if the barrier is set and a chunk is done.

    Args:
        chunk_path: The chunk file about to be written, in the run's chunk directory.

    Raises:
        TimeoutError: if ``B.release`` does not appear within :data:`TIMEOUT` seconds.
    """
    barrier = os.environ.get(BARRIER_ENV)
    if not barrier:
        return
    chunk_path = Path(chunk_path)
    release = Path(f"{barrier}.release")
    if release.exists() or not any(chunk_path.parent.glob("*.npz")):
        return
    write_json_atomic(Path(f"{barrier}.reached"),
                      {"pid": os.getpid(), "chunk": str(chunk_path.resolve())})
    deadline = time.monotonic() + TIMEOUT
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{BARRIER_ENV}: no {release} after {TIMEOUT:g} s.")
        time.sleep(_POLL_SECONDS)
