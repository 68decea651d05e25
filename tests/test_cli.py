"""Tests of the ``uae`` command line (uae_tf.cli), run in-process on the embedded data."""

import contextlib
import io
import json
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest

from uae_tf import datasets, evaluation, training
from uae_tf.cli import main
from uae_tf.generation import load_results
from uae_tf.reproduce.table4 import AUGMENTATIONS, DEMO, FIGURES
from uae_tf.runs import file_sha256


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(out dir, exit code, stdout)`` of one epoch of ``uae train`` (conv, mnist5k)."""
    out = tmp_path_factory.mktemp("cli") / "conv-mnist5k"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            ["train", "--arch", "conv", "--dataset", "mnist5k", "--epochs", "1", "--out", str(out)]
        )
    return out, code, stdout.getvalue()


def _last_json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def _one_error_line(stderr):
    """Returns the single ``uae: error:`` line of ``stderr``, checking there is no more."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("uae: error: ")
    return lines[0]


def test_train_writes_model_and_record(trained):
    out, code, stdout = trained
    assert code == 0
    assert (out / "model.keras").is_file()
    record = json.loads((out / "train.json").read_text())
    assert {"history", "config", "versions", "seconds", "train_reconstruction_error"} <= set(record)
    assert len(record["history"]["loss"]) == 1
    assert record["config"]["arch"] == "conv" and record["config"]["epochs"] == 1
    summary = _last_json_line(stdout)
    assert summary["out"] == str(out)
    assert summary["epochs"] == 1
    assert summary["final_loss"] == record["history"]["loss"][-1]
    assert summary["test_reconstruction_error"] == record["test_reconstruction_error"]


def test_evaluate_prints_reconstruction_error_as_last_line(trained, capsys, mnist5k):
    out, _, _ = trained
    assert main(["evaluate", "--model", str(out), "--dataset", "mnist5k"]) == 0
    result = _last_json_line(capsys.readouterr().out)
    assert result["n"] == 1000
    assert (result["dataset"], result["split"]) == ("mnist5k", "test")
    # The saved model's error on the test split, as training recorded it.
    phi, record = training.load_model_dir(out)
    error = evaluation.reconstruction_error(phi, mnist5k[2])
    assert result["reconstruction_error"] == pytest.approx(error, rel=1e-6)
    assert record["test_reconstruction_error"] == pytest.approx(error, rel=1e-6)


def test_retrain_trains_the_saved_architecture_on_originals_plus_augmentation(tmp_path,
                                                                              capsys):
    model, augment, out = tmp_path / "dense", tmp_path / "ga", tmp_path / "retrained"
    assert main(["train", "--arch", "dense", "--dataset", "digits", "--epochs", "1",
                 "--seed", "3", "--quiet", "--out", str(model)]) == 0
    assert main(["generate", "--model", str(model), "--dataset", "digits", "--limit", "100",
                 "--method", "gaussian", "--quiet", "--out", str(augment)]) == 0
    capsys.readouterr()
    assert main(["retrain", "--model", str(model), "--augment", str(augment), "--epochs", "2",
                 "--quiet", "--out", str(out)]) == 0
    summary = _last_json_line(capsys.readouterr().out)
    record = json.loads((out / "train.json").read_text())
    # The architecture, data and seed are the saved model's; the augmentation is named.
    config = record["config"]
    assert (config["arch"], config["dataset"], config["seed"], config["epochs"]) == (
        "dense", "digits", 3, 2)
    assert config["augmentation"]["method"] == "gaussian" and config["augmentation"]["n"] == 100
    assert config["augmentation"]["uae_sha256"] == file_sha256(augment / "uae.npz")
    # 1,437 originals and as many augmentations (the 1,337 not generated replicated):
    # 29 batches of 100 an epoch.
    assert record["n_train"] == 1437 and record["steps"] == 2 * 29
    phi, _ = training.load_model_dir(out)
    x_test, _ = datasets.load("digits", "test")
    assert summary["test_reconstruction_error"] == pytest.approx(
        evaluation.reconstruction_error(phi, x_test), rel=1e-6)
    # The command is the Python API with the same arguments: the same training.
    _, python = training.retrain(model, augment, epochs=2, verbose=0)
    assert python["history"] == record["history"]


