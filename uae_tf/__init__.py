"""uae-tf: unsupervised adversarial examples with per-sample MINE, in Keras 3.

The public API is what ``__all__`` lists; everything else is private.

Example:

>>> import uae_tf
>>> x, _ = uae_tf.datasets.load("mnist5k", "train")
>>> attack = uae_tf.MinMaxAttack(uae_tf.ReconstructionCriterion(autoencoder))
>>> result = attack(x[:64])
"""

import os

__version__ = "0.1.0"

# Quiet TensorFlow's C++ start-up notes (CPU features, oneDNN) unless the user chose
# a level; must be set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Importing the model package registers its custom objects, so that
# ``keras.models.load_model`` reads our ``.keras`` files once uae_tf is imported.
import autoencoders  # noqa: E402,F401
from uae_tf import datasets, evaluation, similarity, training  # noqa: E402
from autoencoders.classifiers import build_classifier  # noqa: E402
from uae_tf.attacks import AttackResult, GaussianAugmentation, MinMaxAttack  # noqa: E402
from uae_tf.attacks import PenaltyAttack, PGDAttack  # noqa: E402
from uae_tf.augmentation import UAERegeneration, UAESequence  # noqa: E402
from uae_tf.classifiers import train_classifier  # noqa: E402
from uae_tf.criteria import (  # noqa: E402
    Criterion,
    LossCriterion,
    MarginCriterion,
    ReconstructionCriterion,
)
from uae_tf.evaluation import per_sample_reconstruction_error, reconstruction_error  # noqa: E402
from uae_tf.generation import generate, load_results  # noqa: E402
from uae_tf.mine import StatisticsNetwork, donsker_varadhan, estimate_mutual_information  # noqa: E402
from uae_tf.presets import PRESETS, get_preset  # noqa: E402
from uae_tf.similarity import L2Similarity, MINESimilarity, Similarity  # noqa: E402
from uae_tf.training import load_model_dir, retrain, train_autoencoder  # noqa: E402
from uae_tf.views import ConvView, RandomView, find_first_conv2d, make_view  # noqa: E402

__all__ = [
    "__version__",
    "datasets",
    "evaluation",
    "similarity",
    "training",
    "train_autoencoder",
    "train_classifier",
    "build_classifier",
    "retrain",
    "load_model_dir",
    "reconstruction_error",
    "per_sample_reconstruction_error",
    "AttackResult",
    "MinMaxAttack",
    "PenaltyAttack",
    "PGDAttack",
    "GaussianAugmentation",
    "UAESequence",
    "UAERegeneration",
    "Criterion",
    "LossCriterion",
    "MarginCriterion",
    "ReconstructionCriterion",
    "Similarity",
    "MINESimilarity",
    "L2Similarity",
    "StatisticsNetwork",
    "donsker_varadhan",
    "estimate_mutual_information",
    "ConvView",
    "RandomView",
    "find_first_conv2d",
    "make_view",
    "PRESETS",
    "get_preset",
    "generate",
    "load_results",
]
