"""The concrete autoencoder: its layer, save/load, convergence rule, trainer and evaluation."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import autoencoders
from autoencoders import concrete
from uae_tf import cli, datasets, evaluation, models, train_concrete, training


def test_temperature_anneals_exponentially_from_10_to_0_1_over_training_steps():
    layer = concrete.ConcreteSelect(3, annealing_steps=100, seed=0)
    layer.build((None, 8))
    for step, expected in ((0, 10.0), (50, 1.0), (100, 0.1), (250, 0.1)):
        assert float(layer.temperature(step)) == pytest.approx(expected, rel=1e-5)
    x = np.random.default_rng(0).uniform(size=(4, 8)).astype("float32")
    for _ in range(3):
        layer(x, training=True)
    assert float(layer.step.numpy()) == 3.0
    layer(x, training=False)
    layer(x)
    assert float(layer.step.numpy()) == 3.0  # Inference calls leave the schedule alone.


def test_inference_selects_the_argmax_columns_and_training_mixes_them():
    layer = concrete.ConcreteSelect(2, annealing_steps=10, seed=0)
    layer.build((None, 5))
    logits = np.full((2, 5), -5.0, dtype="float32")
    logits[0, 3] = logits[1, 1] = 5.0
    layer.logits.assign(logits)
    x = np.arange(15, dtype="float32").reshape(3, 5)
    np.testing.assert_array_equal(layer(x).numpy(), x[:, [3, 1]])
    np.testing.assert_array_equal(layer.selected_features(), [3, 1])
    np.testing.assert_array_equal(layer.transform(x), x[:, [3, 1]])  # Columns, not rows.
    relaxed = layer(x, training=True).numpy()  # Temperature ~10: a soft mixture.
    assert not np.allclose(relaxed, x[:, [3, 1]])
    probabilities = layer.probabilities()
    assert probabilities.shape == (2, 5)
    assert layer.mean_max_probability() == pytest.approx(probabilities.max(axis=1).mean())


def test_layer_rejects_bad_settings():
    with pytest.raises(ValueError, match="num_features"):
        concrete.ConcreteSelect(0, annealing_steps=10)
    with pytest.raises(ValueError, match="annealing_steps"):
        concrete.ConcreteSelect(2, annealing_steps=None)
    with pytest.raises(ValueError, match="at most the 4 input features"):
        concrete.ConcreteSelect(5, annealing_steps=10)(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="annealing_steps is required"):
        autoencoders.build_concrete((10,))


def test_published_architecture():
    model = autoencoders.build_concrete((28, 28, 1), num_features=50, annealing_steps=10, seed=0)
    layers = [type(layer).__name__ for layer in model.layers[1:]]
    assert layers == ["Flatten", "ConcreteSelect", "Dense", "LeakyReLU", "Dropout", "Dense",
                      "LeakyReLU", "Dropout", "Dense", "Reshape"]
    assert [model.get_layer(f"hidden_{i}").units for i in (1, 2)] == [320, 320]
    assert model.get_layer("leaky_relu_1").negative_slope == pytest.approx(0.2)
    assert model.get_layer("dropout_1").rate == pytest.approx(0.1)
    assert model.get_layer("concrete_select").logits.shape == (50, 784)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.output_shape == (None, 28, 28, 1)
    assert concrete.default_batch_size(60000) == 234 and concrete.default_batch_size(864) == 16
    assert concrete.default_num_features("mice_protein") == 10
    assert concrete.default_num_features("isolet") == 50


def test_keras_file_round_trip_keeps_selection_and_schedule(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 12)).astype("float32")
    model = autoencoders.build_concrete((12,), num_features=3, annealing_steps=40, seed=1)
    model.fit(x, x, batch_size=16, epochs=2, verbose=0)
    layer = autoencoders.concrete_select(model)
    assert float(layer.step.numpy()) == 8.0
    model.save(tmp_path / "concrete.keras")
    reloaded = keras.models.load_model(tmp_path / "concrete.keras")
    again = autoencoders.concrete_select(reloaded)
    np.testing.assert_array_equal(again.selected_features(), layer.selected_features())
    assert float(again.step.numpy()) == 8.0
    assert float(again.temperature()) == pytest.approx(float(layer.temperature()))
    assert again.annealing_steps == 40
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    # Inference goes through the selected columns only.
    traced = tf.function(lambda batch: reloaded(batch, training=False))
    np.testing.assert_allclose(traced(x[:4]).numpy(), model.predict(x[:4], verbose=0),
                               rtol=1e-5, atol=1e-6)


class _Stub:
    """A model whose selection probabilities are set by the test."""

    def __init__(self, mean_max):
        self.layers = [concrete.ConcreteSelect(2, annealing_steps=1)]
        self.layers[0].build((None, 4))
        self.mean_max = mean_max

    def fit(self, epochs):
        # Logits whose softmax has max probability `mean_max` in each row.
        p = self.mean_max
        logits = np.log(np.array([[p] + [(1 - p) / 3] * 3] * 2, "float32"))
        self.layers[0].logits.assign(logits)
        return f"history of {epochs} epochs"


def test_convergence_rule_doubles_epochs_until_the_mean_max_probability_reaches_0_998():
    means = iter([0.5, 0.9, 0.999])
    built = []

    def build(annealing_steps):
        built.append(annealing_steps)
        return _Stub(next(means))

    model, history, tries = concrete.fit_until_converged(
        build, lambda model, epochs: model.fit(epochs), epochs=10, steps_per_epoch=3)
    assert built == [30, 60, 120]  # The schedule spans each whole run.
    assert [t["epochs"] for t in tries] == [10, 20, 40]
    assert [t["converged"] for t in tries] == [False, False, True]
    assert history == "history of 40 epochs"
    assert tries[-1]["mean_max_probability"] == pytest.approx(0.999, abs=1e-6)

    never = iter([0.5] * 5)
    _, _, tries = concrete.fit_until_converged(
        lambda steps: _Stub(next(never)), lambda model, epochs: model.fit(epochs), epochs=1,
        steps_per_epoch=1, max_tries=2)
    assert [t["epochs"] for t in tries] == [1, 2]  # Bounded: the last run is kept.


def test_extra_trees_accuracy_on_known_data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    noise = rng.uniform(size=(120, 6))
    x = noise.copy()
    x[:, 4] = (y + rng.uniform(0, 0.5, 120)) / 3  # Column 4 alone tells the classes.
    train, test = slice(0, 120, 2), slice(1, 120, 2)
    informative = evaluation.feature_selection_accuracy(x[train], y[train], x[test], y[test], [4])
    uninformative = evaluation.feature_selection_accuracy(x[train], y[train], x[test], y[test],
                                                          [0, 1])
    assert informative == 1.0
    assert uninformative < 0.7
    with pytest.raises(ValueError, match="column indices"):
        evaluation.feature_selection_accuracy(x, y, x, y, [6])


def test_train_concrete_records_the_rule_and_features_and_generate_attacks_it(tmp_path):
    assert models.get("concrete").kind == "autoencoder"
    out = tmp_path / "concrete"
    code = cli.main(["train", "--arch", "concrete", "--dataset", "digits", "--features", "5",
                     "--epochs", "1", "--limit", "48", "--quiet", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "train.json").read_text())
    assert record["config"]["features"] == 5 and record["config"]["batch_size"] == 16
    assert len(record["tries"]) == 5 and record["epochs_trained"] == 16  # 1, 2, ... 16.
    assert record["steps"] == 16 * 3
    assert len(record["selected_features"]) == 5
    assert all(0 <= i < 64 for i in record["selected_features"])
    assert 0.0 <= record["test_accuracy"] <= 1.0
    phi, _ = training.load_model_dir(out)
    np.testing.assert_array_equal(autoencoders.selected_features(phi), record["selected_features"])

    assert cli.main(["generate", "--model", str(out), "--dataset", "digits", "--limit", "2",
                     "--preset", "fast", "--quiet", "--out", str(tmp_path / "uae")]) == 0
    summary = json.loads((tmp_path / "uae" / "summary.json").read_text())
    assert summary["n"] == 2 and summary["config"]["preset"] == "fast"
    assert cli.main(["generate", "--model", str(out), "--dataset", "digits", "--limit", "2",
                     "--view", "conv", "--quiet", "--out", str(tmp_path / "conv")]) == 1


def test_train_concrete_records_what_its_saved_model_gives(tmp_path):
    x_train, y_train = datasets.load("digits", "train")
    x_test, y_test = datasets.load("digits", "test")
    settings = dict(epochs=2, features=4, max_tries=1, limit=64, seed=1, verbose=0)
    model, record = train_concrete("digits", out=tmp_path, **settings)
    assert record["config"] == {
        "arch": "concrete", "dataset": "digits", "epochs": 2, "batch_size": 16, "seed": 1,
        "data_dir": None, "limit": 64, "augmentation": None, "features": 4, "max_tries": 1}
    # max(64 // 256, 16) = 16 rows a batch: 4 steps an epoch, one run of the rule.
    assert record["n_train"] == 64 and record["steps"] == 8 and len(record["tries"]) == 1
    loaded, stored = training.load_model_dir(tmp_path)
    assert stored == record
    selected = autoencoders.selected_features(loaded)
    np.testing.assert_array_equal(autoencoders.selected_features(model), selected)
    assert record["selected_features"] == selected.tolist()
    assert record["mean_max_probability"] == pytest.approx(
        autoencoders.concrete_select(loaded).mean_max_probability(), rel=1e-6)
    for split, x in (("train", x_train[:64]), ("test", x_test)):
        assert record[f"{split}_reconstruction_error"] == pytest.approx(
            evaluation.reconstruction_error(loaded, x), rel=1e-6)
    assert record["test_accuracy"] == evaluation.feature_selection_accuracy(
        x_train[:64], y_train[:64], x_test, y_test, selected, seed=1)
    # The seed fixes the run: the same arguments train the same model.
    _, again = train_concrete("digits", **settings)
    assert again["history"] == record["history"]
    assert again["selected_features"] == record["selected_features"]


def test_features_is_for_the_concrete_autoencoder_only(tmp_path, capsys):
    code = cli.main(["train", "--arch", "dense", "--dataset", "digits", "--features", "5",
                     "--out", str(tmp_path)])
    assert code == 2
    assert "--features applies to --arch concrete only" in capsys.readouterr().err


def test_whole_epochs_per_train_call_give_the_same_model(tmp_path, monkeypatch):
    # train_concrete runs an epoch's steps per call of the train function: the same
    # updates, in the same order, as one step per call, with and without UAEs.
    from uae_tf import generation

    x, _ = datasets.load("digits", "train")
    phi, _ = training.train_concrete("digits", epochs=2, features=4, limit=40, max_tries=1,
                                     verbose=0)
    uaes = generation.generate(phi, x[:40], tmp_path / "uae", method="gaussian", seed=0,
                               verbose=False)
    build = concrete.build_concrete
    weights = {}
    for per_call in ("epoch", 1):
        if per_call == 1:
            monkeypatch.setattr(concrete, "build_concrete", lambda *a, **k: build(
                *a, **{**k, "steps_per_execution": 1}))
        for augmentation in (None, uaes):
            model, _ = training.train_concrete("digits", epochs=3, features=4, limit=40,
                                               max_tries=1, verbose=0, augmentation=augmentation)
            weights[per_call, augmentation is None] = [w.numpy() for w in model.weights]
    for plain in (True, False):
        for a, b in zip(weights["epoch", plain], weights[1, plain]):
            np.testing.assert_array_equal(a, b)
