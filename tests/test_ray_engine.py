"""The Ray engine on a real local Ray cluster: what the local engine gives, bit for bit,
though an actor is killed mid-run; and its errors.

The cluster is CPUs only (``num_gpus=0``), whatever the machine has: the tests are
about CPU actors. One Ray run (one actor on both cores, killed holding an attacked
chunk) is the whole cost: the actor takes about 25 s to start (Ray's worker,
TensorFlow's import, the model) and 25 s more to trace the attack, and its restart
does both again, so the test takes over a minute: it is marked slow. The other
tests take a second.
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import ray

import autoencoders
from uae_tf import generation
from uae_tf.cli import main
from uae_tf.runs import ray_engine
from uae_tf.runs._barrier import BARRIER_ENV

N, BATCH = 16, 2  # 8 chunks
TINY = dict(method="mine", preset="fast", batch_size=BATCH, verbose=False, steps=2,
            similarity={"mine_steps": 2}, jit_compile=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray cluster of 2 CPUs and no GPU for the module; yields its actors'
    chunk barrier (``uae_tf/runs/_barrier.py``), a path no one has released."""
    barrier = tmp_path_factory.mktemp("barrier") / "barrier"
    # The barrier goes to the actors only: the driver's own runs never pause.
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             logging_level="warning",
             runtime_env=ray_engine.runtime_env({**os.environ, BARRIER_ENV: str(barrier)}))
    yield barrier
    ray.shutdown()


@pytest.fixture(scope="module")
def model(mnist5k):
    """A dense autoencoder trained one epoch on 1,000 digits: cheap, and not random."""
    x = mnist5k[0][:1000]
    keras.utils.set_random_seed(0)
    trainer = autoencoders.build("dense", x.shape[1:], seed=0)
    trainer.fit(x, x, epochs=1, batch_size=100, verbose=0)
    return autoencoders.reconstruction_model(trainer)


@pytest.fixture(scope="module")
def local(model, mnist5k, tmp_path_factory):
    """The local engine's results on the first N digits."""
    out = tmp_path_factory.mktemp("local") / "run"
    return generation.generate(model, mnist5k[0][:N], out, **TINY)


def _arrays(out):
    with np.load(Path(out) / "uae.npz") as data:
        return {k: data[k] for k in data.files}


def _assert_identical(out, reference):
    """``out`` holds the results of ``reference``'s run: the same uae.npz arrays, bit for bit."""
    mine, theirs = _arrays(out), _arrays(reference)
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        assert mine[key].dtype == theirs[key].dtype, key
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    chunks = sorted(p.name for p in (Path(out) / "chunks").glob("*.npz"))
    assert chunks == sorted(p.name for p in (Path(reference) / "chunks").glob("*.npz"))
    positions = []
    for name in chunks:
        with np.load(Path(out) / "chunks" / name) as chunk:
            positions.extend(chunk["position"].tolist())
    assert sorted(positions) == list(range(N))  # every sample in exactly one chunk


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_results_though_an_actor_dies(
        cluster, model, local, mnist5k, tmp_path):
    out = tmp_path / "ray"
    reached, release = Path(f"{cluster}.reached"), Path(f"{cluster}.release")
    killed, finished = {}, threading.Event()

    def kill_the_paused_actor():
        # Every actor pauses before writing a chunk once one is on disk, holding its
        # attacked chunk (uae_tf/runs/_barrier.py): killed there, it loses that chunk.
        try:
            while not finished.is_set():
                if reached.exists():
                    paused = json.loads(reached.read_text())
                    done = sorted(p.name for p in (out / "chunks").glob("*.npz"))
                    os.kill(paused["pid"], signal.SIGKILL)
                    killed.update(paused, done=done)
                    return
                time.sleep(0.01)
        finally:
            release.touch()

    watcher = threading.Thread(target=kill_the_paused_actor, daemon=True)
    watcher.start()
    try:
        # One actor on both cores: TensorFlow runs on as many threads as in this process,
        # where the engine gives the local engine's results bit for bit.
        made = generation.generate(model, mnist5k[0][:N], out, engine="ray", workers=1, **TINY)
    finally:
        finished.set()
        watcher.join()
    assert killed, "no actor paused before its second chunk"
    # Killed with one chunk on disk (Ray Data takes them in any order), its own
    # attacked, not written.
    assert len(killed["done"]) == 1
    assert Path(killed["chunk"]).name not in killed["done"]
    assert Path(killed["chunk"]).parent == (out / "chunks").resolve()
    # Ray restarted the actor and retried its chunk: the run finished with the local
    # engine's results, bit for bit, every sample in one chunk.
    _assert_identical(out, local.path)
    assert made.summary["config"] == local.summary["config"]
    # A rerun, with either engine (one config), finds every chunk done: it attacks
    # nothing and rewrites the same results.
    written = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.npz")}
    for engine in ("ray", "local"):
        again = generation.generate(model, mnist5k[0][:N], out, engine=engine, **TINY)
        assert again.sha256 == made.sha256
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.npz")} == written


