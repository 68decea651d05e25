"""`uae reproduce table6` on tiny settings: the report's schema, figure, resume and refusal."""

import json

import numpy as np
import pytest

import autoencoders
from uae_tf import cli, datasets, evaluation, training
from uae_tf.reproduce import EXPERIMENTS, paper
from uae_tf.reproduce.table6 import ROWS

ARGS = [
    "reproduce", "table6", "--dataset", "digits", "--features", "6", "--limit", "12",
    "--epochs", "2", "--max-tries", "1", "--attack-batch-size", "12", "--quiet",
]


@pytest.fixture(scope="module")
def table6(tmp_path_factory):
    out = tmp_path_factory.mktemp("table6")
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    return out


def test_report_schema(table6, assert_row_is_its_files):
    assert "table6" in EXPERIMENTS
    report = json.loads((table6 / "report.json").read_text())
    assert [row["method"] for row in report["rows"]] == list(ROWS)
    rows = {row["method"]: row for row in report["rows"]}
    x_train, y_train = datasets.load("digits", "train")
    x_test, y_test = datasets.load("digits", "test")
    seed = table6 / "seed-0"
    for method, row in rows.items():
        assert row["test_error_std"] is None and row["accuracy_std"] is None  # one seed
        assert row["runs"] == 1 and len(row["selected_features"]) == 6
        # Each row is its saved model and results: the test error, the features it
        # selects, their ExtraTrees accuracy (seeded) and the ASR, recomputed.
        assert_row_is_its_files(row, seed / method, "digits",
                                seed / "augment" / method if method == "mine-uae" else None)
        phi, _ = training.load_model_dir(seed / method)
        selected = autoencoders.selected_features(phi)
        np.testing.assert_array_equal(row["selected_features"], selected)
        assert row["accuracy"] == evaluation.feature_selection_accuracy(
            x_train[:12], y_train[:12], x_test, y_test, selected, seed=0)
    assert rows["original"]["improvement_pct"] == 0.0
    # 12 originals in batches of 16: 1 step an epoch; 24 rows with the UAEs: 2.
    assert rows["original"]["steps"] == 2 and rows["mine-uae"]["steps"] == 4
    assert rows["original-same-steps"]["steps"] == 4
    assert report["config"]["features"] == 6 and report["config"]["view"] == "random"
    assert report["paper"]["dataset"] is None and report["n_train"] == 12


def test_report_files(table6):
    markdown = (table6 / "report.md").read_text()
    assert "| mine-uae |" in markdown and "selected_features.png" in markdown
    assert (table6 / "selected_features.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_resumes_and_changed_config_is_refused(table6, capsys):
    before = json.loads((table6 / "report.json").read_text())["rows"]
    capsys.readouterr()
    assert cli.main([*ARGS[:-1], "--out", str(table6)]) == 0
    assert capsys.readouterr().out.count("(done before)") == len(ROWS)
    assert json.loads((table6 / "report.json").read_text())["rows"] == before
    assert cli.main([*ARGS, "--epochs", "3", "--out", str(table6)]) == 1
    assert "holds results of another configuration" in capsys.readouterr().err


def test_paper_numbers_cover_the_six_datasets():
    assert set(paper.TABLE6) == {"mnist", "fashion_mnist", "isolet", "coil20", "mice_protein",
                                 "har"}
    assert paper.TABLE6_DATASET["mnist5k"] == "mnist"
    assert paper.TABLE6["mice_protein"]["mine-uae"]["asr"] == pytest.approx(0.4024)
    errors = np.array([[r["original"]["test_error"], r["mine-uae"]["test_error"]]
                       for r in paper.TABLE6.values()])
    assert np.all(errors > 0) and np.all(errors < 0.02)


def test_mice_protein_runs_offline_with_its_fill_recorded(tmp_path):
    # The packaged Mice Protein file, a fill that is not the paper's: recorded in the
    # config, and the report then claims no comparison with the paper's row.
    args = ["reproduce", "table6", "--dataset", "mice_protein", "--features", "4",
            "--limit", "12", "--epochs", "2", "--max-tries", "1", "--attack-batch-size", "12",
            "--quiet"]
    out = tmp_path / "observed"
    assert cli.main([*args, "--dataset-option", "fill=observed_mean", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["dataset_options"] == {"fill": "observed_mean"}
    assert report["paper"]["dataset"] is None
    summary = json.loads((out / "seed-0" / "augment" / "mine-uae" / "summary.json").read_text())
    assert summary["config"]["dataset_options"] == {"fill": "observed_mean"}
    record = json.loads((out / "seed-0" / "original" / "train.json").read_text())
    assert record["config"]["dataset_options"] == {"fill": "observed_mean"}
    # The same directory with the default (published) fill is another configuration.
    assert cli.main([*args, "--out", str(out)]) == 1
    assert cli.main([*args, "--dataset-option", "fill=median", "--out", str(out)]) == 1


def test_same_steps_control_takes_the_augmented_runs_batch():
    from uae_tf.reproduce.table6 import _same_steps

    train = {"arch": "concrete", "seed": 0}
    # N < 4,096: the batch is 16 with or without UAEs, an augmented epoch has twice
    # the steps; the control keeps the default batch and doubles the epochs.
    epochs, settings = _same_steps({"steps": 2 * 54 * 300, "config": {"batch_size": 16}},
                                   864, train)
    assert (epochs, settings) == (600, train)
    # N >= 4,096: the published rule doubles the batch instead (2N // 256); the
    # control trains at that batch for the augmented run's steps, not as `original`.
    steps = 300 * -(-120000 // 468)  # 300 augmented epochs of 2N rows at batch 468
    epochs, settings = _same_steps({"steps": steps, "config": {"batch_size": 468}},
                                   60000, train)
    per_epoch = -(-60000 // 468)
    assert settings == {**train, "batch_size": 468}
    assert (epochs - 1) * per_epoch < steps <= epochs * per_epoch  # as many steps
    assert epochs >= 2 * 300 - 2  # about twice the original's epochs, not 300
