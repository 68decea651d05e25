"""Tests of the supervised half: classifiers, the penalty attack with binary search,
PGD, and ``uae reproduce table3`` on tiny settings."""

import contextlib
import functools
import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from uae_tf import datasets
from uae_tf.attacks import MinMaxAttack, PenaltyAttack, PGDAttack
from uae_tf.attacks.penalty import binary_search_update
from uae_tf.cli import main
from uae_tf.criteria import MarginCriterion
from uae_tf.models import AdversarialTraining, build_classifier, train_classifier
from uae_tf.runs import ConfigMismatchError, merge_chunks
from uae_tf.training import load_model_dir

# A small random view keeps the MINE networks tiny, so the attacks run in seconds.
FAST_VIEW = {
    "similarity": {"name": "mine", "view": "random", "num_projections": 16, "projection_dim": 8}
}


def _first_correct(classifier, mnist5k, n):
    """The first ``n`` test digits ``classifier`` classifies correctly: ``(x, y)``."""
    x, y = mnist5k[2], mnist5k[3]
    keep = np.flatnonzero(_predict(classifier, x[:200]) == y[:200])[:n]
    assert len(keep) == n
    return x[keep], y[keep]


@pytest.fixture(scope="module")
def correct(mnist5k, classifier):
    """Eight test digits the ``classifier`` fixture classifies correctly: ``(x, y)``."""
    return _first_correct(classifier, mnist5k, 8)


@pytest.fixture(scope="module")
def penalty_result(classifier, correct):
    """A penalty attack of 6 search steps of 5 iterations on the eight digits.

    The step on delta is 10x the paper's, so that c = 1 is enough to succeed in 5
    iterations and the search has steps left to bisect.
    """
    attack = PenaltyAttack(
        MarginCriterion(classifier), search_steps=6, steps=5, step_size=0.1, seed=0,
        batch_size=8, **FAST_VIEW,
    )
    return attack, attack(correct[0], labels=correct[1])


def _predict(model, x):
    return model.predict(x, verbose=0).argmax(-1)


def _search_constants(result, steps):
    """``[N, B]`` the constant c each search step used."""
    c = result.c_history.reshape(len(result.c_history), -1, steps)
    assert np.all(c == c[:, :, :1]), "c must be fixed within a search step"
    return c[:, :, 0]


# Classifiers.


def test_mnist_classifier_is_the_carlini_wagner_stack():
    model = build_classifier((28, 28, 1), seed=0)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (3, 3) and c.padding == "valid" for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)
    assert [p.pool_size for p in pools] == [(2, 2), (2, 2)]
    assert [d.units for d in denses] == [200, 200, 10]
    assert [d.activation.__name__ for d in denses] == ["relu", "relu", "linear"]  # logits
    assert model.output_shape == (None, 10)
    assert isinstance(model.optimizer, keras.optimizers.SGD) and model.optimizer.nesterov


def test_cifar_classifier_widths_and_bad_shapes():
    model = build_classifier((32, 32, 3), seed=0)
    assert model.name == "cw_cifar"
    assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)] == [64, 64, 128, 128]
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == [256, 256, 10]
    for small in ((8, 8, 1), (15, 28, 1)):
        with pytest.raises(ValueError, match="at least 16x16"):
            build_classifier(small)
    assert build_classifier((16, 16, 1)).output_shape == (None, 10)
    with pytest.raises(ValueError, match="variant"):
        build_classifier((28, 28, 1), variant="imagenet")


# Binary search (Algorithm 3).


def test_binary_search_multiplies_c_by_ten_while_unbounded():
    const, lower, upper = binary_search_update([False], [1e-3], [1e-3], [1e9])
    assert const[0] == pytest.approx(1e-2) and lower[0] == 1e-3 and upper[0] == 1e9
    const, lower, upper = binary_search_update([False], const, lower, upper)
    assert const[0] == pytest.approx(1e-1) and lower[0] == pytest.approx(1e-2)


