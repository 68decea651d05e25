"""``uae reproduce table2`` (Table 2 / Figure 1) on tiny settings: schema, files,
resume, refused config, and the offline error of the Inception extractor."""

import contextlib
import io
import json

import pytest

from uae_tf import metrics
from uae_tf.cli import main
from uae_tf.reproduce import paper, run_table2
from uae_tf.runs import ConfigMismatchError

TINY = {"n": 3, "steps": 2, "runs": 2, "num_projections": 8, "classifier_epochs": 1}


def _run(argv):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    return code, json.loads(stdout.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, classifier):
    path = tmp_path_factory.mktemp("table2") / "classifier.keras"
    classifier.save(path)
    return path


def test_run_table2_reports_both_views_then_the_cli_resumes_it(tmp_path, model_file):
    out = tmp_path / "table2"
    report = run_table2(out, model=str(model_file), verbose=False, **TINY)
    assert report == json.loads((out / "report.json").read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["original", "conv", "random"]
    assert rows["conv"]["k"] == 8 and rows["random"]["k"] == 8  # the fixture's 8 filters
    assert rows["conv"]["runs"] == 1 and "per_run" not in rows["conv"]
    assert rows["random"]["runs"] == 2 and len(rows["random"]["per_run"]) == 2
    for row in report["rows"]:
        assert row["fid"] >= 0 and isinstance(row["kid"], float)
    for row in (rows["conv"], *rows["random"]["per_run"]):
        assert 0.0 <= row["asr"] <= 1.0 and row["linf"] <= 1.0 + 1e-6
    assert rows["random"]["fid"] == pytest.approx(
        sum(r["fid"] for r in rows["random"]["per_run"]) / 2)
    # The default extractor needs no download, and the report says so plainly.
    assert report["extractor"]["name"] == "classifier"
    assert report["extractor"]["comparable_with_paper"] is False
    assert report["paper"] == paper.TABLE2 and report["config"]["epsilon"] == 1.0
    markdown = (out / "report.md").read_text()
    assert "not comparable" in markdown and "339.47" in markdown and "KID x 100" in markdown
    assert (out / "fig1_examples.png").stat().st_size > 0
    assert (out / "extractor" / "model.keras").is_file()
    assert (out / "features" / "train.npz").is_file()
    # The same settings from the command line: every chunk and model is on disk, so it
    # resumes to the same rows.
    argv = ["reproduce", "table2", "--model", str(model_file), "--n", "3", "--steps", "2",
            "--runs", "2", "--num-projections", "8", "--classifier-epochs", "1", "--quiet",
            "--out", str(out)]
    code, summary = _run(argv)
    assert code == 0 and summary["rows"] == report["rows"]
    # Other settings into the same directory are refused, naming what changed.
    with pytest.raises(ConfigMismatchError, match=r"steps: 2 -> 3"):
        run_table2(out, model=str(model_file), verbose=False, **{**TINY, "steps": 3})


def test_table2_inception_offline_fails_before_attacking(tmp_path, model_file, monkeypatch,
                                                         capsys):
    def unreachable(url):
        raise OSError("no network")

    monkeypatch.setattr(metrics, "_check_reachable", unreachable)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    out = tmp_path / "table2"
    argv = ["reproduce", "table2", "--model", str(model_file), "--n", "2", "--steps", "2",
            "--extractor", "inception", "--quiet", "--out", str(out)]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uae: error: "), lines
    assert str(tmp_path / "keras" / "models") in lines[0] and "get_file" in lines[0]
    assert not (out / "conv").exists()
    assert main([*argv[:-2], "--extractor", "inceptoin", "--out", str(tmp_path / "x")]) == 1
    assert "extractor must be one of" in capsys.readouterr().err


def test_table2_at_the_papers_figure4_epsilon_draws_figure4(tmp_path, model_file):
    out = tmp_path / "fig4"
    report = run_table2(out, model=str(model_file), verbose=False, epsilon=0.03,
                        **{**TINY, "runs": 1})
    assert report["config"]["epsilon"] == 0.03
    assert report["figure"] == str(out / "fig4_examples.png")
    assert (out / "fig4_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "fig1_examples.png").exists()
    for row in report["rows"][1:]:
        assert row["linf"] <= 0.03 + 1e-6
    markdown = (out / "report.md").read_text()
    # The paper's Table 2 is at epsilon = 1: no paper numbers beside these rows.
    assert "339.47" not in markdown and "epsilon = 1 only" in markdown
    assert "![Figure 4](fig4_examples.png)" in markdown
    with pytest.raises(ValueError, match="epsilon"):
        run_table2(tmp_path / "bad", model=str(model_file), verbose=False, epsilon=1.5, **TINY)
