"""`uae reproduce table4` on tiny settings: the report's schema, figures and resume."""

import json

import matplotlib
import numpy as np
import pytest

from uae_tf import cli, datasets
from uae_tf.attacks._iteration import glorot_radius
from uae_tf.generation import load_results
from uae_tf.reproduce._retraining import paired_differences
from uae_tf.reproduce.table4 import AUGMENTATIONS, ROWS

ARGS = [
    "reproduce", "table4", "--dataset", "digits", "--arch", "dense", "--limit", "24",
    "--epochs", "2", "--augmented-epochs", "1", "--steps", "3", "--attack-batch-size", "24",
    "--quiet",
]


@pytest.fixture(scope="module")
def table4(tmp_path_factory):
    out = tmp_path_factory.mktemp("table4")
    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # A caller's choice the experiment must leave alone.
    try:
        assert cli.main([*ARGS, "--out", str(out)]) == 0
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(backend)
    return out


def test_report_schema(table4, assert_row_is_its_files):
    report = json.loads((table4 / "report.json").read_text())
    assert [row["method"] for row in report["rows"]] == list(ROWS)
    seed = table4 / "seed-0"
    for row in report["rows"]:
        assert {"method", "test_error", "test_error_std", "asr", "improvement_pct"} <= set(row)
        assert row["test_error_std"] is None  # one replicate
        # The row's test error and ASR are those of its model and results on disk.
        augmented = row["method"] in AUGMENTATIONS
        assert_row_is_its_files(row, seed / row["method"], "digits",
                                seed / "augment" / row["method"] if augmented else None)
    rows = {row["method"]: row for row in report["rows"]}
    assert rows["original"]["improvement_pct"] == 0.0
    for method in AUGMENTATIONS:
        base = rows["original"]["test_error"]
        expected = 100 * (base - rows[method]["test_error"]) / base
        assert rows[method]["improvement_pct"] == pytest.approx(expected)
    # 48 augmented samples in batches of 100: 1 step per epoch; the control matches it.
    assert rows["mine-uae"]["steps"] == rows["original-same-steps"]["steps"]
    config = report["config"]
    assert config["seeds"] == [0] and config["limit"] == 24
    # --steps is the T the MINE-UAE and L2-UAE attacks ran, as the config says.
    assert config["steps"] == 3
    for method in ("mine-uae", "l2-uae"):
        results = load_results(seed / "augment" / method)
        assert results.config["attack"]["steps"] == 3, method
    assert load_results(seed / "augment" / "mine-uae").mi_history.shape == (24, 3)
    assert config["initial_perturbation"] == "glorot" and config["selection"] == "published"
    assert "tensorflow" in report["versions"]
    assert report["n_train"] == 24
    paired = {p["method"]: p for p in report["paired"]}
    assert set(paired) == set(ROWS) - {"mine-uae"}
    assert paired["original"]["mean"] == pytest.approx(
        rows["mine-uae"]["test_error"] - rows["original"]["test_error"])
    assert paired["original"]["std"] is None


def test_start_only_row_is_the_attacks_start_alone(table4):
    """start-only augments with x + delta_0, the MINE-UAE attack's own start."""
    x, _ = datasets.load("digits", "train")
    x = x[:24]
    start = load_results(table4 / "seed-0" / "augment" / "start-only")
    mine = load_results(table4 / "seed-0" / "augment" / "mine-uae")
    assert start.method == "start" and mine.config["attack"]["initial_perturbation"] == "glorot"
    delta = start.x_adv - x
    radius = glorot_radius(x.shape[1:])
    assert 0.5 * radius < np.abs(delta).max() <= radius + 1e-6
    assert np.all(start.mi_history.shape == (24, 0))
    # The MINE-UAEs moved from that start by the attack's iterations only: nearer to
    # it than to x.
    assert np.abs(mine.x_adv - start.x_adv).mean() < np.abs(mine.x_adv - x).mean()


def test_paired_differences_per_replicate():
    def records(*errors):
        return [{"test_reconstruction_error": e} for e in errors]

    paired = paired_differences(
        {"mine-uae": records(0.10, 0.20, 0.30), "a": records(0.11, 0.22, 0.33),
         "b": records(0.09, 0.21, 0.30)},
        "mine-uae", ("a", "mine-uae", "b"),
    )
    assert [p["method"] for p in paired] == ["a", "b"]
    a, b = paired
    np.testing.assert_allclose(a["differences"], [-0.01, -0.02, -0.03])
    assert a["mean"] == pytest.approx(-0.02) and a["std"] == pytest.approx(0.01)
    assert a["same_sign"] and not b["same_sign"]  # b: +0.01, -0.01, 0


def test_report_files(table4):
    markdown = (table4 / "report.md").read_text()
    assert "| mine-uae |" in markdown and "fig5_uaes.png" in markdown
    for name in ("fig5_uaes.png", "mi_c_history.png"):
        assert (table4 / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_resumes_and_changed_config_is_refused(table4, capsys):
    before = json.loads((table4 / "report.json").read_text())["rows"]
    assert cli.main([*ARGS[:-1], "--out", str(table4)]) == 0
    assert capsys.readouterr().out.count("(done before)") == len(ROWS)
    assert json.loads((table4 / "report.json").read_text())["rows"] == before
    assert cli.main([*ARGS, "--seed", "3", "--out", str(table4)]) == 1
    assert "holds results of another configuration" in capsys.readouterr().err


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.main(["reproduce", "table4", "--dataset", "digits", "--arch", "dense",
                     "--initial-perturbation", "big", "--out", str(tmp_path)]) == 2
    assert "initial-perturbation" in capsys.readouterr().err


def test_changed_epochs_of_one_model_are_refused_not_reused(table4, capsys):
    """A model directory carries its own config, checked even when OUT's is not."""
    original = table4 / "seed-0" / "original"
    stored = json.loads((original / "config.json").read_text())
    assert stored["config"]["epochs"] == 2
    stored["config"]["epochs"] = 5
    (original / "config.json").write_text(json.dumps(stored))
    try:
        assert cli.main([*ARGS, "--out", str(table4)]) == 1
        assert "epochs: 5 -> 2" in capsys.readouterr().err
    finally:
        stored["config"]["epochs"] = 2
        (original / "config.json").write_text(json.dumps(stored))
