"""Nothing silently wrong (issue 26): run identity, corrupt files, seeds, models, faults.

One test (or a few) per case of the issue, numbered as there; docs/reliability.md
lists which test holds which promise. ``tools/fault_sweep.py`` runs the wider sweep.
"""

import contextlib
import io
import json
import resource
import shutil
import signal

import keras
import numpy as np
import pytest

from uae_tf import _validation, generation, runs, training
from uae_tf._batches import shuffled_batches
from uae_tf._io import read_npz, write_json_atomic, write_npz_atomic
from uae_tf.attacks import GaussianAugmentation, MinMaxAttack, PGDAttack
from uae_tf.attacks.base import AttackResult
from uae_tf.augmentation import UAESequence
from uae_tf.cli import main
from uae_tf.criteria import MarginCriterion, ReconstructionCriterion
from uae_tf.evaluation import reconstruction_error
from uae_tf.mine import estimate_mutual_information
from uae_tf.reproduce import table7
from uae_tf.reproduce.figure10b import run_figure10b
from uae_tf.views import RandomView

# A MinMax attack small enough for a test: the random view of 4 projections to 4
# dimensions, two iterations, graph mode (XLA's compilation would cost more).
SMALL = dict(view="random", steps=2, jit_compile=False,
             similarity={"mine_steps": 1, "num_projections": 4, "projection_dim": 4})


def _one_error_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("uae: error: ")
    assert "Traceback" not in stderr
    return lines[0]


def _run_cli(argv):
    """``(exit code, stdout, stderr)`` of the ``uae`` command run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def conv_dir(conv_ae, tmp_path_factory):
    """A model directory holding the session's conv autoencoder."""
    directory = tmp_path_factory.mktemp("conv-model")
    conv_ae.save(directory / runs.MODEL_FILE)
    return directory


@pytest.fixture(scope="module")
def small_run(conv_ae, mnist5k, tmp_path_factory):
    """``(out, x)``: a finished small MinMax generation of 4 samples, 2 chunks."""
    out = tmp_path_factory.mktemp("small") / "run"
    x = mnist5k[0][:4]
    generation.generate(conv_ae, x, out, batch_size=2, verbose=False, **SMALL)
    return out, x


def _fake_attack(batch, labels=None, indices=None):
    """A deterministic stand-in attack: each sample's result from its index alone."""
    steps = np.arange(2, dtype=np.float32)
    return AttackResult(
        x_adv=batch * 0.5, success=indices % 2 == 0, mi=indices.astype(np.float32),
        f=-indices.astype(np.float32), mi_history=indices[:, None] + steps,
        c_history=indices[:, None] * steps)


