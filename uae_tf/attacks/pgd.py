"""Projected gradient descent (Madry et al., L-infinity), batched: the supervised baseline."""

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks.base import Attack, AttackResult
from uae_tf.criteria import MarginCriterion

LOSSES = ("margin", "crossentropy", "kl")

# Stream of the random start, apart from any other draw of the sample's seed.
_START_STREAM = 0x70676473


class PGDAttack(Attack):
    """L-infinity PGD of Madry et al. (2018) on a classifier's logits.

    Starting from x (or, with ``random_start``, from x plus uniform noise in
    [-epsilon, epsilon]), each of ``steps`` iterations moves every pixel by
    ``step_size`` in the direction of the sign of the loss gradient and projects
    back onto the epsilon ball around x and onto [0, 1]; the last iterate is
    returned. The loss is the Carlini-Wagner margin of
    :class:`~uae_tf.criteria.MarginCriterion` (minimized), the cross-entropy
    (maximized for the true class, minimized for a target class), or ``"kl"``:
    the Kullback-Leibler divergence of the model's prediction at the iterate from
    its prediction at x, maximized, labels unused (TRADES's inner maximization,
    Zhang et al. 2019; untargeted only). The KL's gradient vanishes at x itself,
    so start it off x: ``random_start``, or TRADES's x + N(0, 0.001^2) as
    :class:`uae_tf.models.TRADESTraining` does.

    Success is decided after the loop from the model's prediction on the returned
    examples (outside the compiled loop): the predicted class differs from the
    label (untargeted) or equals the target (targeted).

    Args:
        model: A classifier returning logits ``[B, num_classes]``.
        epsilon: L-infinity bound, in (0, 1].
        steps: Iterations (paper: 100).
        step_size: Step per iteration; default ``2.5 * epsilon / steps`` (the
            paper's appendix H).
        loss: ``"margin"`` (default), ``"crossentropy"`` or ``"kl"``.
        targeted: Whether the labels passed to the attack are target classes.
        random_start: Start from a uniform draw in the epsilon ball, drawn from
            ``(seed, index)`` per sample.
        seed: Seed of the random start.
        batch_size: Samples attacked together; results do not depend on it.
        jit_compile: Compile the loop with XLA: ``False`` (default; on a CPU,
            XLA's convolution gradients ran 7x slower than TensorFlow's kernels for
            the Carlini-Wagner classifier), ``True``, or ``"auto"`` (XLA, falling
            back to graph mode when the model does not compile).
        verbose: Show a progress bar.

    The result's ``mi`` is NaN (PGD optimizes no similarity), ``f`` is the margin
    of the returned example (``<= 0`` when adversarial), and ``mi_history`` and
    ``c_history`` have no columns.

    Example:

    >>> attack = PGDAttack(classifier, epsilon=0.3)
    >>> result = attack(x_test[:100], labels=y_test[:100])
    >>> result.attack_success_rate
    """

    def __init__(
        self,
        model,
        epsilon=0.3,
        steps=100,
        step_size=None,
        loss="margin",
        targeted=False,
        random_start=False,
        seed=0,
        batch_size=128,
        jit_compile=False,
        verbose=False,
    ):
        if not callable(model):
            raise ValueError(f"model must be a callable Keras classifier. Received: model={model!r}")
        self.targeted = bool(targeted)
        super().__init__(
            MarginCriterion(model, targeted=self.targeted), batch_size, seed, jit_compile, verbose
        )
        self.model = model
        self.epsilon = _validation.check_positive_float(epsilon, "epsilon", upper=1.0)
        self.steps = _validation.check_positive_int(steps, "steps")
        if step_size is None:
            step_size = 2.5 * self.epsilon / self.steps
        self.step_size = _validation.check_positive_float(step_size, "step_size")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
        if loss == "kl" and self.targeted:
            raise ValueError("loss='kl' (TRADES) moves the prediction away from the clean "
                             "one and has no target: use targeted=False. Received: targeted=True")
        self.loss = loss
        self.random_start = bool(random_start)
        self._start = tf.function(self._random_start, reduce_retracing=True)
        self._predict = tf.function(self._logits, reduce_retracing=True)
        # Traced (with AutoGraph) inside the caller's graph, e.g. a Keras train step.
        self._perturb_loop = tf.function(self._attack_loop, reduce_retracing=True)

    def _settings(self):
        return {
            "epsilon": self.epsilon,
            "steps": self.steps,
            "step_size": self.step_size,
            "loss": self.loss,
            "targeted": self.targeted,
            "random_start": self.random_start,
        }

    def _run_batch(self, x, labels, indices):
        x, labels = tf.constant(x), tf.constant(labels)
        x_adv = self._start(x, tf.constant(indices)) if self.random_start else x
        x_adv = self._run_loop(x, x_adv, labels, tf.constant(self.epsilon, tf.float32),
                               tf.constant(self.step_size, tf.float32))
        logits = self._predict(x_adv).numpy()
        predicted = np.argmax(logits, axis=-1)
        labels = labels.numpy()
        success = predicted == labels if self.targeted else predicted != labels
        n = len(labels)
        return AttackResult(
            x_adv=x_adv.numpy(),
            success=success,
            mi=np.full(n, np.nan, np.float32),
            f=_margin(logits, labels, self.targeted),
            mi_history=np.zeros((n, 0), np.float32),
            c_history=np.zeros((n, 0), np.float32),
        )

    def perturb(self, x, labels, start=None, epsilon=None):
        """The last PGD iterate from ``start``, as a tensor: the inner maximization of
        adversarial training (Madry et al.).

        Traceable inside a ``tf.function`` (a training step) and differentiable
        nowhere useful: stop its gradient. Reads the model's current weights.

        Args:
            x: ``[B, ...]`` float32 tensor of samples in [0, 1].
            labels: ``[B]`` integer labels (targets when ``targeted``).
            start: ``[B, ...]`` the first iterate (default ``x``), for example ``x``
                plus uniform noise in the epsilon ball; projected onto it first.
            epsilon: Optional bound (a float or scalar tensor, e.g. of an epsilon
                schedule) used instead of the attack's; the step size scales with it,
                ``step_size * epsilon / self.epsilon``, so the path is the same shape.

        Returns:
            ``[B, ...]`` float32 tensor within ``epsilon`` of ``x`` and in [0, 1].
        """
        epsilon = tf.cast(self.epsilon if epsilon is None else epsilon, tf.float32)
        step_size = self.step_size * epsilon / self.epsilon
        low = tf.maximum(x - epsilon, 0.0)
        high = tf.minimum(x + epsilon, 1.0)
        x_adv = x if start is None else tf.clip_by_value(start, low, high)
        return self._perturb_loop(x, x_adv, labels, epsilon, step_size)

    def _logits(self, x):
        return self.model(x, training=False)

    def _random_start(self, x, indices):
        seeds = _seeds.fold_in(_seeds.sample_seeds(self.seed, indices), _START_STREAM)
        noise = tf.map_fn(
            lambda s: tf.random.stateless_uniform(tf.shape(x)[1:], s, -self.epsilon, self.epsilon),
            seeds,
            fn_output_signature=tf.float32,
        )
        return tf.clip_by_value(x + noise, 0.0, 1.0)

    def _objective(self, x_adv, labels, clean_log_probs):
        """``[B]`` values to minimize: the margin, -/+ cross-entropy, or -KL."""
        if self.loss == "margin":
            return self.criterion(x_adv, None, {"labels": labels})
        logits = self.model(x_adv, training=False)
        if self.loss == "kl":
            log_probs = tf.nn.log_softmax(logits)
            return -tf.reduce_sum(tf.exp(clean_log_probs) * (clean_log_probs - log_probs), -1)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        return xent if self.targeted else -xent

    def _attack_loop(self, x, x_adv, labels, epsilon, step_size):
        low, high = tf.maximum(x - epsilon, 0.0), tf.minimum(x + epsilon, 1.0)
        clean_log_probs = (tf.stop_gradient(tf.nn.log_softmax(self.model(x, training=False)))
                           if self.loss == "kl" else None)
        for _ in tf.range(self.steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                objective = tf.reduce_sum(self._objective(x_adv, labels, clean_log_probs))
            grad = tape.gradient(objective, x_adv)
            x_adv = tf.clip_by_value(x_adv - step_size * tf.sign(grad), low, high)
        return x_adv


def _margin(logits, labels, targeted):
    """The C&W margin f of numpy logits: ``<= 0`` when the example is adversarial."""
    one_hot = np.eye(logits.shape[-1], dtype=bool)[labels]
    label_logit = logits[one_hot]
    other_max = np.where(one_hot, -np.inf, logits).max(axis=-1)
    f = other_max - label_logit if targeted else label_logit - other_max
    return f.astype(np.float32)
