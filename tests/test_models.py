"""Tests of the model registry (uae_tf.models), the classifiers' new home, and of the
state that importing and training leave behind."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import autoencoders
import uae_tf
from uae_tf import models

DATA = Path(__file__).parent / "data"


def test_registry_holds_every_architecture_with_its_kind():
    kinds = {name: entry.kind for name, entry in models.ARCHITECTURES.items()}
    assert kinds == {
        **{name: "autoencoder" for name in autoencoders.ARCHITECTURES},
        "concrete": "autoencoder",
        "classifier": "classifier",
        "simclr": "contrastive",
    }
    assert all(entry.name == name for name, entry in models.ARCHITECTURES.items())
    assert set(kinds.values()) <= set(models.KINDS)


def test_registry_defaults_are_the_trainers_defaults():
    conv = models.get("conv")
    assert conv.default_epochs("mnist") == autoencoders.default_epochs("conv", "mnist")
    assert conv.default_epochs("svhn_cropped", augmented=True) == 15
    assert conv.default_batch_size == autoencoders.default_batch_size == 100
    classifier = models.get("classifier")
    assert classifier.default_epochs("cifar10") == classifier.default_epochs("mnist") == 50
    assert classifier.default_batch_size == 128
    assert classifier.train is uae_tf.train_classifier


def test_build_dispatches_to_each_builder():
    classifier = models.build("classifier", (28, 28, 1), seed=0, num_classes=3)
    assert classifier.name == "cw_mnist" and classifier.output_shape == (None, 3)
    conv = models.build("conv", (28, 28, 1), seed=0)
    reference = autoencoders.build("conv", (28, 28, 1), seed=0)
    for ours, theirs in zip(conv.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert isinstance(models.build("adversarial", (8, 8, 1), seed=0, hidden_units=4),
                      autoencoders.AdversarialAutoencoder)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="arch='vae'.*") as error:
        models.build("vae", (28, 28, 1))
    assert all(name in str(error.value) for name in models.ARCHITECTURES)
    with pytest.raises(ValueError, match="kind='gan'"):
        models.Architecture("gan", "gan", None, None, None, 1)


def test_classifier_saved_before_the_move_loads():
    # Saved by ``autoencoders.classifiers.build_classifier((16, 16, 1), num_classes=2,
    # seed=0)`` at commit 37d0592, when the classifiers lived in ``autoencoders/``.
    loaded, record = uae_tf.load_model_dir(DATA / "cw_classifier_before_models_move.keras")
    assert record is None
    rebuilt = models.build("classifier", (16, 16, 1), seed=0, num_classes=2)
    assert loaded.name == rebuilt.name == "cw_mnist"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in rebuilt.layers]
    for old, new in zip(loaded.get_weights(), rebuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    x = np.random.default_rng(0).random((4, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), rebuilt.predict(x, verbose=0))


def test_classifier_training_is_fixed_by_its_seed_alone(keeps_global_random_state):
    def train(seed):
        model, _ = uae_tf.train_classifier("mnist5k", epochs=2, limit=96, batch_size=32,
                                           seed=seed, verbose=0)
        return model.get_weights()

    first = keeps_global_random_state(lambda: train(0))
    keras.utils.set_random_seed(99)  # Another global state changes nothing.
    for a, b in zip(first, train(0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], train(1)[0])


def test_importing_uae_tf_leaves_the_environment_alone():
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import os, uae_tf; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "None"
