"""Issue 13's experiments on tiny settings: table5, table9, second-run, adversarial-training.

Each command runs once, as it ships, on a few digits, with 1-2 epochs and attacks
of T = 2 iterations (``--steps 2``); the tests check the report's schema, that its
rows are the models and results on disk, the files, that a rerun resumes and that
changed settings are refused.
"""

import json

import numpy as np
import pytest

import autoencoders
from uae_tf import ConventionalAugmentation, UAESequence, cli, datasets, evaluation, training
from uae_tf.runs import merge_chunks

PNG = b"\x89PNG\r\n\x1a\n"


def _run(args, out, capsys):
    """Runs ``uae ARGS --out OUT --quiet`` and returns (exit code, last line, stderr)."""
    code = cli.main([*args, "--quiet", "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines()[-1] if captured.out.strip() else "", captured.err


# -- the conventional augmentations ------------------------------------------------------


def test_conventional_augmentation_is_seeded():
    x, _ = datasets.load("mnist5k", "train")
    x = x[:32]
    augment = ConventionalAugmentation(flip=True, rotation=10, noise=0.001)
    first = augment(x, seed=(0, 1, 2))
    assert first.shape == x.shape and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    assert np.array_equal(first, augment(x, seed=(0, 1, 2)))
    assert not np.array_equal(first, augment(x, seed=(1, 1, 2)))
    assert not np.array_equal(first, augment(x, seed=(0, 2, 2)))
    # Noise alone: small, different per seed.
    noisy = ConventionalAugmentation(noise=0.001)(x, seed=5)
    assert 0 < np.abs(noisy - x).max() < 0.01
    # Flips alone: every sample is itself flipped along none, one or both axes.
    flipped = ConventionalAugmentation(flip=True)(x, seed=7)
    for original, image in zip(x, flipped):
        assert any(np.array_equal(image, variant) for variant in (
            original, original[:, ::-1], original[::-1], original[::-1, ::-1]))
    assert not np.array_equal(flipped, x)
    assert ConventionalAugmentation(**augment.get_config()).get_config() == augment.get_config()
    with pytest.raises(ValueError, match="noise"):
        ConventionalAugmentation(noise=-1)


def test_sequence_serves_k_augmentations_or_none_and_transforms_batches():
    x = np.random.default_rng(0).random((10, 4, 4, 1), dtype=np.float32)
    y = np.arange(10)
    two = np.concatenate([x + 0.5, x + 0.25]).clip(0, 1)
    success = np.ones(20, bool)
    success[3] = False  # First run's UAE of sample 3 failed: replaced by x[3].
    sequence = UAESequence(x, two, success, y=y, batch_size=30, shuffle=False)
    assert sequence.num_samples == 30 and len(sequence) == 1
    inputs, labels = sequence[0]
    assert np.array_equal(labels, np.concatenate([y, y, y]))
    assert np.array_equal(inputs[13], x[3]) and np.array_equal(inputs[23], two[13])
    alone = UAESequence(x, None, batch_size=4, seed=3,
                        transform=ConventionalAugmentation(noise=0.01))
    assert alone.num_samples == 10
    batch, target = alone[2]
    assert np.array_equal(batch, target) and not np.array_equal(batch, x[alone._order[8:]])
    with pytest.raises(ValueError, match="k \\* 10 rows"):
        UAESequence(x, two[:15])


# -- table5 ----------------------------------------------------------------------------

TABLE5 = ["reproduce", "table5", "--dataset", "digits", "--limit", "16", "--epochs", "1",
          "--augmented-epochs", "1", "--steps", "2", "--settings", "flip-rotation-noise"]


@pytest.fixture(scope="module")
def table5(tmp_path_factory):
    out = tmp_path_factory.mktemp("table5")
    assert cli.main([*TABLE5, "--quiet", "--out", str(out)]) == 0
    return out


def test_table5_report(table5, assert_row_is_its_files):
    report = json.loads((table5 / "report.json").read_text())
    methods = [row["method"] for row in report["rows"]]
    assert methods == ["original", "flip-rotation-noise", "flip-rotation-noise+mine-uae",
                       "flip-rotation-noise-same-steps"]
    rows = {row["method"]: row for row in report["rows"]}
    seed = table5 / "seed-0"
    for method, row in rows.items():
        setting = method.removesuffix("+mine-uae")
        assert_row_is_its_files(row, seed / method, "digits",
                                seed / "augment" / setting if method != setting else None)
    for setting in ("flip-rotation-noise",):
        uae = rows[f"{setting}+mine-uae"]
        base = rows[setting]["test_error"]
        assert uae["improvement_over_augmented_pct"] == pytest.approx(
            100 * (base - uae["test_error"]) / base)
        assert rows[f"{setting}-same-steps"]["steps"] >= uae["steps"]
    config = report["config"]
    assert list(config["transforms"]) == ["flip-rotation-noise"] and config["noise"] == 0.001
    assert config["view"] == "random" and config["preset"] == "fast" and config["limit"] == 16
    assert config["steps"] == 2
    attack = json.loads((seed / "augment" / "flip-rotation-noise" / "summary.json").read_text())
    assert attack["config"]["attack"]["steps"] == 2
    model = json.loads((table5 / "seed-0" / "flip-rotation-noise" / "train.json").read_text())
    assert model["config"]["transform"] == {"flip": True, "rotation": 10.0, "noise": 0.001}
    assert report["paper"]["rows"]["noise"] == {"augmented": 0.00107, "mine-uae": 0.00095}
    markdown = (table5 / "report.md").read_text()
    assert "| flip-rotation-noise (flips, 10° rotation, σ 0.001) |" in markdown
    assert "0.00099" in markdown
    assert (table5 / "table5.png").read_bytes()[:8] == PNG


def test_table5_resumes_and_refuses_other_settings(table5, capsys):
    before = json.loads((table5 / "report.json").read_text())
    code, last, _ = _run(TABLE5, table5, capsys)
    assert code == 0
    assert [r["test_error"] for r in json.loads(last)["rows"]] == [
        r["test_error"] for r in before["rows"]]
    code, _, err = _run([*TABLE5[:-1], "noise", "--noise", "0.01"], table5, capsys)
    assert code == 1 and "noise" in err and "another configuration" in err


# -- table9 ----------------------------------------------------------------------------

TABLE9 = ["reproduce", "table9", "--dataset", "digits", "--limit", "16", "--epochs", "1",
          "--augmented-epochs", "1", "--steps", "2", "--alphas", "0.05", "--betas", "0.5"]


def test_table9_report_resume_and_refusal(tmp_path, capsys, assert_row_is_its_files):
    code, last, _ = _run(TABLE9, tmp_path, capsys)
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(report["rows"]) == ["concrete", "conv"]
    for arch, rows in report["rows"].items():
        assert [row["method"] for row in rows] == [
            "original", "mine-uae-a0.05-b0.5", "original-same-steps"]
        run = tmp_path / "seed-0" / arch
        for row in rows:
            augmented = row["method"].startswith("mine-uae")
            assert_row_is_its_files(row, run / row["method"], "digits",
                                    run / "augment" / row["method"] if augmented else None)
        row = rows[1]
        assert (row["alpha"], row["beta"]) == (0.05, 0.5)
        attack = json.loads((run / "augment" / "mine-uae-a0.05-b0.5" /
                             "summary.json").read_text())["config"]["attack"]
        assert attack["step_size"] == 0.05 and attack["beta"] == 0.5 and attack["steps"] == 2
        # The control takes at least the augmented row's steps, within one epoch.
        assert rows[1]["steps"] <= rows[2]["steps"] < rows[1]["steps"] + rows[0]["steps"]
    # The concrete rows' accuracy: ExtraTrees (seeded) on the features each saved model
    # selects, recomputed.
    x_train, y_train = datasets.load("digits", "train")
    x_test, y_test = datasets.load("digits", "test")
    for row in report["rows"]["concrete"]:
        phi, _ = training.load_model_dir(tmp_path / "seed-0" / "concrete" / row["method"])
        assert row["accuracy"] == evaluation.feature_selection_accuracy(
            x_train[:16], y_train[:16], x_test, y_test, autoencoders.selected_features(phi))
    assert "accuracy" not in report["rows"]["conv"][0]
    similarity = json.loads((tmp_path / "seed-0" / "concrete" / "augment" / "mine-uae-a0.05-b0.5"
                             / "summary.json").read_text())["config"]["attack"]["similarity"]
    assert similarity["view"] == "random"
    markdown = (tmp_path / "report.md").read_text()
    assert "0.00285" in markdown and "0.01138" in markdown and "## concrete" in markdown
    assert (tmp_path / "table9.png").read_bytes()[:8] == PNG
    assert json.loads(last)["rows"] == report["rows"]
    # A rerun resumes: nothing trained again, the same report.
    code, last, _ = _run(TABLE9, tmp_path, capsys)
    assert code == 0 and json.loads(last)["rows"] == report["rows"]
    code, _, err = _run([*TABLE9[:-1], "0.1"], tmp_path, capsys)
    assert code == 1 and "betas" in err
    code, _, err = _run([*TABLE9, "--archs", "conv"], tmp_path, capsys)
    assert code == 1 and "archs" in err
    code, _, err = _run([*TABLE9, "--archs", "dense"], tmp_path / "other", capsys)
    assert code == 2 and "dense" in err


# -- second-run ------------------------------------------------------------------------

SECOND_RUN = ["reproduce", "second-run", "--dataset", "digits", "--limit", "16", "--epochs",
              "1", "--augmented-epochs", "1", "--steps", "2"]


def test_second_run_report_resume_and_refusal(tmp_path, capsys, assert_row_is_its_files):
    code, _, _ = _run(SECOND_RUN, tmp_path, capsys)
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["original", "first-run", "second-run", "first-run-same-steps",
                          "original-same-steps"]
    seed = tmp_path / "seed-0"
    for method, row in rows.items():
        attacked = method in ("first-run", "second-run")
        assert_row_is_its_files(row, seed / method, "digits",
                                seed / "augment" / method if attacked else None)
    assert report["config"]["arch"] == "sparse"
    # 16 originals + 16 + 16 UAEs in batches of 100: one step an epoch, like the controls.
    assert rows["second-run"]["steps"] == rows["first-run-same-steps"]["steps"] == 1
    record = json.loads((tmp_path / "seed-0" / "second-run" / "train.json").read_text())
    first, second = record["config"]["augmentation"]
    assert first["path"].endswith("first-run") and second["path"].endswith("second-run")
    assert record["n_train"] == 16
    second_config = json.loads((tmp_path / "seed-0" / "augment" / "second-run" /
                                "summary.json").read_text())["config"]
    assert second_config["attack"]["seed"] == 1  # The second run's attack: seed S + 1.
    assert "0.00199" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "second_run.png").read_bytes()[:8] == PNG
    code, _, _ = _run(SECOND_RUN, tmp_path, capsys)
    assert code == 0
    code, _, err = _run([*SECOND_RUN, "--arch", "dense"], tmp_path, capsys)
    assert code == 1 and "arch" in err


# -- adversarial-training --------------------------------------------------------------

ADVERSARIAL = ["reproduce", "adversarial-training", "--limit", "16", "--n", "1",
               "--epsilons", "0.1,0.4", "--classifier-epochs", "2", "--clean-epochs", "1",
               "--ramp-epochs", "1", "--steps", "2", "--train-steps", "2"]


@pytest.mark.slow
def test_adversarial_training_report_resume_and_refusal(tmp_path, capsys, conv_ae_dir):
    # The UAEs' autoencoder is the session's (trained once for every test).
    adversarial = [*ADVERSARIAL, "--autoencoder", str(conv_ae_dir)]
    code, _, _ = _run(adversarial, tmp_path, capsys)
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["model"], r["epsilon"]) for r in report["rows"]] == [
        ("adv", 0.1), ("adv", 0.4), ("adv_uae", 0.1), ("adv_uae", 0.4)]
    # Each row is its PGD results on disk: the saved classifier fooled there.
    indices = np.asarray(report["config"]["indices"])
    x_test, y_test = datasets.load("mnist5k", "test")
    for row in report["rows"]:
        classifier, _ = training.load_model_dir(tmp_path / row["model"])
        result, _ = merge_chunks(tmp_path / "pgd" / row["model"] / f"eps_{row['epsilon']:g}",
                                 indices)
        fooled = classifier.predict(result.x_adv, verbose=0).argmax(-1) != y_test[indices]
        np.testing.assert_array_equal(result.success, fooled)
        assert row["asr"] == pytest.approx(fooled.mean(), rel=1e-12)
    adversary = report["config"]["adversary"]
    assert adversary == {"epsilon": 0.3, "steps": 2, "step_size": pytest.approx(0.375),
                         "loss": "crossentropy", "random_start": True, "seed": 0}
    record = json.loads((tmp_path / "adv_uae" / "train.json").read_text())
    assert record["config"]["adversary"]["attack"] == "PGDAttack"
    assert record["config"]["n_train"] == 32
    assert record["config"]["adversary_schedule"] == {"clean_epochs": 1, "ramp_epochs": 1}
    assert report["config"]["adversary_schedule"]["adv"] == {"clean_epochs": 2, "ramp_epochs": 2}
    at_chance = [name for name, facts in report["config"]["classifiers"].items()
                 if facts["test_accuracy"] <= 0.15]
    assert len(report["warnings"]) == len(at_chance)
    pgd = json.loads((tmp_path / "pgd" / "adv" / "eps_0.4" / "config.json").read_text())
    assert pgd["config"]["attack"]["step_size"] == pytest.approx(2.5 * 0.4 / 100)
    assert "Adv. training-UAE" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "adversarial_training.png").read_bytes()[:8] == PNG
    code, _, _ = _run(adversarial, tmp_path, capsys)
    assert code == 0
    code, _, err = _run([*adversarial, "--train-steps", "3"], tmp_path, capsys)
    assert code == 1 and "adversary.steps" in err
    code, _, err = _run([*adversarial, "--clean-epochs", "2"], tmp_path, capsys)
    assert code == 1 and "clean_epochs" in err
