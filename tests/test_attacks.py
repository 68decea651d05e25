"""The MinMax attack on real trained models: honest flags, constraints, independence."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from uae_tf.attacks import MinMaxAttack
from uae_tf.criteria import LossCriterion, MarginCriterion, ReconstructionCriterion
from uae_tf.views import ConvView, RandomView, make_view

# Paper settings except fewer iterations, so the suite stays fast on 2 cores.
SMALL = dict(steps=10, mine_steps=3)


def _recompute_f(model, x, x_adv):
    clean = ((x - model.predict(x, verbose=0)) ** 2).reshape(len(x), -1).sum(1)
    adv = ((x - model.predict(x_adv, verbose=0)) ** 2).reshape(len(x), -1).sum(1)
    return adv - clean


@pytest.fixture(scope="module")
def conv_result(conv_ae, mnist5k):
    x = mnist5k[0][:12]
    attack = MinMaxAttack(ReconstructionCriterion(conv_ae), batch_size=12, seed=0, **SMALL)
    return x, attack, attack(x)


def test_conv_view_is_picked_and_shapes(conv_result):
    x, attack, result = conv_result
    assert isinstance(attack.similarity.view, ConvView)
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == np.float32
    assert result.mi_history.shape == (12, 10) and result.c_history.shape == (12, 10)
    assert np.all(result.c_history >= 0)


def test_success_flags_are_honest(conv_result, conv_ae):
    x, _, result = conv_result
    f = _recompute_f(conv_ae, x, result.x_adv)
    np.testing.assert_allclose(f, result.f, atol=1e-4)
    clear = np.abs(f) > 1e-4
    np.testing.assert_array_equal(result.success[clear], f[clear] <= 0)


def test_constraints_hold(conv_ae, mnist5k):
    x = mnist5k[0][:6]
    attack = MinMaxAttack(ReconstructionCriterion(conv_ae), epsilon=0.05, step_size=1000.0,
                          batch_size=6, **SMALL)
    result = attack(x)
    assert np.abs(result.x_adv - x).max() <= 0.05 + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert np.abs(result.x_adv - x).max() > 0.01  # the large step did move the samples


def test_high_attack_success_rate(conv_result):
    assert conv_result[2].attack_success_rate >= 0.9


def test_uaes_have_lower_mi_than_delta_zero(conv_result, conv_ae):
    # Paired comparison: the same attack with a vanishing step keeps delta ~ 0 and,
    # with the same seeds, the same statistics networks and permutations, so at
    # every iteration its MI is the MI of delta = 0 under the attacked run's
    # estimator. With delta_0 = 0 and alpha = 0.01 the UAEs stay close to x, so the
    # gap is small, but the MI the attack minimizes is lower nearly everywhere.
    x, attack, result = conv_result
    settings = {**attack.get_config(), "step_size": 1e-12}
    for key in ("attack", "criterion"):
        settings.pop(key)
    zero = MinMaxAttack(attack.criterion, batch_size=12, **settings)(x)
    gap = zero.mi_history - result.mi_history
    assert gap.mean() > 0
    assert np.mean(gap > 0) >= 0.8


def test_batch_gives_what_single_runs_give(conv_ae, mnist5k):
    x = mnist5k[0][20:23]
    kwargs = dict(seed=3, jit_compile=False, steps=4, mine_steps=2)
    batched = MinMaxAttack(ReconstructionCriterion(conv_ae), batch_size=3, **kwargs)(
        x, indices=[20, 21, 22]
    )
    single = MinMaxAttack(ReconstructionCriterion(conv_ae), batch_size=1, **kwargs)
    for i in range(3):
        one = single(x[i : i + 1], indices=[20 + i])
        np.testing.assert_allclose(one.x_adv[0], batched.x_adv[i], atol=1e-5)
        np.testing.assert_allclose(one.mi_history[0], batched.mi_history[i], rtol=1e-3, atol=1e-4)
        assert one.success[0] == batched.success[i]


def test_random_view_on_dense_autoencoder(dense_ae, mnist5k):
    x = mnist5k[0][:8]
    attack = MinMaxAttack(ReconstructionCriterion(dense_ae), batch_size=8, num_projections=64,
                          **SMALL)
    result = attack(x)
    assert isinstance(attack.similarity.view, RandomView)
    f = _recompute_f(dense_ae, x, result.x_adv)
    clear = np.abs(f) > 1e-4
    np.testing.assert_array_equal(result.success[clear], f[clear] <= 0)
    assert np.all(np.isfinite(result.mi))


def test_supervised_attack_flips_predictions(classifier, mnist5k):
    x, y = mnist5k[2][:16], mnist5k[3][:16]
    correct = classifier.predict(x, verbose=0).argmax(1) == y
    x, y = x[correct][:8], y[correct][:8]
    attack = MinMaxAttack(MarginCriterion(classifier), steps=40, step_size=0.05, batch_size=8)
    assert attack.mine_steps == 1
    result = attack(x, labels=y)
    predicted = classifier.predict(result.x_adv, verbose=0).argmax(1)
    np.testing.assert_array_equal(result.success, predicted != y)
    assert result.attack_success_rate >= 0.75


def test_targeted_attack_reaches_target(classifier, mnist5k):
    x, y = mnist5k[2][:8], mnist5k[3][:8]
    target = (y + 1) % 10
    attack = MinMaxAttack(MarginCriterion(classifier, targeted=True), steps=60, step_size=0.05,
                          batch_size=8)
    result = attack(x, labels=target)
    predicted = classifier.predict(result.x_adv, verbose=0).argmax(1)
    np.testing.assert_array_equal(result.success, predicted == target)
    assert result.attack_success_rate >= 0.5


def test_loss_criterion_matches_reconstruction_criterion(conv_ae, mnist5k):
    x = tf.constant(mnist5k[0][:4])
    x_adv = tf.clip_by_value(x + 0.01, 0, 1)

    def loss(x_in, x_ref):
        return tf.reduce_sum(tf.square(x_ref - conv_ae(x_in)), axis=[1, 2, 3])

    generic, recon = LossCriterion(loss), ReconstructionCriterion(conv_ae)
    np.testing.assert_allclose(
        generic(x_adv, x, generic.reference(x)), recon(x_adv, x, recon.reference(x)), rtol=1e-5
    )


def test_conv_view_on_model_without_conv_layer_is_a_clear_error(dense_ae):
    with pytest.raises(ValueError, match="no.*Conv2D|has none"):
        make_view("conv", dense_ae)
    assert isinstance(make_view("auto", dense_ae, (28, 28, 1)), RandomView)


def test_named_conv_layer(conv_ae):
    name = [layer.name for layer in conv_ae.layers if isinstance(layer, keras.layers.Conv2D)][1]
    assert ConvView(conv_ae, layer_name=name).layer.name == name
    with pytest.raises(ValueError, match="no layer named"):
        ConvView(conv_ae, layer_name="nope")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
        (np.full((2, 28, 28, 1), 2.0, np.float32), r"\[0, 1\]"),
        (np.zeros((2, 8, 8, 1), np.float32), "shape"),
        (np.zeros((0, 28, 28, 1), np.float32), "non-empty"),
    ],
)
def test_bad_inputs_are_rejected(conv_ae, bad, match):
    with pytest.raises(ValueError, match=match):
        MinMaxAttack(ReconstructionCriterion(conv_ae))(bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(epsilon=2.0), "epsilon"), (dict(steps=0), "steps"), (dict(batch_size=-1), "batch_size")],
)
def test_bad_settings_are_rejected(conv_ae, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MinMaxAttack(ReconstructionCriterion(conv_ae), **kwargs)


def test_supervised_criterion_needs_labels(classifier, mnist5k):
    with pytest.raises(ValueError, match="labels"):
        MinMaxAttack(MarginCriterion(classifier))(mnist5k[0][:2])
