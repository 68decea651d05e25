"""UAESequence, the regeneration callback, the baselines' generation and retraining."""

import json

import keras
import numpy as np
import pytest

import autoencoders
from uae_tf import (
    GaussianAugmentation,
    MinMaxAttack,
    ReconstructionCriterion,
    UAERegeneration,
    UAESequence,
    generate,
    load_results,
    training,
)
from uae_tf.attacks.minmax import glorot_radius


def _pairs(n=10, shape=(4, 4, 1), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, *shape)).astype("float32")
    x_aug = np.clip(x + 0.5, 0, 1).astype("float32")
    return x, x_aug


def _summed_error(model, x_in, x):
    """``||x - Phi(x_in)||^2`` per sample, by model.predict and NumPy."""
    reconstruction = model.predict(x_in, verbose=0).astype(np.float64)
    return np.square(reconstruction - x).reshape(len(x), -1).sum(axis=1)


def _epoch(sequence):
    return np.concatenate([sequence[i][0] for i in range(len(sequence))])


def _row_set(a):
    return sorted(map(bytes, np.ascontiguousarray(a).reshape(len(a), -1)))


def test_sequence_serves_originals_and_augmentations_once_per_epoch():
    x, x_aug = _pairs(10)
    sequence = UAESequence(x, x_aug, batch_size=3, seed=0)
    assert len(sequence) == 7  # ceil(20 / 3)
    served = _epoch(sequence)
    assert served.shape == (20, 4, 4, 1)
    assert _row_set(served) == _row_set(np.concatenate([x, x_aug]))
    inputs, targets = sequence[0]
    np.testing.assert_array_equal(inputs, targets)


def test_sequence_replicates_failed_uaes():
    x, x_aug = _pairs(6)
    success = np.array([True, False, True, False, False, True])
    sequence = UAESequence(x, x_aug, success, batch_size=4, shuffle=False)
    served = _epoch(sequence)
    np.testing.assert_array_equal(served[:6], x)
    expected = np.where(success[:, None, None, None], x_aug, x)
    np.testing.assert_array_equal(served[6:], expected)


def test_sequence_shuffles_per_epoch_reproducibly():
    x, x_aug = _pairs(20)
    a = UAESequence(x, x_aug, batch_size=5, seed=3)
    b = UAESequence(x, x_aug, batch_size=5, seed=3)
    first = _epoch(a)
    np.testing.assert_array_equal(first, _epoch(b))
    a.on_epoch_end()
    second = _epoch(a)
    assert not np.array_equal(first, second)
    assert _row_set(first) == _row_set(second)
    c = UAESequence(x, x_aug, batch_size=5, seed=4)
    assert not np.array_equal(first, _epoch(c))


def test_sequence_labels_follow_their_samples():
    x, x_aug = _pairs(8)
    y = np.arange(8)
    sequence = UAESequence(x, x_aug, y=y, batch_size=16, seed=1)
    inputs, labels = sequence[0]
    pool = np.concatenate([x, x_aug])
    for image, label in zip(inputs, labels):
        assert np.array_equal(image, pool[label]) or np.array_equal(image, pool[label + 8])


def test_sequence_rejects_bad_input():
    x, x_aug = _pairs(4)
    with pytest.raises(ValueError, match="one row per original"):
        UAESequence(x, x_aug[:3])
    with pytest.raises(ValueError, match="success must be 4 booleans"):
        UAESequence(x, x_aug, success=np.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        UAESequence(x, x_aug + 2)
    with pytest.raises(ValueError, match="empty"):
        UAESequence(x[:0], x_aug[:0])
    with pytest.raises(IndexError):
        UAESequence(x, x_aug, batch_size=4)[2]


def test_fit_builds_each_batch_once_per_epoch_despite_the_peek():
    x, x_aug = _pairs(40, shape=(6,))
    x = x.reshape(40, 6)
    sequence = UAESequence(x, x_aug.reshape(40, 6), batch_size=16, seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6)])
    model.compile("sgd", "mse")
    model.fit(sequence, epochs=2, verbose=0)
    assert sequence.batches_built == 2 * len(sequence)