def _assert_results_equal(a, b):
    for key in ("x_adv", "success", "mi", "f", "mi_history", "c_history"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


# 1. A run directory without config.json adopts old chunks under any new configuration.


def test_chunks_without_config_are_refused_for_any_config(small_run, conv_ae, dense_ae,
                                                          conv_dir, tmp_path):
    out, x = small_run
    orphan = tmp_path / "orphan"
    shutil.copytree(out, orphan)
    (orphan / "config.json").unlink()
    (orphan / "uae.npz").unlink()
    for model, kwargs in [(dense_ae, {}), (conv_ae, {"seed": 3}), (conv_ae, {})]:
        with pytest.raises(runs.ConfigMismatchError,
                           match=r"without a config\.json.*unknown.*Restore .*config\.json"):
            generation.generate(model, x, orphan, batch_size=2, verbose=False, **SMALL, **kwargs)
    assert not (orphan / "uae.npz").exists() and not (orphan / "config.json").exists()
    code, _, err = _run_cli(["generate", "--model", conv_dir, "--dataset", "mnist5k",
                             "--limit", 4, "--seed", 3, "--out", orphan])
    assert code == 1
    assert "without a config.json" in _one_error_line(err)


# 2. Chunk files carry no run identity.


def test_a_chunk_of_another_run_is_refused_naming_it(tmp_path):
    x = np.random.default_rng(0).random((6, 2, 2, 1), dtype=np.float32)
    runs.attack_in_chunks(_fake_attack, x, tmp_path / "a", {"model": "a"}, chunk_size=3)
    runs.attack_in_chunks(_fake_attack, x, tmp_path / "b", {"model": "b"}, chunk_size=3)
    stray = tmp_path / "b" / "chunks" / "00000003.npz"
    shutil.copy(tmp_path / "a" / "chunks" / "00000003.npz", stray)  # same indices, other run
    for call in (lambda: runs.merge_chunks(tmp_path / "b", np.arange(6)),
                 lambda: runs.attack_in_chunks(_fake_attack, x, tmp_path / "b", {"model": "b"},
                                               chunk_size=3)):
        with pytest.raises(ValueError, match="another run") as error:
            call()
        assert str(stray) in str(error.value) and "delete it" in str(error.value)


def test_a_start_chunk_in_a_mine_run_is_refused_naming_it(small_run, conv_ae, tmp_path):
    out, x = small_run
    generation.generate(conv_ae, x, tmp_path / "start", method="start", batch_size=2,
                        verbose=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    (mixed / "uae.npz").unlink()
    stray = mixed / "chunks" / "00000002.npz"
    shutil.copy(tmp_path / "start" / "chunks" / "00000002.npz", stray)
    with pytest.raises(ValueError, match=f"{stray}.*another run"):
        generation.generate(conv_ae, x, mixed, batch_size=2, verbose=False, **SMALL)


def _strip_identity(path):
    arrays = read_npz(path, "test")
    del arrays[runs.IDENTITY_KEY]
    write_npz_atomic(path, **arrays)


def test_chunks_from_before_run_identity_resume_only_under_their_config(tmp_path):
    x = np.random.default_rng(0).random((6, 2, 2, 1), dtype=np.float32)
    reference, _ = runs.attack_in_chunks(_fake_attack, x, tmp_path / "ref", {"r": 1}, 2)
    out = tmp_path / "legacy"
    runs.attack_in_chunks(_fake_attack, x, out, {"r": 1}, 2)
    for path in (out / "chunks").glob("*.npz"):
        _strip_identity(path)
    (out / "chunks" / "00000004.npz").unlink()
    resumed, _ = runs.attack_in_chunks(_fake_attack, x, out, {"r": 1}, 2)
    _assert_results_equal(resumed, reference)
    assert runs.IDENTITY_KEY in read_npz(out / "chunks" / "00000004.npz", "test")
    with pytest.raises(runs.ConfigMismatchError, match=r"r: 1 -> 2"):
        runs.attack_in_chunks(_fake_attack, x, out, {"r": 2}, 2)
    # An old chunk of another method (no identity to tell it) still fails by name, not
    # in numpy's concatenation.
    other = read_npz(out / "chunks" / "00000002.npz", "test")
    other["mi_history"] = np.zeros((2, 0), np.float32)
    write_npz_atomic(out / "chunks" / "00000002.npz", **other)
    with pytest.raises(ValueError, match=r"00000002\.npz is not a chunk of this run: its "
                                         r"mi_history is float32 of shape \(2, 0\)"):
        runs.merge_chunks(out, np.arange(6))


def test_uae_npz_of_another_run_is_refused(conv_ae, mnist5k, tmp_path):
    x = mnist5k[0][:3]
    for sigma in (0.01, 0.02):
        generation.generate(conv_ae, x, tmp_path / str(sigma), method="gaussian", sigma=sigma,
                            verbose=False)
    assert generation.load_results(tmp_path / "0.01").config["attack"]["sigma"] == 0.01
    shutil.copy(tmp_path / "0.02" / "uae.npz", tmp_path / "0.01" / "uae.npz")
    with pytest.raises(ValueError, match=r"uae\.npz was made by another run than .*summary"):
        generation.load_results(tmp_path / "0.01")


# 3. Seeds wrap modulo 2^32.

BAD_SEEDS = [-1, 1.7, 1.0, True, "0", None, 2**31, 2**32, 2**63]


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_one_seed_check_everywhere(seed, dense_ae, classifier, mnist5k, tmp_path):
    x = mnist5k[0][:2]
    criterion = ReconstructionCriterion(dense_ae)
    message = r"seed must be an integer in \[0, 2147483647\]\. Received: seed="
    calls = {
        "check_seed": lambda: _validation.check_seed(seed),
        "MinMaxAttack": lambda: MinMaxAttack(criterion, seed=seed),
        "GaussianAugmentation": lambda: GaussianAugmentation(criterion, seed=seed),
        "PGDAttack": lambda: PGDAttack(classifier, seed=seed),
        "generate": lambda: generation.generate(dense_ae, x, tmp_path / "g", seed=seed,
                                                verbose=False),
        "train_autoencoder": lambda: training.train_autoencoder("dense", "digits", seed=seed,
                                                                out=tmp_path / "t"),
        "estimate_mutual_information": lambda: estimate_mutual_information(
            np.zeros((1, 4, 2)), np.zeros((1, 4, 2)), steps=1, seed=seed),
        "RandomView": lambda: RandomView((28, 28, 1), seed=seed),
        "UAESequence": lambda: UAESequence(x, x, seed=seed),
        "shuffled_batches": lambda: shuffled_batches(x, seed=seed),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=message):
            call()
    assert not (tmp_path / "g").exists() and not (tmp_path / "t").exists()


def test_the_largest_seed_is_a_stream_of_its_own(conv_ae, mnist5k):
    x = mnist5k[0][:2]
    criterion = ReconstructionCriterion(conv_ae)
    last = GaussianAugmentation(criterion, seed=2**31 - 1)(x).x_adv
    first = GaussianAugmentation(criterion, seed=0)(x).x_adv
    assert not np.array_equal(last, first)
    np.testing.assert_array_equal(GaussianAugmentation(criterion, seed=2**31 - 1)(x).x_adv, last)


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "m", "--dataset", "mnist5k", "--out", "o"],
    ["train", "--arch", "dense", "--dataset", "digits", "--out", "o"],
    ["retrain", "--model", "m", "--augment", "a", "--out", "o"],
    ["reproduce", "table4", "--dataset", "digits", "--arch", "dense", "--out", "o"],
    ["reproduce", "figure10b", "--table7", "t", "--out", "o"],
    ["reproduce", "table3", "--out", "o"],
], ids=lambda argv: "-".join(argv[:2]))
@pytest.mark.parametrize("seed", ["4294967296", str(2**63), "-1", "1.7"])
def test_cli_seed_outside_the_streams_exits_2_naming_it(argv, seed):
    code, out, err = _run_cli([*argv, "--seed", seed])
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert "--seed" in line and "[0, 2147483647]" in line and repr(seed) in line


