"""Dataset-wide generation: results on disk, resume after a kill, refusal of a new config."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import autoencoders
from uae_tf import evaluation, generation, runs
from uae_tf.attacks import MinMaxAttack
from uae_tf.attacks.base import AttackResult
from uae_tf.runs._barrier import BARRIER_ENV

TINY = dict(steps=3, similarity={"mine_steps": 2})


@pytest.fixture(scope="module")
def run(conv_ae, mnist5k, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "run"
    x = mnist5k[0][:6]
    made = generation.generate(conv_ae, x, out, batch_size=4, verbose=False, **TINY)
    return out, x, made


def test_results_and_summary_are_written(run):
    out, x, made = run
    results = generation.load_results(out)
    summary = results.summary
    assert summary == made.summary and results.sha256 == made.sha256
    assert results.path == out and results.method == "mine" and len(results) == 6
    assert repr(results) == (f"GenerationResults(path={str(out)!r}, method='mine', n=6, "
                             f"asr={summary['asr']:.4g})")
    for key in ("x_adv", "success", "mi", "f", "index", "mi_history", "c_history"):
        np.testing.assert_array_equal(getattr(results, key), getattr(made, key))
    assert results.sha256 == runs.file_sha256(out / "uae.npz")
    assert results.x_adv.shape == x.shape
    np.testing.assert_array_equal(results.index, np.arange(6))
    assert results.mi_history.shape == (6, 3)
    assert summary["n"] == 6
    assert summary["asr"] == pytest.approx(results.success.mean())
    assert summary["mean_mi"] == pytest.approx(results.mi.mean(), rel=1e-5)
    assert summary["seconds"] > 0 and summary["samples_per_second"] > 0
    assert summary["config"]["attack"]["steps"] == 3
    assert {"tensorflow", "keras", "uae_tf"} <= set(summary["versions"])
    # How it ran: XLA unless the conv view's networks trained with the native op
    # (which tests/test_native.py checks the machine gives).
    execution = summary["execution"]
    assert execution["mine_kernel"] in ("native", "tf")
    assert execution == {"xla": execution["mine_kernel"] == "tf",
                         "mine_kernel": execution["mine_kernel"]}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["n"] == 6
    assert sorted(p.name for p in (out / "chunks").glob("*.npz")) == ["00000000.npz", "00000004.npz"]


def _assert_same_results(a, b, model, x):
    """The results of one run made in other batches: equal up to float rounding."""
    for key in ("x_adv", "mi"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-4, atol=1e-6)
    # f is a difference of two sums of squared errors over every pixel, computed at
    # another batch size: its rounding error scales with those sums, not with f.
    summed = x[0].size * evaluation.per_sample_reconstruction_error(model, a.x_adv)
    tolerance = 1e-6 * (1.0 + summed)
    assert np.all(np.abs(a.f - b.f) <= tolerance), (a.f, b.f, tolerance)
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.index, b.index)


def test_resume_recomputes_only_missing_chunks_and_matches(run, conv_ae, tmp_path):
    out, x, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "chunks" / "00000004.npz").unlink()
    (copy / "uae.npz").unlink()
    kept = (copy / "chunks" / "00000000.npz").stat().st_mtime_ns
    generation.generate(conv_ae, x, copy, batch_size=1, verbose=False, **TINY)
    assert (copy / "chunks" / "00000000.npz").stat().st_mtime_ns == kept
    _assert_same_results(generation.load_results(out), generation.load_results(copy), conv_ae, x)


def test_out_of_memory_halves_the_batch_and_keeps_finished_chunks(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same",
                                                                          activation="sigmoid")])
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    # Graph mode: XLA's compilations would take most of the test's time.
    small = dict(view="random", steps=2, jit_compile=False,
                 similarity={"mine_steps": 1, "num_projections": 4, "projection_dim": 4})
    whole = generation.generate(model, x, tmp_path / "whole", batch_size=2, verbose=False,
                                **small)
    out = tmp_path / "halved"
    shutil.copytree(tmp_path / "whole", out)
    (out / "chunks" / "00000002.npz").unlink()
    (out / "uae.npz").unlink()
    kept = (out / "chunks" / "00000000.npz").stat().st_mtime_ns
    batches = []
    attack_batch = MinMaxAttack._run_batch

    def out_of_memory_above_one(attack, x, labels, indices):
        batches.append(indices.tolist())
        if len(x) > 1:
            raise tf.errors.ResourceExhaustedError(None, None, "Out of memory while trying "
                                                   "to allocate 95554688 bytes.")
        return attack_batch(attack, x, labels, indices)

    monkeypatch.setattr(MinMaxAttack, "_run_batch", out_of_memory_above_one)
    with pytest.warns(UserWarning, match="batch of 2 samples; retrying them"):
        halved = generation.generate(model, x, out, batch_size=2, verbose=False, **small)
    assert batches == [[2, 3], [2], [3]]  # chunk 0 was not attacked again
    assert (out / "chunks" / "00000000.npz").stat().st_mtime_ns == kept
    assert sorted(p.name for p in (out / "chunks").glob("*.npz")) == [
        "00000000.npz", "00000002.npz"]  # the chunk layout of an uninterrupted run
    _assert_same_results(whole, halved, model, x)


def test_shards_in_any_order_add_up_to_the_whole_run(run, conv_ae, tmp_path):
    out, x, _ = run
    sharded = tmp_path / "sharded"
    for shard in [(2, 3), (0, 3), (2, 3)]:  # the rerun of 2/3 resumes: nothing to do
        assert generation.generate(conv_ae, x, sharded, batch_size=4, verbose=False,
                                   shard=shard, **TINY) is None
        assert not (sharded / "uae.npz").exists()
    made = generation.generate(conv_ae, x, sharded, batch_size=4, verbose=False, shard=(1, 3),
                               **TINY)
    assert sorted(p.name for p in (sharded / "chunks").glob("*.npz")) == [
        "00000000.npz", "00000001.npz", "00000002.npz"]  # {0, 3}, {1, 4}, {2, 5}
    whole = generation.load_results(out)
    assert made.summary["config"] == whole.summary["config"]  # one config for all shards
    _assert_same_results(whole, made, conv_ae, x)
    with pytest.raises(ValueError, match=r"shard must be \(i, n\).*\(3, 3\)"):
        generation.generate(conv_ae, x, sharded, verbose=False, shard=(3, 3), **TINY)


def _fake_attack(calls):
    """A deterministic stand-in attack (per sample, from its index) that logs its calls."""

    def attack(batch, labels=None, indices=None):
        calls.append(indices.tolist())
        time.sleep(0.002)  # lets the shards' threads interleave
        steps = np.arange(2, dtype=np.float32)
        return AttackResult(
            x_adv=batch * 0.5, success=indices % 2 == 0, mi=indices.astype(np.float32),
            f=-indices.astype(np.float32), mi_history=indices[:, None] + steps,
            c_history=indices[:, None] * steps)

    return attack


def test_concurrent_shards_write_one_directory(tmp_path):
    x = np.random.default_rng(0).random((41, 2, 2, 1), dtype=np.float32)
    config = {"run": 1}
    calls, results = [], {}
    barrier = threading.Barrier(4)

    def shard(i):
        barrier.wait()  # all four create the config and write chunks at once
        results[i] = runs.attack_in_chunks(_fake_attack(calls), x, tmp_path, config,
                                           chunk_size=3, positions=runs.shard_positions(41, i, 4))

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    attacked = sorted(i for call in calls for i in call)
    assert attacked == list(range(41))  # every sample once
    finished = [result for result, _ in results.values() if result is not None]
    assert finished  # the last shard to finish sees every sample
    reference, _ = runs.attack_in_chunks(_fake_attack([]), x, tmp_path / "whole", config,
                                         chunk_size=41)
    again_calls = []
    again, _ = runs.attack_in_chunks(_fake_attack(again_calls), x, tmp_path, config, chunk_size=5)
    assert again_calls == []  # complete: nothing attacked
    for result in [*finished, again]:
        for key in ("x_adv", "success", "mi", "f", "mi_history", "c_history"):
            np.testing.assert_array_equal(getattr(result, key), getattr(reference, key))
    with pytest.raises(ValueError, match=r"shard must be an int in \[0, 4\).*4"):
        runs.shard_positions(41, 4, 4)
    np.testing.assert_array_equal(runs.shard_positions(7, 1, 3), [1, 4])


def test_engine_pieces_write_what_attack_in_chunks_writes(tmp_path):
    # pending_chunks + attack_chunk + merge_chunks, as another engine runs them.
    x = np.random.default_rng(0).random((11, 2, 2, 1), dtype=np.float32)
    indices = np.arange(100, 111)
    config = {"run": 2}
    whole, _ = runs.attack_in_chunks(_fake_attack([]), x, tmp_path / "whole", config,
                                     chunk_size=4, indices=indices)
    out = tmp_path / "pieces"
    chunks = runs.pending_chunks(out, config, 4, indices)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    calls = []
    for positions in chunks[:2]:
        runs.attack_chunk(_fake_attack(calls), x, positions, out, indices=indices)
    assert runs.merge_chunks(out, indices)[0] is None  # samples 8-10 are not done
    # A retried chunk whose file is there is not attacked again.
    written = (out / "chunks" / "00000004.npz").stat().st_mtime_ns
    runs.attack_chunk(_fake_attack(calls), x, chunks[1], out, indices=indices)
    assert (out / "chunks" / "00000004.npz").stat().st_mtime_ns == written
    assert calls == [list(range(100, 104)), list(range(104, 108))]
    assert [c.tolist() for c in runs.pending_chunks(out, config, 4, indices)] == [[8, 9, 10]]
    runs.attack_chunk(_fake_attack(calls), x, chunks[2], out, indices=indices)
    merged, seconds = runs.merge_chunks(out, indices)
    assert seconds > 0 and runs.pending_chunks(out, config, 4, indices) == []
    assert sorted(p.name for p in out.glob("chunks/*.npz")) == sorted(
        p.name for p in (tmp_path / "whole").glob("chunks/*.npz"))
    for key in ("x_adv", "success", "mi", "f", "mi_history", "c_history"):
        np.testing.assert_array_equal(getattr(merged, key), getattr(whole, key))


def test_the_chunk_barrier_pauses_a_run_before_its_second_chunk_is_written(tmp_path,
                                                                          monkeypatch):
    # The tests' pause (uae_tf/runs/_barrier.py) that the kill tests rely on.
    barrier = tmp_path / "barrier"
    reached, release = tmp_path / "barrier.reached", tmp_path / "barrier.release"
    monkeypatch.setenv(BARRIER_ENV, str(barrier))
    x = np.random.default_rng(0).random((6, 2, 2, 1), dtype=np.float32)
    out, calls, results = tmp_path / "run", [], []
    run = threading.Thread(target=lambda: results.append(runs.attack_in_chunks(
        _fake_attack(calls), x, out, {"run": 3}, chunk_size=2)))
    run.start()
    deadline = time.monotonic() + 60
    while not reached.exists() and run.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(reached.read_text()) == {
        "pid": os.getpid(), "chunk": str((out / "chunks" / "00000002.npz").resolve())}
    assert calls == [[0, 1], [2, 3]]  # the second chunk attacked, then held
    assert [p.name for p in (out / "chunks").glob("*.npz")] == ["00000000.npz"]
    assert run.is_alive()
    release.touch()
    run.join(60)
    assert not run.is_alive() and calls == [[0, 1], [2, 3], [4, 5]]
    assert len(results) == 1 and len(results[0][0].success) == 6


def test_start_and_gaussian_default_to_batches_of_256(tmp_path):
    model = autoencoders.reconstruction_model(autoencoders.build("dense", (28, 28, 1), seed=0))
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    for method in ("start", "gaussian"):
        made = generation.generate(model, x, tmp_path / method, method=method, verbose=False)
        assert len(made) == 3
        assert [p.name for p in (tmp_path / method / "chunks").iterdir()] == ["00000000.npz"]


def test_only_one_of_several_concurrent_configs_is_kept(tmp_path):
    barrier = threading.Barrier(6)
    outcomes = {}

    def start(i):
        barrier.wait()
        try:
            runs.check_config(tmp_path, {"seed": i}, format="uae-tf/test/v1")
            outcomes[i] = "kept"
        except runs.ConfigMismatchError:
            outcomes[i] = "refused"

    threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = [i for i, outcome in outcomes.items() if outcome == "kept"]
    assert len(kept) == 1 and len(outcomes) == 6
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored == {"format": "uae-tf/test/v1", "config": {"seed": kept[0]}}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left


def test_another_config_is_refused(run, conv_ae):
    out, x, _ = run
    with pytest.raises(runs.ConfigMismatchError, match=r"seed.*0 -> 1"):
        generation.generate(conv_ae, x, out, seed=1, verbose=False, **TINY)


def test_foreign_or_corrupt_files_are_clear_errors(run, conv_ae, tmp_path):
    out, x, _ = run
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"something": "else"}')
    with pytest.raises(ValueError, match="not a uae-tf config of format .uae-tf/generation/v1."):
        generation.generate(conv_ae, x, foreign, verbose=False, **TINY)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "chunks" / "00000000.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="corrupt"):
        generation.generate(conv_ae, x, broken, verbose=False, **TINY)
    (broken / "uae.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"uae\.npz is corrupt.*delete it and rerun"):
        generation.load_results(broken)
    with pytest.raises(FileNotFoundError, match="uae generate"):
        generation.load_results(tmp_path / "nothing")
    foreign_summary = tmp_path / "foreign-summary"
    shutil.copytree(out, foreign_summary)
    (foreign_summary / "summary.json").write_text('{"n": 6}')
    with pytest.raises(ValueError, match="not a uae-tf generation summary"):
        generation.load_results(foreign_summary)
    (foreign_summary / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match="summary.json is not a readable"):
        generation.load_results(foreign_summary)
    short = tmp_path / "short"
    shutil.copytree(out, short)
    summary = json.loads((short / "summary.json").read_text())
    (short / "summary.json").write_text(json.dumps({**summary, "n": 5}))
    with pytest.raises(ValueError, match="does not match"):
        generation.load_results(short)


def _cli(*args):
    return [sys.executable, "-m", "uae_tf", *args]


@pytest.mark.slow
def test_cli_generate_resumes_after_kill(conv_ae_dir, tmp_path):
    # Four one-sample chunks of the random view, killed where the test's chunk barrier
    # pauses the run (uae_tf/runs/_barrier.py): the first chunk written, the second
    # attacked and not written.
    common = ["generate", "--model", str(conv_ae_dir), "--dataset", "mnist5k", "--limit", "4",
              "--preset", "fast", "--view", "random", "--attack-batch-size", "1", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    killed, barrier = tmp_path / "killed", tmp_path / "barrier"
    reached = tmp_path / "barrier.reached"
    with open(tmp_path / "killed.stderr", "w+") as stderr:
        proc = subprocess.Popen(_cli(*common, "--out", str(killed)),
                                env={**env, BARRIER_ENV: str(barrier)},
                                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 600
            while not reached.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
        stderr.seek(0)
        assert reached.exists(), f"the run never paused (exit {proc.returncode}):\n{stderr.read()}"
    paused = json.loads(reached.read_text())
    assert paused["pid"] == proc.pid
    assert paused["chunk"] == str((killed / "chunks" / "00000001.npz").resolve())
    assert not (killed / "uae.npz").exists()
    assert sorted(p.name for p in (killed / "chunks").glob("*.npz")) == ["00000000.npz"]
    kept = (killed / "chunks" / "00000000.npz").stat().st_mtime_ns
    resumed = subprocess.run(_cli(*common, "--out", str(killed)), env=env, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["n"] == 4
    assert (killed / "chunks" / "00000000.npz").stat().st_mtime_ns == kept  # not redone
    whole = tmp_path / "whole"
    straight = subprocess.run(_cli(*common, "--out", str(whole)), env=env, capture_output=True,
                              text=True, timeout=900)
    assert straight.returncode == 0, straight.stderr
    a, b = generation.load_results(killed), generation.load_results(whole)
    for key in ("x_adv", "mi", "f", "success", "index"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    refused = subprocess.run(_cli(*common, "--seed", "5", "--out", str(whole)), env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert "another configuration" in refused.stderr and "Traceback" not in refused.stderr


# uae_tf.runs: the parts the generation tests above do not reach.


def test_train_once_trains_then_reuses_then_refuses_another_config(tmp_path):
    calls = []

    def train(directory):
        calls.append(directory)
        (directory / runs.MODEL_FILE).write_bytes(b"model")
        (directory / runs.RECORD_FILE).write_text(json.dumps({"epochs": 1}))

    assert runs.train_once(tmp_path / "m", {"epochs": 1}, train) == ({"epochs": 1}, True)
    assert runs.train_once(tmp_path / "m", {"epochs": 1}, train) == ({"epochs": 1}, False)
    assert len(calls) == 1
    with pytest.raises(runs.ConfigMismatchError, match=r"epochs: 1 -> 3"):
        runs.train_once(tmp_path / "m", {"epochs": 3}, train)
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(runs.ConfigMismatchError, match="without a config.json"):
        runs.train_once(tmp_path / "m", {"epochs": 1}, train)


def test_train_once_retrains_after_a_killed_training(tmp_path):
    def killed(directory):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.train_once(tmp_path, {"epochs": 1}, killed)

    def train(directory):
        (directory / runs.MODEL_FILE).write_bytes(b"model")
        (directory / runs.RECORD_FILE).write_text("{}")

    assert runs.train_once(tmp_path, {"epochs": 1}, train) == ({}, True)


def test_hashes_identify_content(tmp_path):
    a = np.arange(6, dtype=np.int64)
    assert runs.array_sha256(a) == runs.array_sha256(a.copy())
    assert runs.array_sha256(a) != runs.array_sha256(a[::-1])
    assert runs.array_sha256(a[:3], a[3:]) == runs.array_sha256(a)
    (tmp_path / "f").write_bytes(a.tobytes())
    assert runs.file_sha256(tmp_path / "f") == runs.array_sha256(a)


def test_versions_come_from_package_metadata(monkeypatch):
    import importlib.metadata

    assert runs.versions()["uae_tf"] == importlib.metadata.version("uae-tf")

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert runs.versions()["uae_tf"] == "unknown"
