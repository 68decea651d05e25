"""SimCLR: NT-Xent, augmentations, the model, the linear probe and the contrastive criterion."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from uae_tf import MinMaxAttack, PGDAttack, UAESequence, _seeds, cli, models
from uae_tf.contrastive import (
    JITTER_STEPS,
    SimCLRAugmentation,
    apply_parameters,
    draw_crop_and_flip,
    draw_parameters,
    nt_xent,
)
from uae_tf.criteria import ContrastiveCriterion
from uae_tf.generation import load_results
from uae_tf.models import LARS, SimCLR, build_simclr, linear_probe
from uae_tf.models.simclr_training import contrastive_loss
from uae_tf.reproduce import run_table7
from uae_tf.runs import ConfigMismatchError, merge_chunks

ATTACK = dict(steps=3, similarity={"name": "mine", "mine_steps": 1}, initial_perturbation="glorot",
              const_decay_power=0.5, seed=3)


def _numpy_nt_xent(z1, z2, temperature):
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / temperature
    n = len(z1)
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [sim[i, k] for k in range(2 * n) if k != i]
        losses.append(np.log(np.sum(np.exp(others))) - sim[i, positive])
    # The published code sums the two directions' means: twice the mean over 2N.
    return 2 * np.mean(losses)


def test_nt_xent_matches_numpy():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    got = nt_xent(tf.constant(z1, tf.float32), tf.constant(z2, tf.float32), 0.5)
    assert np.isclose(float(got), _numpy_nt_xent(z1, z2, 0.5), rtol=1e-5)
    batched = nt_xent(tf.constant(np.stack([z1, z2]), tf.float32),
                      tf.constant(np.stack([z2, z1]), tf.float32), 0.5)
    assert batched.shape == (2,) and np.allclose(batched, [got, got], rtol=1e-5)


def test_identity_augmentation_and_colour_draws():
    images = tf.random.stateless_uniform([3, 8, 8, 3], [0, 0])
    params = draw_parameters(tf.constant([1, 2]), 3, (8, 8, 3))
    identity = {k: tf.zeros_like(v) for k, v in params.items()}
    identity["box"] = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [3, 1])
    assert np.allclose(apply_parameters(images, identity), images, atol=1e-6)
    flipped = dict(identity, flip=tf.ones([3]))
    assert np.allclose(apply_parameters(images, flipped), images[:, :, ::-1], atol=1e-6)
    views = apply_parameters(images, params)
    assert views.shape == images.shape and 0 <= float(tf.reduce_min(views))
    assert float(tf.reduce_max(views)) <= 1
    gray = draw_parameters(tf.constant([1, 2]), 4, (8, 8, 1))
    assert float(tf.reduce_sum(gray["flip"])) == 0 and float(tf.math.reduce_std(gray["noise"])) > 0
    with pytest.raises(ValueError, match="color_jitter_strength"):
        SimCLRAugmentation(color_jitter_strength=2)


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _numpy_jitter(image, brightness, contrast, saturation, hue, order):
    """SimCLR's colour jitter of one [H, W, 3] image: the steps in ``order``, clipped after each."""
    def hue_step(v):
        angle = 2 * np.pi * hue
        rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                             [0, np.sin(angle), np.cos(angle)]])
        yiq = v @ _RGB_TO_YIQ.T @ rotation.T
        return yiq @ np.linalg.inv(_RGB_TO_YIQ).T

    def luma(v):
        return (v @ _RGB_TO_YIQ[0])[..., None]

    steps = {"brightness": lambda v: v * brightness,
             "contrast": lambda v: (v - v.mean((0, 1))) * contrast + v.mean((0, 1)),
             "saturation": lambda v: luma(v) + (v - luma(v)) * saturation,
             "hue": hue_step}
    for k in order:
        image = np.clip(steps[JITTER_STEPS[k]](image), 0, 1)
    return image


