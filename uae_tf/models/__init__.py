"""The models uae-tf builds and trains, autoencoders and the others, under one registry.

The autoencoders live in the ``autoencoders`` package; this package is the home of
the other models (the Carlini-Wagner classifiers of :mod:`uae_tf.models.classifiers`)
and of the registry that knows them all: :data:`ARCHITECTURES` maps every
architecture name to its :class:`Architecture` entry (kind, builder, trainer,
default epochs and batch size), which ``uae train --arch`` reads.

Example:

>>> from uae_tf import models
>>> sorted(models.ARCHITECTURES)
['adversarial', 'classifier', 'conv', 'dense', 'sparse']
>>> models.ARCHITECTURES["classifier"].kind
'classifier'
>>> model = models.build("conv", (28, 28, 1), seed=0)
>>> model, record = models.get("dense").train("digits", epochs=2)  # doctest: +SKIP
"""

from uae_tf.models.classifiers import build_classifier, train_classifier
from uae_tf.models.registry import ARCHITECTURES, KINDS, Architecture, build, get

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "KINDS",
    "build",
    "build_classifier",
    "get",
    "train_classifier",
]
