"""Tests of training (uae_tf.training) and the reconstruction metric (uae_tf.evaluation)."""

import json

import keras
import numpy as np
import pytest

import autoencoders
from uae_tf import datasets, evaluation, training
from uae_tf._batches import shuffled_batches


def _train_dense(seed, out=None):
    """One epoch of the dense autoencoder on the 1,437 train digits (8x8), silently."""
    return training.train_autoencoder("dense", "digits", epochs=1, seed=seed, out=out, verbose=0)


def _affine_model(shape, scale=0.5, offset=0.1):
    """A tiny reconstruction model ``x -> scale * x + offset`` whose error we know."""
    inputs = keras.Input(shape=shape)
    return keras.Model(inputs, keras.layers.Rescaling(scale, offset)(inputs))


def test_same_seed_same_history_other_seed_other_history():
    _, first = _train_dense(seed=0)
    _, again = _train_dense(seed=0)
    _, other = _train_dense(seed=1)
    assert first["history"] == again["history"]
    assert first["train_reconstruction_error"] == again["train_reconstruction_error"]
    assert first["history"]["loss"] != other["history"]["loss"]


@pytest.mark.parametrize("arch", autoencoders.ARCHITECTURES)
def test_seed_alone_fixes_the_weights_and_the_global_random_state_is_kept(
    arch, keeps_global_random_state
):
    def train():
        return training.train_autoencoder(arch, "digits", epochs=2, limit=150, seed=0, verbose=0)

    first, _ = keeps_global_random_state(train)
    keras.utils.set_random_seed(99)  # Another global state changes nothing.
    second, _ = train()
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_shuffled_batches_visit_each_sample_once_per_epoch_in_a_new_order():
    x = np.arange(10, dtype=np.float32)[:, None]
    dataset, steps = shuffled_batches(x, x[:, 0] * 2, batch_size=4, seed=3)
    assert steps == 3
    batches = list(dataset.take(3 * steps).as_numpy_iterator())
    assert [len(inputs) for inputs, _ in batches] == [4, 4, 2] * 3
    assert all(np.array_equal(inputs[:, 0] * 2, targets) for inputs, targets in batches)
    epochs = [np.concatenate([b[0][:, 0] for b in batches[e * steps:(e + 1) * steps]])
              for e in range(3)]
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert not np.array_equal(epochs[0], epochs[1])
    again, _ = shuffled_batches(x, batch_size=4, seed=3)
    first_epoch = np.concatenate([inputs[:, 0] for inputs, _ in again.take(steps)])
    np.testing.assert_array_equal(first_epoch, epochs[0])


def test_writes_model_and_record_and_loads_them(tmp_path):
    out = tmp_path / "runs" / "dense"
    phi, record = _train_dense(seed=0, out=out)

    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "train.json"]
    stored = json.loads((out / "train.json").read_text())
    assert stored == record
    assert len(record["history"]["loss"]) == 1
    assert record["config"] == {
        "arch": "dense", "dataset": "digits", "epochs": 1, "batch_size": 100, "seed": 0,
        "data_dir": None, "limit": None, "augmentation": None,
    }
    assert record["steps"] == 15 and record["n_train"] == 1437  # ceil(1437 / 100) steps
    assert {"tensorflow", "keras", "uae_tf"} <= set(record["versions"])
    assert record["seconds"] > 0

    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    for path in (out, out / "model.keras"):
        loaded, loaded_record = training.load_model_dir(path)
        assert loaded_record == record
        np.testing.assert_allclose(loaded.predict(x, verbose=0), phi.predict(x, verbose=0))
    # The recorded errors are the saved model's on the two splits.
    for split in ("train", "test"):
        x_split, _ = datasets.load("digits", split)
        assert record[f"{split}_reconstruction_error"] == pytest.approx(
            evaluation.reconstruction_error(loaded, x_split), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "vae"}, "arch=.vae."),
        ({"dataset": "imagenet"}, "dataset=.imagenet."),
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_train_rejects_bad_arguments(kwargs, match):
    arguments = {"arch": "dense", "dataset": "digits", "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        training.train_autoencoder(**arguments)


def test_load_model_dir_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'}.*model.keras"):
        training.load_model_dir(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"No model.keras in {tmp_path}"):
        training.load_model_dir(tmp_path)
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="weights.h5 is not a .keras file"):
        training.load_model_dir(tmp_path / "weights.h5")
    (tmp_path / "model.keras").write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(ValueError, match="model.keras is not a readable Keras model"):
        training.load_model_dir(tmp_path)


def test_reconstruction_error_is_mean_of_per_sample_mse():
    x = np.random.default_rng(0).random((5, 3, 2, 2), dtype=np.float32)
    model = _affine_model((3, 2, 2))
    expected_per_sample = ((x - (0.5 * x + 0.1)) ** 2).reshape(5, -1).mean(axis=1)

    # batch_size=2 leaves a partial last batch.
    per_sample = evaluation.per_sample_reconstruction_error(model, x, batch_size=2)
    np.testing.assert_allclose(per_sample, expected_per_sample, rtol=1e-6)
    error = evaluation.reconstruction_error(model, x, batch_size=2)
    assert isinstance(error, float)
    assert error == pytest.approx(expected_per_sample.mean(), rel=1e-6)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.full((2, 3, 2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 3, 2, 2), 255.0, np.float32), r"\[0, 1\]"),
        (np.zeros((2, 8, 8, 1), np.float32), r"\(3, 2, 2\).*\(2, 8, 8, 1\)"),
        (np.zeros((0, 3, 2, 2), np.float32), "non-empty"),
    ],
    ids=["nan", "out-of-range", "wrong-shape", "empty"],
)
def test_reconstruction_error_rejects_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        evaluation.reconstruction_error(_affine_model((3, 2, 2)), x)


def test_reconstruction_error_rejects_bad_batch_size():
    x = np.zeros((2, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluation.reconstruction_error(_affine_model((3, 2, 2)), x, batch_size=0)