def test_binary_search_lowers_c_after_a_success_then_bisects():
    const, lower, upper = binary_search_update([True], [10.0], [1.0], [1e9])
    assert upper[0] == 10.0 and const[0] == pytest.approx(5.5) and const[0] < 10.0
    # A failure below a known upper bound bisects upwards, never x10.
    const, lower, upper = binary_search_update([False], const, lower, upper)
    assert lower[0] == pytest.approx(5.5) and const[0] == pytest.approx(7.75)


def test_penalty_search_raises_c_until_success_then_lowers_it(penalty_result):
    attack, result = penalty_result
    constants = _search_constants(result, attack.steps)
    assert np.allclose(constants[:, 0], 1e-3)
    for c in constants:
        ratios = c[1:] / c[:-1]
        fell = np.flatnonzero(ratios < 1)
        rises = ratios if not len(fell) else ratios[: fell[0]]
        assert np.allclose(rises, 10.0, rtol=1e-5), c  # x10 while unbounded
        if len(fell):  # after the first success, c is bounded: never x10 again
            assert np.all(ratios[fell[0]:] < 10.0 - 1e-3), c
    # With 6 search steps every digit succeeded at some c, and c fell after it.
    assert np.all((constants[:, 1:] < constants[:, :-1]).any(axis=1))
    assert result.mi_history.shape == result.c_history.shape == (len(constants), 6 * 5)


@pytest.mark.parametrize("method", ["penalty", "minmax", "pgd"])
def test_success_flags_match_the_recomputed_prediction(method, classifier, correct, penalty_result):
    x, y = correct
    if method == "penalty":
        result = penalty_result[1]
    elif method == "minmax":
        result = MinMaxAttack(MarginCriterion(classifier), steps=20, seed=0, batch_size=8,
                              **FAST_VIEW)(x, labels=y)
    else:
        result = PGDAttack(classifier, epsilon=0.1, steps=10)(x, labels=y)
    np.testing.assert_array_equal(result.success, _predict(classifier, result.x_adv) != y)
    assert result.success.any()
    assert np.all((result.x_adv >= 0) & (result.x_adv <= 1))


def test_penalty_keeps_the_best_mi_successful_iterate(penalty_result, correct):
    attack, result = penalty_result
    assert np.all(result.f[result.success] <= 0)
    # The returned MI is the estimate of one of the iterates (the best successful
    # one, else the lowest-f one): an entry of the history.
    for mi, history in zip(result.mi, result.mi_history):
        assert np.any(history == mi), (mi, history)


def test_penalty_batch_gives_what_single_runs_give(classifier, correct):
    x, y = correct[0][:3], correct[1][:3]
    # Graph mode: the property does not depend on XLA, and it compiles 3x faster.
    settings = dict(search_steps=2, steps=3, seed=5, jit_compile=False, **FAST_VIEW)
    batched = PenaltyAttack(MarginCriterion(classifier), batch_size=3, **settings)(x, labels=y)
    single = PenaltyAttack(MarginCriterion(classifier), batch_size=1, **settings)(x, labels=y)
    np.testing.assert_allclose(batched.x_adv, single.x_adv, atol=1e-5)
    np.testing.assert_allclose(batched.c_history, single.c_history)
    np.testing.assert_array_equal(batched.success, single.success)


def test_penalty_rejects_bad_settings(classifier):
    criterion = MarginCriterion(classifier)
    with pytest.raises(ValueError, match="search_steps"):
        PenaltyAttack(criterion, search_steps=0)
    with pytest.raises(ValueError, match="lower_bound"):
        PenaltyAttack(criterion, lower_bound=10.0, upper_bound=1.0)
    with pytest.raises(ValueError, match="initial_const"):
        PenaltyAttack(criterion, initial_const=0.0)
    assert "search_steps=9" in repr(PenaltyAttack(criterion))


# PGD.


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_its_epsilon_ball_and_in_the_unit_box(classifier, correct, random_start):
    x, y = correct
    epsilon = 0.05
    result = PGDAttack(classifier, epsilon=epsilon, steps=10, random_start=random_start,
                       seed=1)(x, labels=y)
    assert np.abs(result.x_adv - x).max() <= epsilon + 1e-6
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert np.all(np.isnan(result.mi)) and result.mi_history.shape == (len(x), 0)