# 4. uae generate does not check that the model reconstructs its input.


def test_a_model_that_does_not_reconstruct_is_refused(classifier, mnist5k, tmp_path):
    message = r"must return outputs of its input's shape.*\(None, 28, 28, 1\).*\(None, 10\)"
    with pytest.raises(ValueError, match=message):
        ReconstructionCriterion(classifier)
    for n in (1, 3):
        with pytest.raises(ValueError, match=message):
            generation.generate(classifier, mnist5k[0][:n], tmp_path / "g", verbose=False)
    assert not (tmp_path / "g").exists()
    classifier.save(tmp_path / "model.keras")
    for limit in (1, 3):
        code, _, err = _run_cli(["generate", "--model", tmp_path, "--dataset", "mnist5k",
                                 "--limit", limit, "--out", tmp_path / "cli"])
        assert code == 1
        assert "must return outputs of its input's shape" in _one_error_line(err)
    MarginCriterion(classifier)  # what a classifier is attacked with


# 5. NaN weights give numbers, and NaN views an estimate.


@pytest.fixture(scope="module")
def nan_model_dir(dense_ae, tmp_path_factory):
    """A model directory holding the dense autoencoder with its weights set to NaN."""
    model = keras.models.clone_model(dense_ae)
    model.set_weights([np.full_like(w, np.nan) for w in dense_ae.get_weights()])
    directory = tmp_path_factory.mktemp("nan-model")
    model.save(directory / runs.MODEL_FILE)
    return directory, model


