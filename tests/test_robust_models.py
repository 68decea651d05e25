"""Robust MNIST models (Figs. 6-8): PGD on TRADES's KL, TRADES training, the loaders of the
released Madry and TRADES checkpoints, and ``uae reproduce robust-models`` on tiny settings."""

import json
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from uae_tf import cli
from uae_tf.attacks import PGDAttack
from uae_tf.models import TRADESTraining, load_released_classifier, train_classifier
from uae_tf.models.classifiers import _compile_arguments
from uae_tf.reproduce import run_robust_models


def _kl(model, x, x_adv):
    """KL(model(x) || model(x_adv)) per sample, in NumPy."""
    p = tf.nn.log_softmax(model(x)).numpy()
    q = tf.nn.log_softmax(model(x_adv)).numpy()
    return (np.exp(p) * (p - q)).sum(-1)


def test_pgd_on_the_kl_moves_the_prediction_away_from_the_clean_one(mnist5k, classifier):
    x, y = mnist5k[2][:16], mnist5k[3][:16]
    attack = PGDAttack(classifier, epsilon=0.1, steps=10, step_size=0.02, loss="kl")
    start = x + 0.001 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    x_adv = attack.perturb(tf.constant(x), tf.constant(y), start=tf.constant(start)).numpy()
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    kl = _kl(classifier, x, x_adv)
    # The start is 0.001 from x (its KL about 0); ten steps of 0.02 raise it for every digit.
    assert (kl > 100 * _kl(classifier, x, start)).all() and kl.mean() > 0.01, kl
    with pytest.raises(ValueError, match="targeted"):
        PGDAttack(classifier, loss="kl", targeted=True)


def test_trades_training_is_plain_training_while_clean_then_trains_on_the_kl(mnist5k, classifier):
    # The ``classifier`` fixture has no dropout, so TRADES's two forward passes per
    # step draw nothing and its clean steps are exactly cross-entropy steps.
    x, y = mnist5k[0][:64], mnist5k[1][:64]
    plain, trades = keras.models.clone_model(classifier), keras.models.clone_model(classifier)
    plain.set_weights(classifier.get_weights())
    trades.set_weights(classifier.get_weights())
    plain.compile(**_compile_arguments())
    plain.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    attack = PGDAttack(trades, epsilon=0.3, steps=2, loss="kl")
    trainer = TRADESTraining(trades, attack, beta=6.0, clean_steps=2)
    trainer.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), trades.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, np.abs(a).max()))
    # Then adversarial steps (CE + beta * KL).
    history = trainer.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    assert sorted(history) == ["accuracy", "loss"] and np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match="beta"):
        TRADESTraining(trades, attack, beta=0)
    # train_classifier(trades_beta=...) is exercised by the robust-models test below.
    with pytest.raises(ValueError, match="adversary=None"):
        train_classifier("mnist5k", trades_beta=1.0)


# The released checkpoints. Random weights stand in for the real ones, laid out as each
# project saved them; the references below are the published networks' forward passes.


def _madry_checkpoint(directory, rng):
    """A TensorFlow 1 checkpoint of mnist_challenge's model.py variables (random values)."""
    shapes = [(5, 5, 1, 32), (32,), (5, 5, 32, 64), (64,), (3136, 1024), (1024,), (1024, 10),
              (10,)]
    values = [rng.normal(0, 0.05, shape).astype(np.float32) for shape in shapes]
    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(value) for value in values]  # Variable, Variable_1...
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(directory / "checkpoint"), global_step=99900)
    return values


def _madry_reference(values, x):
    """mnist_challenge's model.py forward pass, with tf.nn ops."""
    w1, b1, w2, b2, w3, b3, w4, b4 = values
    pool = lambda h: tf.nn.max_pool2d(h, 2, 2, "SAME")  # noqa: E731
    h = pool(tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1))
    h = pool(tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME") + b2))
    h = tf.nn.relu(tf.reshape(h, [-1, 7 * 7 * 64]) @ w3 + b3)
    return (h @ w4 + b4).numpy()


def test_load_the_released_madry_model_from_its_checkpoint(tmp_path, mnist5k):
    values = _madry_checkpoint(tmp_path, np.random.default_rng(0))
    model = load_released_classifier("madry", tmp_path)
    x = mnist5k[2][:8]
    expected = _madry_reference(values, x)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected,
                               atol=1e-4 * np.abs(expected).max())
    with pytest.raises(FileNotFoundError, match="fetch_model.py"):
        load_released_classifier("madry", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint"):
        load_released_classifier("madry", tmp_path / "empty")
    with pytest.raises(ValueError, match="name must be one of"):
        load_released_classifier("wong", tmp_path)


def _trades_state_dict(rng):
    """TRADES's SmallCNN state dict (random values) in PyTorch's layouts."""
    shapes = {"feature_extractor.conv1": (32, 1, 3, 3), "feature_extractor.conv2": (32, 32, 3, 3),
              "feature_extractor.conv3": (64, 32, 3, 3), "feature_extractor.conv4": (64, 64, 3, 3),
              "classifier.fc1": (200, 1024), "classifier.fc2": (200, 200),
              "classifier.fc3": (10, 200)}
    state = {}
    for name, shape in shapes.items():
        state[f"{name}.weight"] = rng.normal(0, 0.1, shape).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.1, shape[:1]).astype(np.float32)
    return state