def test_pgd_random_start_depends_on_the_seed_only(classifier, correct):
    x, y = correct
    a = PGDAttack(classifier, epsilon=0.05, steps=1, random_start=True, seed=3, batch_size=3)
    b = PGDAttack(classifier, epsilon=0.05, steps=1, random_start=True, seed=3, batch_size=8)
    np.testing.assert_allclose(a(x, labels=y).x_adv, b(x, labels=y).x_adv, atol=1e-6)


@pytest.mark.parametrize("loss", ["margin", "crossentropy"])
def test_targeted_pgd_reaches_the_target(classifier, mnist5k, loss):
    # Measured with either loss: 29 of the 32 reach the target, none within 0.4 of
    # a logit of the boundary; the test fails only if 6 more miss (19%).
    x, y = _first_correct(classifier, mnist5k, 32)
    targets = (y + 1) % 10
    result = PGDAttack(classifier, epsilon=0.3, steps=40, loss=loss, targeted=True)(x, labels=targets)
    predicted = _predict(classifier, result.x_adv)
    np.testing.assert_array_equal(result.success, predicted == targets)
    assert result.attack_success_rate >= 0.75


def test_targeted_penalty_attack_reaches_the_target(classifier, correct):
    x, y = correct[0][:4], correct[1][:4]
    targets = (y + 1) % 10
    attack = PenaltyAttack(MarginCriterion(classifier, targeted=True), search_steps=6, steps=5,
                           step_size=0.1, seed=0, batch_size=4, jit_compile=False, **FAST_VIEW)
    result = attack(x, labels=targets)
    predicted = _predict(classifier, result.x_adv)
    assert result.success.any()
    np.testing.assert_array_equal(predicted[result.success], targets[result.success])


def test_pgd_perturb_at_a_smaller_epsilon_scales_the_step(classifier, correct):
    # perturb(epsilon=e) is the attack at e: the ball shrinks and the step scales,
    # so it matches a PGDAttack built at e from the same start.
    x, y = correct
    full = PGDAttack(classifier, epsilon=0.2, steps=5, loss="crossentropy")
    half = PGDAttack(classifier, epsilon=0.1, steps=5, loss="crossentropy")
    x, y = tf.constant(x), tf.constant(y)
    scheduled = full.perturb(x, y, epsilon=tf.constant(0.1)).numpy()
    np.testing.assert_allclose(scheduled, half.perturb(x, y).numpy(), atol=1e-6)
    assert np.abs(scheduled - x.numpy()).max() <= 0.1 + 1e-6
    assert np.abs(scheduled - x.numpy()).max() > 0.05


def test_adversarial_training_epsilon_schedule(classifier):
    attack = PGDAttack(classifier, epsilon=0.3, steps=1)
    trainer = AdversarialTraining(classifier, attack, clean_steps=4, ramp_steps=3)
    epsilons = [float(trainer.epsilon_at(step)) for step in range(9)]
    np.testing.assert_allclose(epsilons, [0, 0, 0, 0, 0.1, 0.2, 0.3, 0.3, 0.3], atol=1e-6)
    at_once = AdversarialTraining(classifier, attack)
    assert float(at_once.epsilon_at(0)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="ramp_steps"):
        AdversarialTraining(classifier, attack, ramp_steps=-1)


def test_adversarial_training_clean_epochs_train_on_clean_batches():
    # All epochs clean: the same SGD steps on the same batches as plain training.
    x, y = datasets.load("mnist5k", "train")
    settings = dict(epochs=1, batch_size=32, limit=64, x=x, y=y, verbose=0)
    plain, _ = train_classifier("mnist5k", **settings)
    adversary = functools.partial(PGDAttack, epsilon=0.3, steps=2, loss="crossentropy",
                                  random_start=True)
    clean, record = train_classifier("mnist5k", adversary=adversary, clean_epochs=1, **settings)
    assert record["config"]["adversary_schedule"] == {"clean_epochs": 1, "ramp_epochs": 0}
    for a, b in zip(plain.get_weights(), clean.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, np.abs(a).max()))
    with pytest.raises(ValueError, match="adversary=None"):
        train_classifier("mnist5k", clean_epochs=1, **settings)


