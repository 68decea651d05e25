"""Tests of the paper's four autoencoders (package ``autoencoders``), on real digits."""

import functools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import autoencoders

SHAPES = [(28, 28, 1), (32, 32, 3)]
EPOCHS = 4
BATCH_SIZE = 20
N_SAMPLES = 200


@functools.lru_cache(maxsize=None)
def digits(shape):
    """``N_SAMPLES`` scikit-learn digits in [0, 1], upscaled 3x and padded to ``shape``."""
    images = load_digits().images[:N_SAMPLES] / 16.0
    images = np.kron(images, np.ones((3, 3)))
    pad = (shape[0] - images.shape[1]) // 2
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    tint = np.linspace(1.0, 0.4, shape[2])
    return (images[..., None] * tint).astype("float32")


@functools.lru_cache(maxsize=None)
def trained(arch, shape):
    """Builds ``arch`` for ``shape`` with fixed seeds and fits it; cached per module run."""
    keras.utils.set_random_seed(0)
    x = digits(shape)
    model = autoencoders.build(arch, shape, seed=0)
    history = model.fit(x, x, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=False, verbose=0)
    return model, history.history, x


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", autoencoders.ARCHITECTURES)
def test_training_loss_falls(arch, shape):
    _, history, _ = trained(arch, shape)
    losses = history["loss"]
    assert len(losses) == EPOCHS
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.97 * losses[0], losses


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", autoencoders.ARCHITECTURES)
def test_reconstruction_shape_and_range(arch, shape):
    model, _, x = trained(arch, shape)
    phi = autoencoders.reconstruction_model(model)
    assert isinstance(phi, keras.Model)
    assert tuple(phi.input_shape[1:]) == shape
    reconstruction = phi.predict(x[:16], verbose=0)
    assert reconstruction.shape == x[:16].shape
    assert reconstruction.min() >= 0.0 and reconstruction.max() <= 1.0