def test_evaluate_on_other_image_shape_is_one_clear_error(trained, capsys):
    out, _, _ = trained
    assert main(["evaluate", "--model", str(out), "--dataset", "digits"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "(28, 28, 1)" in line and "8, 8, 1)" in line


def test_evaluate_missing_model_names_the_path(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["evaluate", "--model", str(missing), "--dataset", "mnist5k"]) == 1
    assert str(missing) in _one_error_line(capsys.readouterr().err)


def test_evaluate_corrupt_model_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "model.keras").write_bytes(b"\x00garbage, not a zip archive" * 20)
    assert main(["evaluate", "--model", str(tmp_path), "--dataset", "mnist5k"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "model.keras is not a readable Keras model" in line


def test_dataset_unavailable_is_one_line_with_exit_code_1(trained, capsys, monkeypatch):
    def unavailable(name, split="train", data_dir=None, download=True):
        raise datasets.DatasetUnavailableError(f"Dataset {name!r} is not cached.\n  fetch it")

    monkeypatch.setattr(datasets, "load", unavailable)
    out, _, _ = trained
    assert main(["evaluate", "--model", str(out), "--dataset", "mnist"]) == 1
    assert "Dataset 'mnist' is not cached. fetch it" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["train", "--arch", "vae", "--dataset", "mnist5k", "--out", "x"], "'vae'"),
        (["train", "--arch", "conv", "--dataset", "imagenet", "--out", "x"], "'imagenet'"),
        (["train", "--arch", "conv", "--dataset", "mnist5k", "--epochs", "0", "--out", "x"],
         "--epochs"),
        (["train", "--arch", "conv", "--dataset", "mnist5k"], "--out"),
        (["evaluate", "--model", "x", "--dataset", "mnist5k", "--split", "val"], "'val'"),
        (["attack"], "'attack'"),
        (["generate", "--model", "x", "--dataset", "mnist5k", "--shard", "2/2", "--out", "x"],
         "'2/2'"),
        (["demo", "--limit", "0"], "--limit"),
    ],
    ids=["arch", "dataset", "epochs", "no-out", "split", "command", "shard", "demo-limit"],
)
def test_bad_arguments_exit_2_with_one_line(argv, named, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert named in _one_error_line(captured.err)
    assert captured.out == ""


def test_help_lists_commands_and_options(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "evaluate" in text and "examples:" in text

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--arch", "--dataset", "--epochs", "--batch-size", "--seed", "--out", "conv"):
        assert option in text
    assert "examples:" in text

    assert main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--model", "--dataset", "--split", "reconstruction"):
        assert option in text


def test_reproduce_help_lists_the_experiments(capsys):
    assert main(["reproduce", "--help"]) == 0
    text = capsys.readouterr().out
    for name in ("table3", "table4", "figure3", "robustness"):
        assert name in text
    assert main(["reproduce", "robustness", "--help"]) == 0
    assert "--autoencoder-epochs" in capsys.readouterr().out


def test_demo_help_lists_its_settings(capsys):
    assert main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--limit N" in text and f"(default: {DEMO['limit']})" in text
    assert "--epochs N" in text and f"(default: {DEMO['epochs']})" in text
    assert f"view={DEMO['view']}" in text and f"preset={DEMO['preset']}" in text


def _printed_table(text):
    """``{method: (test error, ASR)}`` as the table of ``print_table`` in ``text`` shows them."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["method", "test"])
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        method, error, _, asr = line.split()
        rows[method] = (error, asr)
    return rows


@pytest.mark.slow
def test_demo_at_8_digits_prints_the_results_it_wrote(tmp_path, capsys):
    """``uae demo`` with its settings but 8 digits and 2 epochs: the table it prints is
    its report, and the ASRs are the success rates of the augmentations it wrote."""
    out = tmp_path / "demo"
    assert main(["demo", "--limit", "8", "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert _last_json_line(printed)["rows"] == report["rows"]
    config = report["config"]
    assert (report["n_train"], config["epochs"], config["augmented_epochs"]) == (8, 2, 2)
    assert {key: config[key] for key in ("dataset", "arch", "preset", "steps", "view",
                                         "seeds")} == {
        "dataset": DEMO["dataset"], "arch": DEMO["arch"], "preset": DEMO["preset"],
        "steps": DEMO["steps"], "view": DEMO["view"], "seeds": [DEMO["seed"]]}

    table = _printed_table(printed)
    assert list(table) == [row["method"] for row in report["rows"]]
    for row in report["rows"]:
        assert table[row["method"]][0] == f"{row['test_error']:.6f}"
    for method in AUGMENTATIONS:
        results = load_results(out / "seed-0" / "augment" / method)
        assert len(results) == 8
        assert table[method][1] == f"{results.success.mean():.1%}", method
    mine = load_results(out / "seed-0" / "augment" / "mine-uae")
    assert mine.config["attack"]["similarity"]["view"] == DEMO["view"]
    assert mine.mi_history.shape == (8, DEMO["steps"])  # the paper's T, not the preset's
    # The published rule: a success met the criterion with a positive MI estimate.
    assert np.all(mine.f[mine.success] <= 0) and np.all(mine.mi[mine.success] > 0)
    rows = {row["method"]: row for row in report["rows"]}
    assert rows["original-same-steps"]["steps"] == rows["mine-uae"]["steps"]
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["uae", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("uae_tf", run_name="__main__")
    assert exit_.value.code == 0
    assert "evaluate" in capsys.readouterr().out


def test_installed_console_script_help():
    executable = shutil.which("uae")
    if executable is None:
        pytest.fail("the `uae` console script is not on PATH: run `pip install -e .`")
    result = subprocess.run(
        [executable, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage: uae" in result.stdout
    assert "train" in result.stdout and "evaluate" in result.stdout