def test_pgd_rejects_bad_settings(classifier, correct):
    with pytest.raises(ValueError, match="epsilon"):
        PGDAttack(classifier, epsilon=2.0)
    with pytest.raises(ValueError, match="loss"):
        PGDAttack(classifier, loss="hinge")
    with pytest.raises(ValueError, match="labels"):
        PGDAttack(classifier)(correct[0], labels=correct[1][:2])
    assert PGDAttack(classifier, epsilon=0.2, steps=100).step_size == pytest.approx(0.005)


# Command line.


def _run(argv):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    return code, json.loads(stdout.getvalue().strip().splitlines()[-1])


def test_uae_train_classifier_records_test_accuracy(tmp_path):
    out = tmp_path / "cw"
    code, summary = _run(["train", "--arch", "classifier", "--dataset", "mnist5k",
                          "--epochs", "1", "--quiet", "--out", str(out)])
    assert code == 0 and summary["arch"] == "classifier"
    record = json.loads((out / "train.json").read_text())
    assert 0.0 <= record["test_accuracy"] <= 1.0
    assert record["config"]["batch_size"] == 128 and record["config"]["variant"] == "mnist"
    assert (out / "model.keras").is_file()


def test_run_table3_from_python_then_the_cli_resumes_it(tmp_path, classifier, mnist5k):
    from uae_tf import reproduce

    model_file = tmp_path / "classifier.keras"
    classifier.save(model_file)
    out = tmp_path / "table3"
    report = reproduce.run_table3(out, model=str(model_file), n=2, steps=4,
                                  search_steps=2, view="random", verbose=False)
    assert report == json.loads((out / "report.json").read_text())
    assert [row["method"] for row in report["rows"]] == ["minmax", "penalty"]
    # The samples are the first two test digits the classifier gets right, and each
    # row is its results on disk: the classifier fooled on the examples there (the
    # success flags stored say so too), the MI and L2 distance of those it fooled.
    x_test, y_test = mnist5k[2], mnist5k[3]
    indices = np.flatnonzero(_predict(classifier, x_test) == y_test)[:2]
    assert report["config"]["indices"] == indices.tolist()
    x, y = x_test[indices], y_test[indices]
    for row in report["rows"]:
        assert {"method", "asr", "mi", "mi_std", "l2"} <= set(row)
        result, _ = merge_chunks(out / row["method"], indices)
        fooled = _predict(classifier, result.x_adv) != y
        np.testing.assert_array_equal(result.success, fooled)
        assert row["asr"] == pytest.approx(fooled.mean(), rel=1e-12)
        if fooled.any():
            l2 = np.linalg.norm((result.x_adv - x)[fooled].reshape(fooled.sum(), -1), axis=1)
            assert row["mi"] == pytest.approx(result.mi[fooled].mean(), rel=1e-6)
            assert row["l2"] == pytest.approx(l2.mean(), rel=1e-6)
        else:
            assert row["mi"] is None and row["l2"] is None
    assert report["config"]["seed"] == 0 and "tensorflow" in report["config"]["versions"]
    assert "28.28" in (out / "report.md").read_text()  # the paper's numbers beside ours
    assert (out / "fig2_mi_vs_iteration.png").stat().st_size > 0
    # The same settings from the command line: every chunk is on disk, so it resumes
    # to the same rows and prints them as its JSON last line.
    argv = ["reproduce", "table3", "--model", str(model_file), "--n", "2", "--steps", "4",
            "--search-steps", "2", "--view", "random", "--quiet", "--out", str(out)]
    code, summary = _run(argv)
    assert code == 0 and summary["rows"] == report["rows"]
    # Other settings into the same directory are refused, naming what changed.
    with pytest.raises(ConfigMismatchError, match=r"attack.steps: 4 -> 6"):
        reproduce.run_table3(out, model=str(model_file), n=2, steps=6, search_steps=2,
                             view="random", verbose=False)