def test_colour_jitter_runs_its_steps_in_each_views_drawn_order():
    images = tf.random.stateless_uniform([4, 6, 6, 3], [0, 1])
    params = draw_parameters(tf.constant([3, 4]), 4, (6, 6, 3))
    orders = params["order"].numpy().astype(int)
    assert all(sorted(order) == [0, 1, 2, 3] for order in orders)
    # Strong factors, so that clipping between the steps and their order both matter.
    params = {**params, "box": tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [4, 1]),
              "flip": tf.zeros([4]), "jitter": tf.ones([4]), "gray": tf.zeros([4]),
              "brightness": tf.constant([1.6, 0.5, 1.4, 0.7]),
              "contrast": tf.constant([1.5, 0.6, 1.3, 1.6]),
              "saturation": tf.constant([0.4, 1.6, 1.5, 0.3]),
              "hue": tf.constant([0.1, -0.08, 0.05, -0.1]),
              "order": tf.constant([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]],
                                   tf.float32)}
    views = apply_parameters(images, params).numpy()
    for v in range(4):
        expected = _numpy_jitter(images[v].numpy(), *(float(params[k][v]) for k in JITTER_STEPS),
                                 params["order"][v].numpy().astype(int))
        np.testing.assert_allclose(views[v], expected, atol=1e-5)
    reordered = apply_parameters(images, {**params, "order": params["order"][::-1]}).numpy()
    assert np.abs(reordered - views).max() > 0.05


def test_crop_and_flip_is_the_augmentations_crop_and_flip_without_colour():
    seed = tf.constant([5, 6])
    full = draw_parameters(seed, 8, (8, 8, 3))
    crops = draw_crop_and_flip(seed, 8, (8, 8, 3))
    np.testing.assert_array_equal(crops["box"], full["box"])
    np.testing.assert_array_equal(crops["flip"], full["flip"])
    assert 0 < float(tf.reduce_sum(crops["flip"])) < 8
    for key in ("jitter", "gray", "noise"):
        assert float(tf.reduce_max(tf.abs(crops[key]))) == 0
    digits = draw_crop_and_flip(seed, 8, (28, 28, 1))
    assert float(tf.reduce_sum(digits["flip"])) == 0  # a flipped digit is another symbol


@pytest.fixture(scope="module")
def simclr(mnist5k):
    """A small SimCLR trained 2 epochs on 512 digits."""
    model = build_simclr(mnist5k[0].shape[1:], seed=0)
    model.fit(mnist5k[0][:512], epochs=2, batch_size=128, verbose=0)
    return model


def test_fit_on_uae_sequence_and_save_load_export(simclr, mnist5k, tmp_path):
    x = mnist5k[0][:64]
    model = build_simclr(x.shape[1:], seed=1)
    sequence = UAESequence(x, np.clip(x + 0.05, 0, 1), batch_size=32, seed=0)
    history = model.fit(sequence, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()

    simclr.save(tmp_path / "simclr.keras")
    loaded = keras.saving.load_model(tmp_path / "simclr.keras", compile=False)
    assert isinstance(loaded, SimCLR) and loaded.get_config() == simclr.get_config()
    assert np.allclose(loaded.predict(x[:8], verbose=0), simclr.predict(x[:8], verbose=0),
                       atol=1e-5)
    simclr.export(tmp_path / "encoder")
    reloaded = tf.saved_model.load(str(tmp_path / "encoder"))
    assert np.allclose(reloaded.serve(x[:8]), simclr.encoder(x[:8], training=False), atol=1e-5)


def test_lars_steps_and_round_trips():
    variable = keras.Variable(np.ones((3, 3), np.float32))
    optimizer = LARS(learning_rate=0.5, weight_decay=0.0)
    optimizer.apply_gradients([(tf.ones((3, 3)), variable)])
    # Trust ratio eeta * ||w|| / ||g|| = 1e-3 here, so the step is 0.5 * 1e-3.
    assert np.allclose(variable.numpy(), 1 - 0.5e-3)
    assert LARS.from_config(optimizer.get_config()).get_config()["eeta"] == 1e-3


def test_frozen_linear_probe_above_chance(simclr, mnist5k):
    x_train, y_train, x_test, y_test = mnist5k
    result, head = linear_probe(simclr.encoder, x_train[:1000], y_train[:1000], x_test[:500],
                                y_test[:500], protocol="frozen", epochs=30)
    assert result["test_accuracy"] > 0.3, result
    assert result["protocol"] == "frozen" and result["steps"] == 30 * 4
    assert head.output_shape == (None, 10)


def test_published_linear_probe_fine_tunes_a_head_on_crops(mnist5k):
    # An encoder whose features are the pixels (pooled 2x2): a linear classifier on
    # them is a real classifier of digits, so the probe must learn one.
    x_train, y_train, x_test, y_test = mnist5k
    encoder = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.AveragePooling2D(2),
                                keras.layers.Flatten()])
    data = (encoder, x_train[:512], y_train[:512], x_test[:500], y_test[:500])
    settings = dict(epochs=25, batch_size=128)
    result, head = linear_probe(*data, **settings, seed=0)
    assert result["protocol"] == "published" and result["steps"] == 100
    assert result["n_train"] == 512 and result["batch_size"] == 128
    # Measured 0.78 (chance 0.1): it learns from a zero head on crops of the digits.
    assert result["test_accuracy"] > 0.6, result
    # The classifier the probe stands for: encoder then head, on whole test images.
    classifier = keras.Sequential([encoder, head])
    predicted = classifier.predict(x_test[:500], verbose=0).argmax(-1)
    # Features computed apart or inside the classifier round alike: 1 flip in 500 at most.
    assert np.mean(predicted == y_test[:500]) == pytest.approx(result["test_accuracy"], abs=0.002)
    _, same = linear_probe(*data, **settings, seed=0)
    _, other = linear_probe(*data, **settings, seed=1)
    kernel = head.get_weights()[0]
    np.testing.assert_allclose(same.get_weights()[0], kernel, atol=1e-6 * np.abs(kernel).max())
    # Another seed draws other crops and batches.
    assert np.abs(other.get_weights()[0] - kernel).max() > 1e-3 * np.abs(kernel).max()
    with pytest.raises(ValueError, match="protocol"):
        linear_probe(*data, protocol="finetune")