def _trades_reference(state, x):
    """SmallCNN's forward pass as PyTorch computes it: channels first, NCHW flatten."""
    def conv(h, name):  # valid 3x3 cross-correlation, h [N, C, H, W]
        w, b = state[f"feature_extractor.{name}.weight"], state[f"feature_extractor.{name}.bias"]
        size = h.shape[2] - 2
        patches = np.stack([h[:, :, i:i + size, j:j + size] for i in range(3) for j in range(3)],
                           axis=2)  # [N, C, 9, H', W']
        return np.maximum(np.einsum("nckhw,ock->nohw", patches, w.reshape(*w.shape[:2], 9))
                          + b[:, None, None], 0)

    def pool(h):
        n, c, height, width = h.shape
        return h.reshape(n, c, height // 2, 2, width // 2, 2).max(axis=(3, 5))

    def dense(h, name):
        return h @ state[f"classifier.{name}.weight"].T + state[f"classifier.{name}.bias"]

    h = x.transpose(0, 3, 1, 2)
    h = pool(conv(conv(h, "conv1"), "conv2"))
    h = pool(conv(conv(h, "conv3"), "conv4")).reshape(len(x), -1)
    return dense(np.maximum(dense(np.maximum(dense(h, "fc1"), 0), "fc2"), 0), "fc3")


def test_load_the_released_trades_model_from_its_state_dict(tmp_path, mnist5k, monkeypatch):
    state = _trades_state_dict(np.random.default_rng(1))
    np.savez(tmp_path / "model_mnist_smallcnn.npz", **state)
    model = load_released_classifier("trades", tmp_path / "model_mnist_smallcnn.npz")
    x = mnist5k[2][:8]
    expected = _trades_reference(state, x)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected,
                               atol=1e-4 * np.abs(expected).max())
    # A .pt file without PyTorch: the error says how to read it anyway.
    (tmp_path / "model_mnist_smallcnn.pt").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch.*numpy.savez"):
        load_released_classifier("trades", tmp_path / "model_mnist_smallcnn.pt")
    np.savez(tmp_path / "wrong.npz", **{**state, "classifier.fc1.weight": np.zeros((200, 10))})
    with pytest.raises(ValueError, match="classifier.fc1.weight.*expected \\(200, 1024\\)"):
        load_released_classifier("trades", tmp_path / "wrong.npz")
    with pytest.raises(FileNotFoundError, match="yaodongyu/TRADES"):
        load_released_classifier("trades", tmp_path / "absent.pt")


def test_robust_models_report_figures_resume_and_refusal(tmp_path, capsys):
    # The released Madry model (a stand-in checkpoint) and a TRADES model trained here.
    (tmp_path / "madry-ckpt").mkdir()
    _madry_checkpoint(tmp_path / "madry-ckpt", np.random.default_rng(2))
    settings = dict(checkpoints={"madry": str(tmp_path / "madry-ckpt")}, limit=32,
                    classifier_epochs=1, train_steps=1, clean_epochs=0, ramp_epochs=0, n=1,
                    steps=2, view="random", epsilons=(0.5,), verbose=False)
    out = tmp_path / "robust"
    report = run_robust_models(out, **settings)
    assert [(r["model"], r["method"], r["epsilon"]) for r in report["rows"]] == [
        ("madry", "minmax", 0.5), ("madry", "pgd", 0.5), ("trades", "minmax", 0.5),
        ("trades", "pgd", 0.5)]
    assert all(0 <= r["asr"] <= 1 and r["linf"] <= 0.5 + 1e-6 for r in report["rows"])
    assert report["models"]["madry"]["source"].startswith("the released Madry")
    assert report["models"]["trades"]["source"].startswith("trained here, not the released")
    record = json.loads((out / "trades" / "classifier" / "train.json").read_text())
    assert record["config"]["trades_beta"] == 1.0 and record["config"]["adversary"]["loss"] == "kl"
    markdown = (out / "report.md").read_text()
    assert markdown.count("**Model used:**") == 2 and "fig7_madry.png" in markdown
    for figure in ("fig7_madry.png", "fig8_trades.png", "madry/figure3.png", "trades/figure3.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert run_robust_models(out, **settings)["rows"] == report["rows"]
    argv = ["reproduce", "robust-models", "--madry-checkpoint", str(tmp_path / "madry-ckpt"),
            "--limit", "32", "--classifier-epochs", "1", "--train-steps", "2",
            "--clean-epochs", "0", "--ramp-epochs", "0", "--n", "1", "--steps", "2", "--view",
            "random", "--epsilons", "0.5", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 1
    assert "adversaries.trades.steps: 1 -> 2" in capsys.readouterr().err