def test_reproduce_table3_refuses_t_not_a_multiple_of_b(tmp_path, capsys):
    argv = ["reproduce", "table3", "--n", "1", "--steps", "5", "--search-steps", "2",
            "--out", str(tmp_path)]
    assert main(argv) == 1
    assert "multiple" in capsys.readouterr().err


def test_reproduce_figure3_draws_the_grid_and_python_resumes_it(tmp_path, classifier):
    from uae_tf.reproduce import run_figure3

    model_file = tmp_path / "classifier.keras"
    classifier.save(model_file)
    out = tmp_path / "figure3"
    code, summary = _run(["reproduce", "figure3", "--model", str(model_file), "--n", "2",
                          "--steps", "3", "--view", "random", "--epsilons", "0.1,1.0",
                          "--quiet", "--out", str(out)])
    assert code == 0 and summary["figure"] == str(out / "figure3.png")
    report = json.loads((out / "report.json").read_text())
    assert [(r["method"], r["epsilon"]) for r in report["rows"]] == [
        (m, e) for m in ("minmax", "pgd") for e in (0.1, 1.0)
    ]
    assert report["config"]["epsilons"] == [0.1, 1.0]
    assert all(r["linf"] <= r["epsilon"] + 1e-6 for r in report["rows"])
    assert (out / "figure3.png").stat().st_size > 0
    assert "| 1.0 |" in (out / "report.md").read_text()
    # The same settings from Python: every chunk is on disk, the same rows.
    again = run_figure3(out, model=str(model_file), n=2, steps=3, view="random",
                        epsilons=(0.1, 1.0), verbose=False)
    assert again["rows"] == report["rows"]


def test_reproduce_robustness_refuses_other_settings_in_the_same_directory(
        tmp_path, capsys, mnist5k, assert_asr_grows_with_epsilon):
    out = tmp_path / "robustness"
    argv = ["reproduce", "robustness", "--limit", "8", "--n", "2", "--epsilons", "0.3,0.1",
            "--classifier-epochs", "1", "--steps", "1", "--mine-steps", "1", "--quiet",
            "--out", str(out)]
    code, summary = _run([*argv, "--autoencoder-epochs", "1"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert summary["rows"] == report["rows"]
    assert {(r["model"], r["epsilon"]) for r in report["rows"]} == {
        (m, e) for m in ("std", "std_uae") for e in (0.1, 0.3)
    }
    assert report["config"]["epsilons"] == [0.1, 0.3]
    assert report["config"]["classifier_epochs"] == {"std": 2, "std_uae": 1}
    # PGD's ASR grows with its budget; a row is what PGD as appendix I gives it (100
    # steps of 0.01, margin loss, no random start), run here on the saved model.
    assert_asr_grows_with_epsilon(report["rows"])
    std_uae, _ = load_model_dir(out / "std_uae")
    indices = np.asarray(report["config"]["indices"])
    x, y = mnist5k[2][indices], mnist5k[3][indices]
    direct = PGDAttack(std_uae, epsilon=0.1, steps=100, step_size=0.01, loss="margin",
                       random_start=False, seed=0)(x, labels=y, indices=indices)
    row = next(r for r in report["rows"] if (r["model"], r["epsilon"]) == ("std_uae", 0.1))
    assert row["asr"] == direct.attack_success_rate
    on_disk, _ = merge_chunks(out / "pgd" / "std_uae" / "eps_0.1", indices)
    np.testing.assert_allclose(on_disk.x_adv, direct.x_adv, atol=1e-6)
    assert (out / "robustness.png").stat().st_size > 0 and (out / "report.md").is_file()
    record = json.loads((out / "autoencoder" / "train.json").read_text())
    assert record["config"]["epochs"] == 1
    capsys.readouterr()
    # A new user's second run with another --autoencoder-epochs: refused, not a silent reuse of
    # the 1-epoch autoencoder.
    assert main([*argv, "--autoencoder-epochs", "3"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uae: error: "), captured.err
    assert "epochs: 1 -> 3" in lines[0] and "autoencoder" in lines[0]
    assert json.loads((out / "autoencoder" / "train.json").read_text()) == record
