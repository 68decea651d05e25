"""One registry of every model architecture: what ``uae train --arch`` builds and trains.

Each architecture is one :class:`Architecture` entry in :data:`ARCHITECTURES`: its
kind, its builder, its trainer and its default epochs and batch size. The
autoencoders come from the ``autoencoders`` package's own registry (a new
autoencoder registered there appears here too) and its concrete autoencoder; the
other models (the
Carlini-Wagner classifier, SimCLR) are registered below, one entry each.
"""

import dataclasses
import functools
import types
from typing import Callable

import autoencoders
from autoencoders import concrete
from uae_tf.models import classifiers, simclr, simclr_training
from uae_tf.training import train_autoencoder, train_concrete

KINDS = ("autoencoder", "classifier", "contrastive")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What the library knows of one model architecture.

    Attributes:
        name: The architecture's name (``uae train --arch NAME``).
        kind: One of :data:`KINDS`: ``"autoencoder"`` (trained on x -> x, attacked
            with the reconstruction criterion) or ``"classifier"`` (logits, attacked
            with the margin criterion) or ``"contrastive"`` (SimCLR, attacked with
            the contrastive criterion).
        build: ``build(input_shape, seed=None, **hparams)`` returns the compiled
            ``keras.Model``.
        train: ``train(dataset, epochs=None, batch_size=None, seed=0, out=None,
            data_dir=None, verbose=1, limit=None, ...)`` trains on a dataset's train
            split and returns ``(model, record)``; ``None`` epochs and batch size
            take the defaults below.
        default_epochs: ``default_epochs(dataset, augmented=False)`` returns the
            training epochs on ``dataset`` (``augmented``: on originals plus UAEs).
        default_batch_size: The training batch size.
    """

    name: str
    kind: str
    build: Callable
    train: Callable
    default_epochs: Callable
    default_batch_size: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}. Received: kind={self.kind!r}")


def _autoencoder(name):
    """The registry entry of the ``autoencoders`` package's architecture ``name``."""
    return Architecture(
        name=name,
        kind="autoencoder",
        build=functools.partial(autoencoders.build, name),
        train=functools.partial(train_autoencoder, name),
        default_epochs=functools.partial(autoencoders.default_epochs, name),
        default_batch_size=autoencoders.default_batch_size,
    )


def _classifier_epochs(dataset, augmented=False):
    """Carlini and Wagner's 50 epochs, on every dataset, with or without UAEs."""
    del dataset, augmented
    return classifiers.DEFAULT_EPOCHS


_ENTRIES = [
    *(_autoencoder(name) for name in autoencoders.ARCHITECTURES),
    Architecture(
        name="concrete",
        kind="autoencoder",
        build=concrete.build_concrete,
        train=train_concrete,
        default_epochs=concrete.default_epochs,
        # The published max(N // 256, 16) for N training rows: 16 up to 8,191 rows.
        default_batch_size=16,
    ),
    Architecture(
        name="classifier",
        kind="classifier",
        build=classifiers.build_classifier,
        train=classifiers.train_classifier,
        default_epochs=_classifier_epochs,
        default_batch_size=classifiers.DEFAULT_BATCH_SIZE,
    ),
    Architecture(
        name="simclr",
        kind="contrastive",
        build=simclr.build_simclr,
        train=simclr_training.train_simclr,
        default_epochs=simclr_training.default_epochs,
        default_batch_size=simclr_training.CPU_BATCH_SIZE,
    ),
]

ARCHITECTURES = types.MappingProxyType({entry.name: entry for entry in _ENTRIES})


def get(arch):
    """Returns the :class:`Architecture` named ``arch``.

    Args:
        arch: A name of :data:`ARCHITECTURES`, e.g. ``"conv"`` or ``"classifier"``.

    Returns:
        Its :class:`Architecture` entry.

    Raises:
        ValueError: for an unknown ``arch``, listing the known ones.

    Example:

    >>> get("classifier").kind, get("conv").default_epochs("mnist")
    ('classifier', 20)
    """
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {arch!r}. Known architectures: "
            f"{', '.join(ARCHITECTURES)}. Received: arch={arch!r}"
        )
    return ARCHITECTURES[arch]


def build(arch, input_shape, seed=None, **hparams):
    """Builds the compiled model of any registered architecture.

    Args:
        arch: A name of :data:`ARCHITECTURES`.
        input_shape: Shape of one sample without the batch axis, e.g. ``(28, 28, 1)``.
        seed: Integer seed of the weight initializers (and of any dropout or other
            randomness inside the model), or ``None``.
        **hparams: Architecture-specific settings passed to the builder, e.g.
            ``code_dim`` for ``"dense"`` (see :func:`autoencoders.build`),
            ``num_classes`` and ``variant`` for ``"classifier"`` (see
            :func:`uae_tf.models.classifiers.build_classifier`).

    Returns:
        A compiled ``keras.Model``.

    Raises:
        ValueError: for an unknown ``arch`` or an invalid ``input_shape``.

    Example:

    >>> model = build("classifier", (28, 28, 1), seed=0, num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    return get(arch).build(input_shape, seed=seed, **hparams)