def test_nan_weights_are_an_error_not_a_number(nan_model_dir, mnist5k, tmp_path):
    directory, model = nan_model_dir
    x = mnist5k[0][:2]
    with pytest.raises(ValueError, match=r"reconstructions are NaN or infinite for 2 of 2"):
        reconstruction_error(model, x)
    code, out, err = _run_cli(["evaluate", "--model", directory, "--dataset", "mnist5k"])
    assert code == 1 and out == ""
    assert "NaN or infinite" in _one_error_line(err)
    for method, kwargs in [("mine", SMALL), ("gaussian", {})]:
        with pytest.raises(ValueError, match=r"NaN or infinite f for 2 of 2 samples"):
            generation.generate(model, x, tmp_path / method, method=method, verbose=False,
                                **kwargs)
        assert not list((tmp_path / method / "chunks").glob("*.npz"))  # nothing kept
    code, out, err = _run_cli(["generate", "--model", directory, "--dataset", "mnist5k",
                               "--limit", 2, "--method", "gaussian", "--out", tmp_path / "cli"])
    assert code == 1 and "NaN or infinite f" in _one_error_line(err)


def test_mutual_information_of_nan_views_is_an_error():
    views = np.random.default_rng(0).normal(size=(2, 8, 3)).astype(np.float32)
    broken = views.copy()
    broken[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="y_views contains 1 NaN or infinite values"):
        estimate_mutual_information(views, broken, steps=2)
    with pytest.raises(ValueError, match="x_views contains 1 NaN"):
        estimate_mutual_information(broken, views, steps=2)
    mi, _ = estimate_mutual_information(views, views, steps=2)
    assert np.all(np.isfinite(mi))


def test_cli_prints_non_finite_numbers_as_null_with_a_warning(conv_dir, monkeypatch):
    from uae_tf import cli

    monkeypatch.setattr(cli, "reconstruction_error", lambda model, x: float("nan"))
    code, out, err = _run_cli(["evaluate", "--model", conv_dir, "--dataset", "mnist5k",
                               "--quiet"])
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1],
                        parse_constant=lambda name: pytest.fail(f"{name} in the JSON line"))
    assert result["reconstruction_error"] is None
    assert "uae: warning: reconstruction_error is nan, printed as null" in err


# 6. Corrupt files give tracebacks that do not name them.


