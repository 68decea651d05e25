"""The models uae-tf builds and trains, autoencoders and the others, under one registry.

The autoencoders live in the ``autoencoders`` package; this package is the home of
the other models (the Carlini-Wagner classifiers of :mod:`uae_tf.models.classifiers`,
with Madry and TRADES adversarial training, the released robust MNIST models of
:mod:`uae_tf.models.released`, SimCLR of :mod:`uae_tf.models.simclr`)
and of the registry that knows them all: :data:`ARCHITECTURES` maps every
architecture name to its :class:`Architecture` entry (kind, builder, trainer,
default epochs and batch size), which ``uae train --arch`` reads.

Example:

>>> from uae_tf import models
>>> sorted(models.ARCHITECTURES)
['adversarial', 'classifier', 'concrete', 'conv', 'dense', 'simclr', 'sparse']
>>> models.ARCHITECTURES["classifier"].kind
'classifier'
>>> model = models.build("conv", (28, 28, 1), seed=0)
>>> model, record = models.get("dense").train("digits", epochs=2)  # doctest: +SKIP
"""

from uae_tf.models.classifiers import (
    AdversarialTraining,
    TRADESTraining,
    build_classifier,
    train_classifier,
)
from uae_tf.models.released import RELEASED, load_released_classifier
from uae_tf.models.simclr import LARS, SimCLR, build_simclr
from uae_tf.models.simclr_training import contrastive_loss, linear_probe, train_simclr
from uae_tf.models.registry import ARCHITECTURES, KINDS, Architecture, build, get

__all__ = [
    "ARCHITECTURES",
    "AdversarialTraining",
    "Architecture",
    "KINDS",
    "LARS",
    "RELEASED",
    "SimCLR",
    "TRADESTraining",
    "build",
    "build_classifier",
    "build_simclr",
    "contrastive_loss",
    "get",
    "linear_probe",
    "load_released_classifier",
    "train_classifier",
    "train_simclr",
]