@pytest.mark.parametrize("workers,multiprocessing", [(2, False), (2, True)])
def test_fit_with_workers(workers, multiprocessing):
    x, x_aug = _pairs(64, shape=(5,))
    sequence = UAESequence(
        x.reshape(64, 5), x_aug.reshape(64, 5), batch_size=16, seed=0,
        workers=workers, use_multiprocessing=multiprocessing,
    )
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(5)])
    model.compile("sgd", "mse")
    history = model.fit(sequence, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert sequence.epoch == 2


def test_gaussian_augmentation_noise_and_seeds(mnist5k, conv_ae):
    x = mnist5k[0][:16]
    ga = GaussianAugmentation(ReconstructionCriterion(conv_ae), sigma=0.01, seed=0)
    result = ga(x)
    noise = result.x_adv - x
    interior = (x > 0.05) & (x < 0.95)
    assert abs(noise[interior].std() - 0.01) < 0.002
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    # success recomputed independently: is x reconstructed from the noisy sample no worse?
    f = _summed_error(conv_ae, result.x_adv, x) - _summed_error(conv_ae, x, x)
    np.testing.assert_allclose(result.f, f, atol=2e-3)
    clear = np.abs(f) > 2e-3
    np.testing.assert_array_equal(result.success[clear], f[clear] <= 0)
    # Per-sample streams: the same sample gets the same noise in any batch.
    again = GaussianAugmentation(ReconstructionCriterion(conv_ae), sigma=0.01, seed=0, batch_size=3)
    np.testing.assert_allclose(again(x[5:8], indices=[5, 6, 7]).x_adv, result.x_adv[5:8])


def test_l2_similarity_maximizes_loss_among_successes(mnist5k, conv_ae):
    x = mnist5k[0][:6]
    attack = MinMaxAttack(
        ReconstructionCriterion(conv_ae), similarity="l2", initial_perturbation="glorot",
        steps=10, batch_size=6, seed=0,
    )
    result = attack(x)
    np.testing.assert_allclose(-result.mi, _summed_error(conv_ae, result.x_adv, x), rtol=1e-3)
    assert np.abs(result.x_adv - x).max() > 0.05  # the Glorot start is visible
    assert glorot_radius((28, 28, 1)) == pytest.approx(np.sqrt(6 / (784 + 28)))
    with pytest.raises(ValueError, match="similarity must be one of"):
        MinMaxAttack(ReconstructionCriterion(conv_ae), similarity="cosine")
    with pytest.raises(ValueError, match="initial_perturbation"):
        MinMaxAttack(ReconstructionCriterion(conv_ae), initial_perturbation=2.0)


def test_generate_methods_and_sequence_from_results(tmp_path, mnist5k, conv_ae):
    x = mnist5k[0][:8]
    for method, kwargs in [("gaussian", {"sigma": 0.001}), ("l2", {"steps": 3})]:
        made = generate(conv_ae, x, tmp_path / method, method=method, batch_size=4,
                        verbose=False, **kwargs)
        assert made.method == method and made.summary["config"]["method"] == method
    assert made.summary["mean_mi"] is not None
    ga = json.loads((tmp_path / "gaussian" / "summary.json").read_text())
    assert ga["mean_mi"] is None  # GA optimizes nothing: no MI (JSON null, not NaN)
    results = load_results(tmp_path / "l2")
    # Only 5 of 8 training rows covered: the other 3 are replicated.
    x_train = mnist5k[0][:11]
    sequence = UAESequence.from_results(x_train, results, batch_size=22, shuffle=False)
    pool = sequence[0][0]
    expected = np.where(results.success[:, None, None, None], results.x_adv, x)
    np.testing.assert_array_equal(pool[11:19], expected)
    np.testing.assert_array_equal(pool[19:], x_train[8:])
    # GA: every noisy sample is used, whatever its success.
    ga_results = load_results(tmp_path / "gaussian")
    ga_sequence = UAESequence.from_results(x, ga_results, batch_size=16, shuffle=False)
    np.testing.assert_array_equal(ga_sequence[0][0][8:], ga_results.x_adv)
    with pytest.raises(TypeError, match="load_results.*Received: PosixPath"):
        UAESequence.from_results(x, tmp_path / "gaussian")
    with pytest.raises(ValueError, match="method must be one of"):
        generate(conv_ae, x, tmp_path / "bad", method="fgsm")


def test_regeneration_swaps_in_new_uaes(tmp_path, mnist5k):
    x = mnist5k[0][:12]
    keras.utils.set_random_seed(0)
    model = autoencoders.build("dense", x.shape[1:], seed=0)
    first = np.clip(x + 0.2, 0, 1)
    sequence = UAESequence(x, first, batch_size=12, seed=0)
    callback = UAERegeneration(sequence, every=1, out=tmp_path, method="gaussian",
                               sigma=0.01, verbose=0)
    model.fit(sequence, epochs=3, verbose=0, callbacks=[callback])
    assert [h["epoch"] for h in callback.history] == [1, 2]  # not after the last epoch
    second = load_results(tmp_path / "regeneration-2").x_adv
    np.testing.assert_array_equal(sequence.x_pool[12:], second)
    assert not np.array_equal(load_results(tmp_path / "regeneration-1").x_adv, second)


def test_retrain_is_reproducible_and_checks_its_inputs(tmp_path):
    _, record = training.train_autoencoder(
        "dense", "digits", epochs=2, out=tmp_path / "original", limit=60, verbose=0
    )
    assert record["n_train"] == 60 and record["config"]["limit"] == 60
    phi, _ = training.load_model_dir(tmp_path / "original")
    from uae_tf import datasets

    x, _ = datasets.load("digits", "train")
    ga = generate(phi, x[:60], tmp_path / "ga", method="gaussian", verbose=False,
                  config={"dataset": "digits", "split": "train"})
    # A path at the entry point, or the results object passed down: the same run.
    _, a = training.retrain(tmp_path / "original", tmp_path / "ga", epochs=2, out=tmp_path / "a",
                            verbose=0)
    _, b = training.retrain(tmp_path / "original", ga, epochs=2, out=tmp_path / "b", verbose=0)
    assert a["history"] == b["history"]
    assert a["test_reconstruction_error"] == b["test_reconstruction_error"]
    assert a["steps"] == 2 * 2  # 120 samples in batches of 100, two epochs
    assert a["config"]["augmentation"] == b["config"]["augmentation"] == {
        "path": str(tmp_path / "ga"), "method": "gaussian", "n": 60, "asr": ga.summary["asr"],
        "uae_sha256": ga.sha256,
    }
    _, c = training.retrain(tmp_path / "original", tmp_path / "ga", epochs=2, seed=1,
                            out=tmp_path / "c", verbose=0)
    assert c["history"] != a["history"]
    generate(phi, x[:60], tmp_path / "other", method="gaussian", verbose=False,
             config={"dataset": "mnist5k", "split": "train"})
    with pytest.raises(ValueError, match="expected the train split of 'digits'"):
        training.retrain(tmp_path / "original", tmp_path / "other", epochs=1, verbose=0)
    with pytest.raises(FileNotFoundError, match="No train.json"):
        training.retrain(tmp_path / "ga", tmp_path / "ga", verbose=0)