def test_bit_flips_across_a_chunk_are_named_or_harmless(tmp_path):
    x = np.random.default_rng(0).random((4, 2, 2, 1), dtype=np.float32)
    reference, _ = runs.attack_in_chunks(_fake_attack, x, tmp_path, {"r": 1}, chunk_size=4)
    path = tmp_path / "chunks" / "00000000.npz"
    original = path.read_bytes()
    outcomes = {"named": 0, "harmless": 0}
    offsets = range(0, len(original), 3)  # every field of the zip and npy headers
    for offset in offsets:
        flipped = bytearray(original)
        flipped[offset] ^= 0x10
        path.write_bytes(bytes(flipped))
        try:
            result, _ = runs.merge_chunks(tmp_path, np.arange(4))
        except ValueError as error:
            assert str(path) in str(error) and "delete it and rerun" in str(error), error
            outcomes["named"] += 1
        else:  # A flip in a field zipfile ignores (a timestamp...): the same results.
            _assert_results_equal(result, reference)
            outcomes["harmless"] += 1
    # The harmless bytes are zip's timestamps, versions and attributes: a few per member.
    assert outcomes["named"] > 0.75 * len(offsets), outcomes
    for size in (0, 1, 30, len(original) // 2, len(original) - 1):
        path.write_bytes(original[:size])
        with pytest.raises(ValueError, match=f"{path} is corrupt.*delete it and rerun"):
            runs.merge_chunks(tmp_path, np.arange(4))


def test_truncated_uae_npz_is_one_error_naming_it(conv_ae, conv_dir, mnist5k, tmp_path):
    out = tmp_path / "ga"
    generation.generate(conv_ae, mnist5k[0][:3], out, method="gaussian", verbose=False)
    results = out / "uae.npz"
    results.write_bytes(results.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"{results} is corrupt.*delete it and rerun"):
        generation.load_results(out)
    code, _, err = _run_cli(["retrain", "--model", conv_dir, "--augment", out,
                             "--out", tmp_path / "retrained"])
    assert code == 1
    line = _one_error_line(err)
    assert str(results) in line and "delete it" in line
    assert not (tmp_path / "retrained" / "config.json").exists()


# 7. Commands that read another command's directory do not check its kind.


def test_figure10b_checks_what_its_table7_directory_is(small_run, tmp_path):
    out, _ = small_run
    table4 = tmp_path / "table4"
    table4.mkdir()
    runs.check_config(table4, {"seeds": [0], "dataset": "mnist5k"}, format="uae-tf/table4/v1")
    unfinished = tmp_path / "table7"
    unfinished.mkdir()
    runs.check_config(unfinished, {"seeds": [0]}, format=table7.FORMAT)
    expected = "is not a finished 'uae reproduce table7' directory"
    cases = [(out, "its config.json is of format 'uae-tf/generation/v1'"),
             (table4, "its config.json is of format 'uae-tf/table4/v1'"),
             (unfinished, "it has no report.json yet"),
             (tmp_path / "nothing", "config.json does not exist")]
    for directory, reason in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=expected) as error:
            run_figure10b(directory, tmp_path / "fig", verbose=False)
        assert reason in str(error.value)
        code, _, err = _run_cli(["reproduce", "figure10b", "--table7", directory,
                                 "--out", tmp_path / "fig"])
        assert code == 1 and reason in _one_error_line(err)


# 8. Unclear errors.


def test_sigma_is_checked_by_the_parser():
    for sigma in ("-0.5", "0", "nan", "inf", "x"):
        code, out, err = _run_cli(["generate", "--model", "m", "--dataset", "mnist5k",
                                   "--method", "gaussian", "--sigma", sigma, "--out", "o"])
        assert code == 2 and out == ""
        assert "--sigma" in _one_error_line(err)