def _reference(criterion, x, seed, indices):
    return criterion.reference(tf.constant(x), seeds=_seeds.sample_seeds(seed, indices))


def test_contrastive_loss_is_deterministic_for_fixed_seeds(simclr, mnist5k):
    x = mnist5k[0][:3]
    criterion = ContrastiveCriterion(simclr, pairs=4)
    first = _reference(criterion, x, 0, [0, 1, 2])
    again = _reference(criterion, x, 0, [0, 1, 2])
    other = _reference(criterion, x, 1, [0, 1, 2])
    assert np.array_equal(first["clean_loss"], again["clean_loss"])
    assert not np.allclose(first["clean_loss"], other["clean_loss"])
    assert np.allclose(criterion(tf.constant(x), tf.constant(x), first), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="needs seeds"):
        criterion.reference(tf.constant(x))
    with pytest.raises(ValueError, match="pairs"):
        ContrastiveCriterion(simclr, pairs=1)


def test_contrastive_attack_success_and_batch_independence(simclr, mnist5k):
    x = mnist5k[0][:4]
    criterion = ContrastiveCriterion(simclr, pairs=2)
    together = MinMaxAttack(criterion, batch_size=4, **ATTACK)(x)
    alone = MinMaxAttack(criterion, batch_size=1, **ATTACK)(x)
    assert np.allclose(together.x_adv, alone.x_adv, atol=1e-4)
    assert np.array_equal(together.success, alone.success)
    f = criterion(tf.constant(together.x_adv), tf.constant(x), _reference(criterion, x, 3, range(4)))
    assert np.allclose(f, together.f, atol=1e-4)
    assert np.array_equal(together.success, together.f <= 0)
    assert MinMaxAttack(criterion, **ATTACK).get_config()["const_decay_power"] == 0.5


def test_registry_knows_simclr():
    entry = models.get("simclr")
    assert entry.kind == "contrastive"
    assert entry.default_epochs("cifar10") == 1000 and entry.default_epochs("cifar10", True) == 1500
    assert models.build("simclr", (32, 32, 3), seed=0, encoder="resnet18", optimizer="lars",
                        total_steps=10).encoder.layers[1].name == "stem_conv"


