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
  ``f = loss(x + delta, x) - loss(x, x) + kappa``.
* :class:`ContrastiveCriterion` -- SimCLR, Section 5.6: the sample's contrastive
  loss over fixed augmented pairs, ``f = l(x + delta) - l(x) + kappa``.

Every criterion has ``supervised`` (whether the attack keeps the example similar,
maximizing MI, or makes it dissimilar, minimizing MI), ``reference(x, labels,
seeds)`` (per-sample constants computed once, outside the attack loop; ``seeds``
are the attack's per-sample seeds, for criteria with randomness) and
``__call__(x_adv, x, reference) -> [B]``.
"""

import abc

import numpy as np
import tensorflow as tf

from uae_tf import _seeds
from uae_tf._validation import check_reconstructs
from uae_tf.contrastive import PARAMETERS, apply_parameters, draw_parameters, nt_xent

# Stream of the contrastive criterion's augmentations, apart from the attack's draws.
_AUGMENT_STREAM = 0x61756720


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

    def reference(self, x, labels=None, seeds=None):
        """Per-sample constants of the criterion for clean inputs ``x``.

        Args:
            x: ``[B, ...]`` clean inputs.
            labels: ``[B]`` labels (supervised criteria).
            seeds: ``[B, 2]`` int32 per-sample seeds ``(seed, index)`` of the attack
                (criteria with randomness).

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

    Raises:
        ValueError: if ``model``'s output shape is not its input shape (a
            classifier, say), checked here when the model declares its shapes and
            at the first call otherwise.
    """

    def __init__(self, model, kappa=0.0):
        super().__init__(model, kappa)
        try:
            shapes = model.input_shape, model.output_shape
        except (AttributeError, ValueError):
            shapes = None  # Not built yet: checked on the tensors in ``loss``.
        if shapes is not None and not any(isinstance(shape, list) for shape in shapes):
            check_reconstructs(*shapes)

    def reference(self, x, labels=None, seeds=None):
        return {"clean_loss": self.loss(x, x)}

    def loss(self, x_in, x):
        """Returns ``[B]`` squared L2 reconstruction errors ``||x - Phi(x_in)||^2``."""
        reconstruction = self.model(x_in, training=False)
        check_reconstructs(x.shape, reconstruction.shape)
        return _sum_per_sample(tf.square(x - reconstruction))

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

    def reference(self, x, labels=None, seeds=None):
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

    def reference(self, x, labels=None, seeds=None):
        return {"clean_loss": tf.reshape(self.loss_fn(x, x), [-1])}

    def __call__(self, x_adv, x, reference):
        return tf.reshape(self.loss_fn(x_adv, x), [-1]) - reference["clean_loss"] + self.kappa

    def get_config(self):
        name = getattr(self.loss_fn, "__name__", type(self.loss_fn).__name__)
        return {**super().get_config(), "loss_fn": name, "supervised": self.supervised}



class ContrastiveCriterion(Criterion):
    """SimCLR's per-sample contrastive loss as a criterion (Section 5.6).

    ``f = l(x + delta) - l(x) + kappa``, where ``l`` is a sample's contrastive
    loss: ``pairs`` (A) pairs of augmented views of the sample, NT-Xent (the
    model's temperature) over the 2A views, the other pairs being the negatives.
    The published code tiles the image 50 times and takes two transformations of
    each (A = 50).

    Each sample's augmentation parameters (crops, flips, colour jitter, noise; see
    :mod:`uae_tf.contrastive`) are drawn once, in :meth:`reference`,
    from its seed ``(seed, index)``, and held fixed through the attack: f is then
    a deterministic function of delta, differentiable through the crops and
    colour transformations, and a batch of B samples gives what B runs of one give.

    The published code evaluates this loss through its model's inference graph,
    where SimCLR's preprocessing is the identity: all 100 views equal x + delta
    and the loss is a constant, so its criterion cannot tell one delta from
    another. This class implements the intended criterion, with real augmentations.

    The criterion's ``model`` is the SimCLR encoder, whose first convolution (the
    stem) gives MINE's conv view, as the published attack used.

    Args:
        simclr: A :class:`uae_tf.models.SimCLR`.
        pairs: A, augmented pairs per sample (published: 50).
        kappa: Margin >= 0.

    Example:

    >>> criterion = ContrastiveCriterion(simclr_model, pairs=8)
    >>> ref = criterion.reference(x, seeds=_seeds.sample_seeds(0, range(len(x))))
    >>> f = criterion(x_adv, x, ref)
    """

    def __init__(self, simclr, pairs=50, kappa=0.0):
        if not hasattr(simclr, "encoder") or not hasattr(simclr, "augmenter"):
            raise ValueError(f"simclr must be a uae_tf.models.SimCLR. Received: simclr={simclr!r}")
        if isinstance(pairs, bool) or not isinstance(pairs, (int, np.integer)) or pairs < 2:
            raise ValueError(f"pairs must be an integer >= 2. Received: pairs={pairs!r}")
        super().__init__(simclr.encoder, kappa)
        self.simclr = simclr
        self.pairs = int(pairs)

    def reference(self, x, labels=None, seeds=None):
        if seeds is None:
            raise ValueError(
                "ContrastiveCriterion needs seeds, [B, 2] per sample, to draw each sample's "
                "augmentations (the attacks pass theirs)."
            )
        shape = tuple(x.shape[1:])
        strength = self.simclr.color_jitter_strength
        params = tf.map_fn(
            lambda s: draw_parameters(s, 2 * self.pairs, shape, strength),
            _seeds.fold_in(tf.cast(seeds, tf.int32), _AUGMENT_STREAM),
            fn_output_signature={k: tf.float32 for k in PARAMETERS},
        )
        return {"augmentations": params, "clean_loss": self.loss(x, params)}

    def loss(self, x_in, augmentations):
        """Returns ``[B]`` contrastive losses of ``x_in`` under fixed augmentations.

        Args:
            x_in: ``[B, H, W, C]`` images.
            augmentations: ``[B, 2A, ...]`` parameters (``reference(...)["augmentations"]``).
        """
        views_per_sample = 2 * self.pairs
        flat = {k: tf.reshape(v, [-1, *v.shape[2:]]) for k, v in augmentations.items()}
        views = apply_parameters(tf.repeat(x_in, views_per_sample, axis=0), flat)
        z = self.simclr(views, training=False)
        z = tf.reshape(z, [-1, views_per_sample, z.shape[-1]])
        return nt_xent(z[:, : self.pairs], z[:, self.pairs :], self.simclr.temperature)

    def __call__(self, x_adv, x, reference):
        return self.loss(x_adv, reference["augmentations"]) - reference["clean_loss"] + self.kappa

    def get_config(self):
        return {**super().get_config(), "pairs": self.pairs,
                "temperature": self.simclr.temperature,
                "color_jitter_strength": self.simclr.color_jitter_strength}

