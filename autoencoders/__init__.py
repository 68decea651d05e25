"""The published autoencoders of the paper, in Keras 3.

The four reconstruction models of Section 5.4 of Hsu et al., "Adversarial Examples
can be Effective Data Augmentation for Unsupervised Machine Learning" (AAAI 2022):
dense, sparse, convolutional and adversarial autoencoders, with the published
code's architectures, optimizers and losses, and Table 8's training epochs
(:data:`ARCHITECTURES`, :func:`build`). And the concrete autoencoder of Section 5.5
(Balın, Abid and Zou, ICML 2019), an unsupervised feature selector:
:func:`build_concrete`, its :class:`ConcreteSelect` layer, :func:`selected_features`,
and the convergence rule of Balın et al.'s ``concrete-autoencoder`` package (which
Hsu et al.'s published script calls; neither paper states it), in
:mod:`autoencoders.concrete`.

Example:

>>> import autoencoders
>>> model = autoencoders.build("conv", (28, 28, 1), seed=0)
>>> history = model.fit(x, x, epochs=autoencoders.default_epochs("conv", "mnist"),
...                     batch_size=autoencoders.default_batch_size)  # doctest: +SKIP
>>> phi = autoencoders.reconstruction_model(model)

Importing this package registers its custom objects (package ``"uae_tf"``), so
``keras.models.load_model`` reads the saved models without ``custom_objects``.
"""

from autoencoders.adversarial import AdversarialAutoencoder
from autoencoders.concrete import ConcreteSelect, build_concrete, concrete_select, selected_features
from autoencoders.dense import default_code_dim
from autoencoders.registry import (
    ARCHITECTURES,
    build,
    default_batch_size,
    default_epochs,
    reconstruction_model,
)
from autoencoders.sparse import SparsityPenalty

__all__ = [
    "ARCHITECTURES",
    "AdversarialAutoencoder",
    "ConcreteSelect",
    "SparsityPenalty",
    "build",
    "build_concrete",
    "concrete_select",
    "default_batch_size",
    "default_code_dim",
    "default_epochs",
    "reconstruction_model",
    "selected_features",
]
