"""Shared fixtures: real data (the embedded MNIST subset) and small trained models."""

import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import autoencoders  # noqa: E402
from uae_tf import datasets, evaluation, training  # noqa: E402
from uae_tf.generation import load_results  # noqa: E402


@pytest.fixture(scope="session")
def mnist5k():
    """The embedded 5,000-digit MNIST subset: ``(x_train, y_train, x_test, y_test)``."""
    x_train, y_train = datasets.load("mnist5k", "train")
    x_test, y_test = datasets.load("mnist5k", "test")
    return x_train, y_train, x_test, y_test


def _train(arch, x, epochs, seed=0):
    keras.utils.set_random_seed(seed)
    model = autoencoders.build(arch, x.shape[1:], seed=seed)
    model.fit(x, x, epochs=epochs, batch_size=100, verbose=0)
    return autoencoders.reconstruction_model(model)


@pytest.fixture(scope="session")
def conv_ae(mnist5k):
    """The paper's conv autoencoder, trained 3 epochs on the mnist5k training split."""
    return _train("conv", mnist5k[0], epochs=3)


@pytest.fixture(scope="session")
def conv_ae_dir(conv_ae, tmp_path_factory):
    """``conv_ae`` saved as a model directory (``DIR/model.keras``), as commands take it."""
    directory = tmp_path_factory.mktemp("conv_ae")
    conv_ae.save(directory / "model.keras")
    return directory


@pytest.fixture(scope="session")
def dense_ae(mnist5k):
    """The paper's dense autoencoder, trained 5 epochs on the mnist5k training split."""
    return _train("dense", mnist5k[0], epochs=5)


@pytest.fixture(scope="session")
def classifier(mnist5k):
    """A small conv classifier (logits) trained 3 epochs on mnist5k."""
    x, y = mnist5k[0], mnist5k[1]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _reseed_global_random_state():
    random.seed(12345)
    np.random.seed(12345)
    tf.random.set_seed(12345)


def _draw_from_global_random_state():
    return random.random(), float(np.random.random()), float(tf.random.uniform([]))


@pytest.fixture
def keeps_global_random_state():
    """Returns ``check(fn)``: runs ``fn()`` and returns its result, asserting that the
    global Python, NumPy and TensorFlow random streams go on as if it had not run."""

    def check(fn):
        _reseed_global_random_state()
        control = [_draw_from_global_random_state(), _draw_from_global_random_state()]
        _reseed_global_random_state()
        before = _draw_from_global_random_state()
        result = fn()
        assert [before, _draw_from_global_random_state()] == control, (
            "the global random state changed"
        )
        return result

    return check


@pytest.fixture(scope="session")
def assert_row_is_its_files():
    """Returns ``check(row, model_dir, dataset, results_dir=None)``: asserts that an
    experiment's report row says what its files say.

    ``row["test_error"]`` must be the paper's reconstruction error of the model saved
    in ``model_dir`` on ``dataset``'s test split, recomputed from the file (to float
    rounding, relative 1e-6: the saved model reloaded may round its last bits
    otherwise), and ``row["asr"]`` the success rate of the results in ``results_dir``
    (``None`` without results).
    """

    def check(row, model_dir, dataset, results_dir=None):
        phi, _ = training.load_model_dir(model_dir)
        x_test, _ = datasets.load(dataset, "test")
        error = evaluation.reconstruction_error(phi, x_test)
        assert row["test_error"] == pytest.approx(error, rel=1e-6), (row["method"], error)
        if results_dir is None:
            assert row["asr"] is None, row["method"]
        else:
            success = load_results(results_dir).success
            assert row["asr"] == pytest.approx(success.mean(), rel=1e-12), row["method"]

    return check


@pytest.fixture(scope="session")
def assert_asr_grows_with_epsilon():
    """Returns ``check(rows)``: asserts that each model's attack success rate in report
    ``rows`` (dicts with ``model``, ``epsilon``, ``asr``) is non-decreasing in epsilon."""

    def check(rows):
        for model in {row["model"] for row in rows}:
            curve = sorted((row["epsilon"], row["asr"]) for row in rows if row["model"] == model)
            assert all(a <= b for (_, a), (_, b) in zip(curve, curve[1:])), (model, curve)

    return check
