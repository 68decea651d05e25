"""Projected gradient descent (Madry et al., L-infinity), batched: the supervised baseline."""

import warnings

import numpy as np
import tensorflow as tf

from uae_tf import _seeds, _validation
from uae_tf.attacks.base import AttackResult, run_in_batches
from uae_tf.criteria import MarginCriterion

LOSSES = ("margin", "crossentropy")

# Stream of the random start, apart from any other draw of the sample's seed.
_START_STREAM = 0x70676473


class PGDAttack:
    """L-infinity PGD of Madry et al. (2018) on a classifier's logits.

    Starting from x (or, with ``random_start``, from x plus uniform noise in
    [-epsilon, epsilon]), each of ``steps`` iterations moves every pixel by
    ``step_size`` in the direction of the sign of the loss gradient and projects
    back onto the epsilon ball around x and onto [0, 1]; the last iterate is
    returned. The loss is the Carlini-Wagner margin of
    :class:`~uae_tf.criteria.MarginCriterion` (minimized) or the cross-entropy
    (maximized for the true class, minimized for a target class).

    Success is decided after the loop from the model's prediction on the returned
    examples (outside the compiled loop): the predicted class differs from the
    label (untargeted) or equals the target (targeted).

    Args:
        model: A classifier returning logits ``[B, num_classes]``.
        epsilon: L-infinity bound, in (0, 1].
        steps: Iterations (paper: 100).
        step_size: Step per iteration; default ``2.5 * epsilon / steps`` (the
            paper's appendix H).
        loss: ``"margin"`` (default) or ``"crossentropy"``.
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
        self.model = model
        self.epsilon = _validation.check_positive_float(epsilon, "epsilon", upper=1.0)
        self.steps = _validation.check_positive_int(steps, "steps")
        if step_size is None:
            step_size = 2.5 * self.epsilon / self.steps
        self.step_size = _validation.check_positive_float(step_size, "step_size")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
        self.loss = loss
        self.targeted = bool(targeted)
        self.random_start = bool(random_start)
        self.seed = int(seed)
        self.batch_size = _validation.check_positive_int(batch_size, "batch_size")
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be True, False or 'auto'. Received: {jit_compile!r}")
        self.jit_compile = jit_compile
        self.verbose = bool(verbose)
        self._criterion = MarginCriterion(model, targeted=self.targeted)
        self._start = tf.function(self._random_start, reduce_retracing=True)
        self._predict = tf.function(self._logits, reduce_retracing=True)
        self._loop = self._compile_loop(jit_compile is not False)

    def get_config(self):
        """Returns the attack's settings as a JSON-serializable dict."""
        return {
            "attack": type(self).__name__,
            "epsilon": self.epsilon,
            "steps": self.steps,
            "step_size": self.step_size,
            "loss": self.loss,
            "targeted": self.targeted,
            "random_start": self.random_start,
            "seed": self.seed,
            "jit_compile": self.jit_compile,
        }

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "attack")
        return f"PGDAttack({settings})"

    def __call__(self, x, labels, indices=None):
        """Attacks the samples ``x``.

        Args:
            x: ``[N, ...]`` samples with values in [0, 1].
            labels: ``[N]`` true classes (untargeted) or target classes (targeted).
            indices: ``[N]`` integer identities of the samples, the seeds of their
                random starts. Default ``range(N)``.

        Returns:
            An :class:`~uae_tf.attacks.base.AttackResult`.

        Raises:
            ValueError: if ``x`` is not a batch of samples in [0, 1] of the model's
                input shape, ``labels`` are not classes of the model, or ``labels``
                or ``indices`` do not have one entry per sample.
        """
        expected = None
        if getattr(self.model, "inputs", None):
            expected = tuple(self.model.inputs[0].shape[1:])
        x = _validation.check_images(x, "x", expected)
        n = len(x)
        if labels is None:
            raise ValueError("PGDAttack needs labels: true classes, or targets if targeted.")
        labels = np.asarray(labels).reshape(-1).astype(np.int32)
        if len(labels) != n:
            raise ValueError(f"labels must have {n} entries, one per sample. Received {len(labels)}")
        num_classes = getattr(self.model, "output_shape", (None,))[-1]
        if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
            raise ValueError(
                f"labels must be classes in [0, {num_classes}). Received labels in "
                f"[{labels.min()}, {labels.max()}]"
            )
        indices = np.arange(n) if indices is None else np.asarray(indices).reshape(-1)
        if len(indices) != n:
            raise ValueError(f"indices must have {n} entries, one per sample. Received {len(indices)}")
        return run_in_batches(self._run_batch, [x, labels, indices], self.batch_size, self.verbose)

    def _compile_loop(self, jit):
        return tf.function(self._attack_loop, jit_compile=jit, reduce_retracing=True)

    def _run_batch(self, x, labels, indices):
        x, labels = tf.constant(x), tf.constant(labels)
        x_adv = self._start(x, tf.constant(indices)) if self.random_start else x
        try:
            x_adv = self._loop(x, x_adv, labels)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if self.jit_compile != "auto" or "XLA" not in str(error):
                raise
            warnings.warn(
                "The PGD loop does not compile with XLA for this model; running it in plain "
                f"graph mode (slower). Set jit_compile=False to skip the try. ({error})"
            )
            self.jit_compile = False
            self._loop = self._compile_loop(False)
            x_adv = self._loop(x, x_adv, labels)
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

    def _objective(self, x_adv, labels):
        """``[B]`` values to minimize: the margin, or -/+ cross-entropy."""
        if self.loss == "margin":
            return self._criterion(x_adv, None, {"labels": labels})
        logits = self.model(x_adv, training=False)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        return xent if self.targeted else -xent

    def _attack_loop(self, x, x_adv, labels):
        low, high = tf.maximum(x - self.epsilon, 0.0), tf.minimum(x + self.epsilon, 1.0)
        for _ in tf.range(self.steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                objective = tf.reduce_sum(self._objective(x_adv, labels))
            grad = tape.gradient(objective, x_adv)
            x_adv = tf.clip_by_value(x_adv - self.step_size * tf.sign(grad), low, high)
        return x_adv


def _margin(logits, labels, targeted):
    """The C&W margin f of numpy logits: ``<= 0`` when the example is adversarial."""
    one_hot = np.eye(logits.shape[-1], dtype=bool)[labels]
    label_logit = logits[one_hot]
    other_max = np.where(one_hot, -np.inf, logits).max(axis=-1)
    f = other_max - label_logit if targeted else label_logit - other_max
    return f.astype(np.float32)