@contextlib.contextmanager
def _file_size_limit(nbytes):
    """No file of this process grows past ``nbytes`` (the kernel's RLIMIT_FSIZE): a
    write beyond fails with EFBIG, as one on a full disk fails with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_that_does_not_fit_names_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "results.npz"
    with _file_size_limit(4096):
        with pytest.raises(OSError, match=f"cannot write {target}: File too large"):
            write_npz_atomic(target, x=np.zeros(10_000, np.float32))
        with pytest.raises(OSError, match="cannot write .*summary.json"):
            write_json_atomic(tmp_path / "summary.json", {"x": list(range(10_000))})
    assert list(tmp_path.iterdir()) == []


def test_one_sample_without_its_batch_axis_is_explained(conv_ae, mnist5k):
    with pytest.raises(ValueError) as error:
        MinMaxAttack(ReconstructionCriterion(conv_ae))(mnist5k[0][0])
    message = str(error.value)
    assert "28 samples of shape (28, 1)" in message and "x[None]" in message
    with pytest.raises(ValueError, match=r"Received x\.shape=\(5, 28, 28\): 5 samples of "
                                         r"shape \(28, 28\)$"):
        MinMaxAttack(ReconstructionCriterion(conv_ae))(mnist5k[0][:5, :, :, 0])


# 9. Training to an unusable --out, or over a model of other settings.


def test_train_checks_out_is_writable_before_training(tmp_path, monkeypatch):
    fits = []
    monkeypatch.setattr(keras.Model, "fit", lambda *args, **kwargs: fits.append(1))
    out = tmp_path / "model"
    with _file_size_limit(0):
        code, _, err = _run_cli(["train", "--arch", "dense", "--dataset", "digits",
                                 "--out", out])
    assert code == 1 and fits == []
    assert f"cannot write to {out}: File too large" in _one_error_line(err)
    with _file_size_limit(0), pytest.raises(OSError, match=f"cannot write to {out}"):
        training.train_autoencoder("dense", "digits", out=out)
    assert fits == []


def test_train_refuses_a_model_of_other_settings_unless_overwrite(tmp_path):
    out = tmp_path / "model"
    base = ["train", "--dataset", "digits", "--epochs", "1", "--limit", "50", "--quiet",
            "--out", out]
    code, stdout, _ = _run_cli([*base, "--arch", "dense"])
    assert code == 0 and json.loads(stdout)["trained"] is True
    dense = (out / runs.MODEL_FILE).read_bytes()
    code, _, err = _run_cli([*base, "--arch", "sparse"])
    assert code == 1 and (out / runs.MODEL_FILE).read_bytes() == dense
    line = _one_error_line(err)
    assert "arch: 'dense' -> 'sparse'" in line and "--overwrite" in line
    code, stdout, _ = _run_cli([*base, "--arch", "dense"])  # the same settings: reused
    assert code == 0 and json.loads(stdout)["trained"] is False
    assert (out / runs.MODEL_FILE).read_bytes() == dense
    code, stdout, _ = _run_cli([*base, "--arch", "sparse", "--overwrite"])
    assert code == 0 and json.loads(stdout)["trained"] is True
    assert json.loads((out / "train.json").read_text())["config"]["arch"] == "sparse"
    # A model directory from before config.json was written: refused, --overwrite replaces.
    (out / "config.json").unlink()
    code, _, err = _run_cli([*base, "--arch", "sparse"])
    assert code == 1 and "without a config.json" in _one_error_line(err)


# 10. uae retrain does not check the augmentation was made against the same model.


def test_retrain_refuses_uaes_of_another_model(tmp_path):
    models = {}
    for seed in (0, 1):
        models[seed] = tmp_path / f"dense-{seed}"
        code, _, _ = _run_cli(["train", "--arch", "dense", "--dataset", "digits", "--epochs", 1,
                               "--limit", 60, "--seed", seed, "--quiet", "--out", models[seed]])
        assert code == 0
    augment = tmp_path / "ga"
    code, _, _ = _run_cli(["generate", "--model", models[1], "--dataset", "digits", "--limit",
                           60, "--method", "gaussian", "--quiet", "--out", augment])
    assert code == 0
    retrain = ["retrain", "--model", models[0], "--augment", augment, "--epochs", 1,
               "--quiet", "--out", tmp_path / "retrained"]
    code, _, err = _run_cli(retrain)
    assert code == 1
    line = _one_error_line(err)
    assert "made against another model" in line and "--allow-other-model" in line
    assert not (tmp_path / "retrained" / "config.json").exists()
    code, stdout, _ = _run_cli([*retrain, "--allow-other-model"])
    assert code == 0 and json.loads(stdout)["trained"] is True
    code, stdout, _ = _run_cli(["retrain", "--model", models[1], "--augment", augment,
                                "--epochs", 1, "--quiet", "--out", tmp_path / "own"])
    assert code == 0 and json.loads(stdout)["trained"] is True  # its own model: no flag