def test_workers_must_fit_the_cluster(cluster):
    assert ray_engine.connect(workers=2) == ray_engine.Workers(2, num_cpus=1, num_gpus=0.0)
    assert ray_engine.connect() == ray_engine.Workers(2, num_cpus=1, num_gpus=0.0)
    assert ray_engine.connect(workers=1) == ray_engine.Workers(1, num_cpus=2, num_gpus=0.0)
    with pytest.raises(ValueError, match="2 CPU cores, too few for workers=3"):
        ray_engine.connect(workers=3)
    with pytest.raises(ValueError, match="0 GPUs, too few.*gpus_per_worker=1"):
        ray_engine.connect(gpus_per_worker=1)
    with pytest.raises(ValueError, match="workers must be a positive int.*workers=0"):
        ray_engine.connect(workers=0)
    with pytest.raises(ValueError, match="gpus_per_worker must be a number >= 0.*-1"):
        ray_engine.connect(gpus_per_worker=-1)


def test_the_actors_get_the_drivers_tensorflow_switches():
    environ = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "HOME": "/root"}
    assert ray_engine.runtime_env(environ) == {
        "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}}
    assert ray_engine.runtime_env({"HOME": "/root"}) is None


def test_engine_settings_are_checked(model, mnist5k, tmp_path):
    x = mnist5k[0][:2]
    with pytest.raises(ValueError, match="engine must be one of.*'spark'"):
        generation.generate(model, x, tmp_path, engine="spark", **TINY)
    with pytest.raises(ValueError, match="workers apply to engine='ray' only"):
        generation.generate(model, x, tmp_path, workers=2, **TINY)
    with pytest.raises(ValueError, match="criterion is for engine='local'"):
        generation.generate(model, x, tmp_path, engine="ray", criterion=object(), **TINY)


def _generate_argv(*options):
    return ["generate", "--model", "no-such-model", "--dataset", "mnist5k", "--limit", "2",
            "--out", "no-such-dir", *options]


@pytest.mark.parametrize("options, message", [
    (["--engine", "ray", "--workers", "0"], "--workers: expected an integer >= 1, got '0'"),
    (["--engine", "ray", "--gpus-per-worker", "-0.5"],
     "--gpus-per-worker: expected a number >= 0, got '-0.5'"),
    (["--engine", "ray", "--gpus-per-worker", "one"],
     "--gpus-per-worker: expected a number >= 0, got 'one'"),
    (["--engine", "spark"], "--engine: invalid choice: 'spark'"),
    (["--workers", "2"], "--workers applies to --engine ray only"),
    (["--address", "auto"], "--address applies to --engine ray only"),
])
def test_cli_refuses_bad_engine_options(options, message, capsys):
    assert main(_generate_argv(*options)) == 2
    assert message in capsys.readouterr().err


def test_without_ray_the_engine_says_how_to_install_it(model, mnist5k, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ray_engine.RayUnavailableError, match=r"pip install -e '\.\[ray\]'"):
        generation.generate(model, mnist5k[0][:2], tmp_path / "out", engine="ray", **TINY)
    assert not (tmp_path / "out").exists()
    # The command line says so before it loads the model (there is none here).
    assert main(_generate_argv("--engine", "ray")) == 1
    error = capsys.readouterr().err
    assert error.startswith("uae: error: The Ray engine needs Ray, which is not installed")
    assert "pip install -e '.[ray]'" in error and "Traceback" not in error


def test_a_workers_error_is_named_in_one_line():
    # Ray reports a worker's exception as the text of its traceback, wrapped in its own.
    report = ray.exceptions.RayError(
        "ray::MapWorker(MapBatches(_ChunkWorker)).submit() (pid=1, ip=127.0.0.1)\n"
        '  File "uae_tf/runs/chunks.py", line 154, in attack_chunk\n'
        "numpy._core._exceptions._ArrayMemoryError: Unable to allocate 1.00 GiB\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    assert ray_engine._worker_error(report) == (
        "numpy._core._exceptions._ArrayMemoryError: Unable to allocate 1.00 GiB")
    assert ray_engine._worker_error(ray.exceptions.RayError("lost")) == "RayError"