@pytest.mark.parametrize("arch", autoencoders.ARCHITECTURES)
def test_reconstruction_model_runs_in_tf_function(arch):
    model, _, x = trained(arch, SHAPES[0])
    phi = autoencoders.reconstruction_model(model)
    traced = tf.function(lambda batch: phi(batch, training=False))
    np.testing.assert_allclose(traced(x[:8]).numpy(), phi.predict(x[:8], verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("arch", autoencoders.ARCHITECTURES)
def test_keras_file_round_trip(arch, shape, tmp_path):
    model, _, x = trained(arch, shape)
    phi = autoencoders.reconstruction_model(model)
    path = tmp_path / f"{arch}.keras"
    phi.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x[:16], verbose=0),
                               phi.predict(x[:16], verbose=0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", autoencoders.ARCHITECTURES)
def test_saved_model_export_round_trip(arch, tmp_path):
    model, _, x = trained(arch, SHAPES[1])
    phi = autoencoders.reconstruction_model(model)
    phi.export(str(tmp_path / "export"), verbose=False)
    # Keep the loaded object alive: its variables are freed with it.
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    served = loaded.serve(tf.constant(x[:16]))
    np.testing.assert_allclose(np.asarray(served), phi.predict(x[:16], verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_adversarial_reports_regularization_losses(shape):
    _, history, _ = trained("adversarial", shape)
    assert set(history) == {"loss", "discriminator_loss", "generator_loss"}
    for name in ("discriminator_loss", "generator_loss"):
        assert len(history[name]) == EPOCHS and np.all(np.isfinite(history[name]))
        assert history[name][0] > 0.0


def test_adversarial_takes_two_discriminator_steps_per_batch():
    """As the published trainer: the discriminator fits 2B samples at batch size B."""
    model = autoencoders.build("adversarial", (8, 8, 1), seed=0, hidden_units=16)
    x = np.random.default_rng(0).random((30, 8, 8, 1)).astype("float32")
    model.fit(x, x, batch_size=10, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 3
    assert int(model.discriminator_optimizer.iterations) == 6
    assert int(model.generator_optimizer.iterations) == 3


def test_adversarial_trainer_round_trips_and_evaluates(tmp_path):
    model, _, x = trained("adversarial", SHAPES[0])
    path = tmp_path / "aae.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, autoencoders.AdversarialAutoencoder)
    np.testing.assert_allclose(reloaded.autoencoder.predict(x[:8], verbose=0),
                               model.autoencoder.predict(x[:8], verbose=0), rtol=1e-6, atol=1e-6)
    for name in ("optimizer", "discriminator_optimizer", "generator_optimizer"):
        assert int(getattr(reloaded, name).iterations) == int(getattr(model, name).iterations) > 0
    assert set(reloaded.fit(x, x, epochs=1, batch_size=100, verbose=0).history) == {
        "loss", "discriminator_loss", "generator_loss"}
    mse = np.mean((model.autoencoder.predict(x, verbose=0) - x) ** 2)
    assert float(model.evaluate(x, x, batch_size=50, verbose=0)) == pytest.approx(mse, rel=1e-4)


def test_adversarial_prior_and_weights_are_seeded():
    first = autoencoders.build("adversarial", (8, 8, 1), seed=3, hidden_units=16)
    second = autoencoders.build("adversarial", (8, 8, 1), seed=3, hidden_units=16)
    np.testing.assert_array_equal(first.sample_prior(5), second.sample_prior(5))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_seed_fixes_initial_weights():
    first = autoencoders.build("conv", (28, 28, 1), seed=7)
    second = autoencoders.build("conv", (28, 28, 1), seed=7)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def _sparse_terms(model, x):
    """The published objective's terms on batch ``x``: MSE, the summed |code| + |output|
    and the mean KL(0.1 || mean code activation)."""
    inner = keras.Model(model.input, [model.get_layer("code").output, model.output])
    code, reconstruction = (np.asarray(t, dtype="float64") for t in inner(x))
    rho, rho_hat = 0.1, np.clip(code, 1e-10, 1.0).mean(axis=0)
    kl = rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))
    l1 = np.abs(code).sum() + np.abs(reconstruction).sum()
    return np.mean((reconstruction - x) ** 2), l1, kl.mean()


def test_sparse_loss_is_the_published_objective():
    """At batch size 100, Keras 3's loss equals sparseAE.py's Keras 2.2 objective."""
    x = digits(SHAPES[0])[:100]
    model = autoencoders.build("sparse", SHAPES[0], seed=0)
    mse, l1, kl = _sparse_terms(model, x)
    published = mse + 1e-7 * l1 + 3.0 * kl
    assert model.evaluate(x, x, batch_size=100, verbose=0) == pytest.approx(published, rel=1e-4)


def test_sparse_penalties_do_not_depend_on_keras_activity_scaling():
    """No activity regularizer (Keras < 3.14 does not divide them by the batch size:
    penalties x100); at batch 50 the loss is the per-sample L1 plus the batch's KL."""
    assert all(layer.activity_regularizer is None
               for layer in autoencoders.build("sparse", SHAPES[0], seed=0).layers)
    x = digits(SHAPES[0])[:50]
    model = autoencoders.build("sparse", SHAPES[0], seed=0)
    mse, l1, kl = _sparse_terms(model, x)
    expected = mse + 1e-5 * l1 / 50 + 3.0 * kl
    assert model.evaluate(x, x, batch_size=50, verbose=0) == pytest.approx(expected, rel=1e-4)


def test_sparsity_penalty_config_round_trips():
    layer = autoencoders.SparsityPenalty(l1=1e-6, target=0.05, weight=2.0, name="p")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, autoencoders.SparsityPenalty)
    assert (restored.l1, restored.target, restored.weight, restored.name) == (1e-6, 0.05, 2.0, "p")
    with pytest.raises(ValueError, match="target=1.5"):
        autoencoders.SparsityPenalty(target=1.5)


def test_dense_code_dim_rule():
    assert autoencoders.default_code_dim((28, 28, 1)) == 128
    assert autoencoders.default_code_dim((32, 32, 3)) == 256
    model = autoencoders.build("dense", (784,), code_dim=32)
    assert model.get_layer("code").units == 32
    assert model.output_shape == (None, 784)


def test_conv_first_layer_is_conv2d():
    model = autoencoders.build("conv", (32, 32, 3))
    first = next(layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))
    assert isinstance(first, keras.layers.Conv2D)


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match=r"'vae'.*dense, sparse, conv, adversarial"):
        autoencoders.build("vae", (28, 28, 1))
    with pytest.raises(ValueError, match="'vae'"):
        autoencoders.default_epochs("vae", "mnist")


@pytest.mark.parametrize("shape", [(30, 30, 1), (28, 26, 3), (28, 28)])
def test_conv_rejects_bad_input_shape(shape):
    with pytest.raises(ValueError, match=re.escape(f"input_shape={shape}")):
        autoencoders.build("conv", shape)


def test_bad_input_shape_is_named():
    with pytest.raises(ValueError, match=r"input_shape=\(28, -1\)"):
        autoencoders.build("dense", (28, -1))


def test_default_epochs_follow_table_8():
    expected = {
        "mnist": {"sparse": (50, 80), "dense": (20, 30), "conv": (20, 30),
                  "adversarial": (50, 80)},
        "svhn_cropped": {"sparse": (50, 80), "dense": (30, 50), "conv": (10, 15),
                         "adversarial": (200, 200)},
    }
    for dataset, row in expected.items():
        for arch, (original, augmented) in row.items():
            assert autoencoders.default_epochs(arch, dataset) == original
            assert autoencoders.default_epochs(arch, dataset, augmented=True) == augmented
    for dataset, row in (("fashion_mnist", "mnist"), ("mnist5k", "mnist"), ("digits", "mnist"),
                         ("cifar10", "svhn_cropped")):
        for arch in autoencoders.ARCHITECTURES:
            assert (autoencoders.default_epochs(arch, dataset)
                    == autoencoders.default_epochs(arch, row))
    with pytest.raises(ValueError, match="'imagenet'"):
        autoencoders.default_epochs("dense", "imagenet")
    assert autoencoders.default_batch_size == 100


def test_reconstruction_model_rejects_non_autoencoders():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="output_shape"):
        autoencoders.reconstruction_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    with pytest.raises(TypeError, match="str"):
        autoencoders.reconstruction_model("conv")
