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