def test_reproduce_table7_and_figure10b(tmp_path, mnist5k, assert_asr_grows_with_epsilon):
    """``uae reproduce table7`` then ``figure10b`` on its models, as they ship, tiny."""
    table7 = tmp_path / "table7"
    settings = dict(limit=8, epochs=1, augmented_epochs=1, pairs=2, steps=2, probe_epochs=20,
                    attack_batch_size=8)
    argv = ["reproduce", "table7", "--limit", "8", "--epochs", "1", "--augmented-epochs", "1",
            "--pairs", "2", "--steps", "2", "--probe-epochs", "20", "--attack-batch-size", "8",
            "--quiet"]
    assert cli.main([*argv, "--out", str(table7)]) == 0
    report = json.loads((table7 / "report.json").read_text())
    assert [row["method"] for row in report["rows"]] == ["original", "mine-uae",
                                                         "original-same-steps"]
    # Each row is its saved model and results: the test contrastive loss (seeded
    # augmentations, the run's batch) and the ASR, recomputed.
    for row in report["rows"]:
        model = keras.saving.load_model(table7 / "seed-0" / row["method"] / "model.keras",
                                        compile=False)
        loss = contrastive_loss(model, mnist5k[2], report["config"]["batch_size"], seed=0)
        assert row["test_loss"] == pytest.approx(loss, rel=1e-6), row["method"]
    uae = report["rows"][1]
    assert {"test_loss", "accuracy", "frozen_accuracy", "asr", "epochs", "steps"} <= set(uae)
    success = load_results(table7 / "seed-0" / "augment" / "mine-uae").success
    assert uae["asr"] == pytest.approx(success.mean(), rel=1e-12)
    assert report["rows"][0]["asr"] is None and report["rows"][2]["steps"] >= uae["steps"]
    # The published probe of mine-uae trains on the originals plus their UAEs, the
    # others' on the originals; the frozen probe on the originals for every row.
    assert [r["probe_train_samples"] for r in report["rows"]] == [8, 16, 8]
    record = json.loads((table7 / "seed-0" / "mine-uae" / "train.json").read_text())
    assert record["linear_probe"]["frozen"]["n_train"] == 8
    markdown = (table7 / "report.md").read_text()
    assert markdown.count("0.29010") == 1 and "accuracy (published probe)" in markdown
    again = run_table7("mnist5k", table7, verbose=False, **settings)  # resumed from Python
    assert again["rows"] == report["rows"]
    with pytest.raises(ConfigMismatchError, match="pairs"):
        run_table7("mnist5k", table7, verbose=False, **{**settings, "pairs": 3})

    out = tmp_path / "fig10b"
    assert cli.main(["reproduce", "figure10b", "--table7", str(table7), "--n", "2",
                     "--epsilons", "1,8", "--quiet", "--out", str(out)]) == 0
    robustness = json.loads((out / "report.json").read_text())
    assert [(r["model"], r["epsilon"]) for r in robustness["rows"]] == [
        ("original", 1 / 255), ("original", 8 / 255), ("mine-uae", 1 / 255),
        ("mine-uae", 8 / 255)]
    assert (out / "figure10b.png").is_file()
    assert_asr_grows_with_epsilon(robustness["rows"])
    assert robustness["config"]["probe"] == "published"
    assert robustness["config"]["models"]["mine-uae"]["n_train"] == 16
    assert "protocol `published`" in (out / "report.md").read_text()
    # A row is what PGD as published (cross-entropy, random start, 100 steps of 0.01)
    # gives the encoder with its seeded published linear probe (on the 8 originals for
    # the original model), run here.
    encoder = keras.saving.load_model(table7 / "seed-0" / "original" / "model.keras",
                                      compile=False).encoder
    x_train, y_train, x_test, y_test = mnist5k
    _, head = linear_probe(encoder, x_train[:8], y_train[:8], x_test, y_test,
                           protocol="published", epochs=20,
                           batch_size=report["config"]["batch_size"], seed=0)
    indices = np.asarray(robustness["config"]["indices"])
    direct = PGDAttack(keras.Sequential([encoder, head]), epsilon=8 / 255, steps=100,
                       step_size=0.01, loss="crossentropy", random_start=True, seed=0)(
        x_test[indices], labels=y_test[indices], indices=indices)
    row = robustness["rows"][1]
    assert row["asr"] == direct.attack_success_rate
    on_disk, _ = merge_chunks(out / "pgd" / "original" / f"eps_{8 / 255:.5f}", indices)
    np.testing.assert_allclose(on_disk.x_adv, direct.x_adv, atol=1e-6)
