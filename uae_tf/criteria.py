"""Attack criteria: what success means, as a per-sample value f_x (success when <= 0).

A criterion is a small object in the spirit of Foolbox's criteria, but it returns
the paper's attack function f_x rather than a boolean, so that the attack can take
its gradient:

* :class:`ReconstructionCriterion` -- unsupervised, Section 4:
  ``f = ||x - Phi(x + delta)||^2 - ||x - Phi(x)||^2 + kappa`` (squared L2 summed
  over the sample, as the published code).
* :class:`MarginCriterion` -- supervised Carlini-Wagner margin on logits, untargeted
  ``logit_y - max_{j != y} logit_j + kappa`` or targeted
  ``max_{j != t} logit_j - logit_t + kappa``.
* :class:`LossCriterion` -- any per-sample loss ``loss(x_adv, x)``:
  ``f = loss(x + delta, x) - loss(x, x) + kappa`` (e.g. a contrastive loss).

Every criterion has ``supervised`` (whether the attack keeps the example similar,
maximizing MI, or makes it dissimilar, minimizing MI), ``reference(x, labels)``
(per-sample constants computed once, outside the attack loop) and
``__call__(x_adv, x, reference) -> [B]``.
"""

import abc

import numpy as np
import tensorflow as tf


def _check_kappa(kappa):
    if not np.isfinite(kappa) or kappa < 0:
        raise ValueError(f"kappa must be a finite number >= 0. Received: kappa={kappa}")
    return float(kappa)


def _sum_per_sample(t):
    return tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), axis=1)


class Criterion(abc.ABC):
    """Base class of attack criteria. Subclasses implement ``__call__``."""

    supervised = False
    needs_labels = False

    def __init__(self, model=None, kappa=0.0):
        self.model = model
        self.kappa = _check_kappa(kappa)

    def reference(self, x, labels=None):
        """Per-sample constants of the criterion for clean inputs ``x``.

        Args:
            x: ``[B, ...]`` clean inputs.
            labels: ``[B]`` labels (supervised criteria).

        Returns:
            A dict of ``[B, ...]`` tensors passed back to ``__call__``.
        """
        return {}

    @abc.abstractmethod
    def __call__(self, x_adv, x, reference):
        """Returns ``[B]`` values f_x(x_adv); the attack succeeds where f <= 0."""

    def is_adversarial(self, x_adv, x, reference):
        """Returns the ``[B]`` boolean success mask ``f <= 0``."""
        return self(x_adv, x, reference) <= 0.0

    def get_config(self):
        """Returns the criterion's settings as a JSON-serializable dict."""
        return {"name": type(self).__name__, "kappa": self.kappa}

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({settings})"


class ReconstructionCriterion(Criterion):
    """Unsupervised reconstruction criterion of an autoencoder Phi (Section 4).

    ``f = ||x - Phi(x + delta)||^2 - ||x - Phi(x)||^2 + kappa``: the perturbed sample
    must be reconstructed (relative to x) at least as well as x itself.

    Args:
        model: The autoencoder Phi, mapping inputs to reconstructions of the same shape.
        kappa: Margin >= 0 (paper: 0).

    Example:

    >>> criterion = ReconstructionCriterion(autoencoder)
    >>> ref = criterion.reference(x)
    >>> f = criterion(x_adv, x, ref)
    """

    def reference(self, x, labels=None):
        return {"clean_loss": self.loss(x, x)}

    def loss(self, x_in, x):
        """Returns ``[B]`` squared L2 reconstruction errors ``||x - Phi(x_in)||^2``."""
        return _sum_per_sample(tf.square(x - self.model(x_in, training=False)))

    def __call__(self, x_adv, x, reference):
        return self.loss(x_adv, x) - reference["clean_loss"] + self.kappa


class MarginCriterion(Criterion):
    """Supervised Carlini-Wagner margin on a classifier's logits (Section 4).

    Untargeted: ``f = logit_y - max_{j != y} logit_j + kappa`` with y the label.
    Targeted: ``f = max_{j != t} logit_j - logit_t + kappa`` with t the target.

    Args:
        model: A classifier returning logits ``[B, num_classes]``.
        targeted: Whether ``labels`` passed to the attack are targets.
        kappa: Confidence margin >= 0.
    """

    supervised = True
    needs_labels = True

    def __init__(self, model, targeted=False, kappa=0.0):
        super().__init__(model, kappa)
        self.targeted = bool(targeted)

    def reference(self, x, labels=None):
        if labels is None:
            raise ValueError(
                "MarginCriterion needs labels: the true classes (untargeted) or the "
                "target classes (targeted), one per sample."
            )
        return {"labels": tf.cast(tf.reshape(labels, [-1]), tf.int32)}

    def __call__(self, x_adv, x, reference):
        logits = self.model(x_adv, training=False)
        one_hot = tf.one_hot(reference["labels"], tf.shape(logits)[-1], dtype=logits.dtype)
        label_logit = tf.reduce_sum(logits * one_hot, axis=-1)
        other_max = tf.reduce_max(logits - 1e9 * one_hot, axis=-1)
        if self.targeted:
            return other_max - label_logit + self.kappa
        return label_logit - other_max + self.kappa

    def get_config(self):
        return {**super().get_config(), "targeted": self.targeted}


class LossCriterion(Criterion):
    """Any per-sample loss as a criterion: ``f = loss(x + delta, x) - loss(x, x) + kappa``.

    Args:
        loss_fn: Callable ``(x_in, x) -> [B]`` per-sample loss, differentiable in
            ``x_in`` (e.g. a sample's contrastive loss at ``x_in``).
        model: The model whose first ``Conv2D`` gives the conv view, if any.
        supervised: Whether the attack should keep examples similar (maximize MI).
        kappa: Margin >= 0.
    """

    def __init__(self, loss_fn, model=None, supervised=False, kappa=0.0):
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable. Received: loss_fn={loss_fn!r}")
        super().__init__(model, kappa)
        self.loss_fn = loss_fn
        self.supervised = bool(supervised)

    def reference(self, x, labels=None):
        return {"clean_loss": tf.reshape(self.loss_fn(x, x), [-1])}

    def __call__(self, x_adv, x, reference):
        return tf.reshape(self.loss_fn(x_adv, x), [-1]) - reference["clean_loss"] + self.kappa

    def get_config(self):
        name = getattr(self.loss_fn, "__name__", type(self.loss_fn).__name__)
        return {**super().get_config(), "loss_fn": name, "supervised": self.supervised}

