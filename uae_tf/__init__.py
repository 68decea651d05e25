"""uae-tf: unsupervised adversarial examples with per-sample MINE, in Keras 3.

The public API is what ``__all__`` lists; everything else is private.

Example:

>>> import uae_tf
>>> x, _ = uae_tf.datasets.load("mnist5k", "train")
>>> attack = uae_tf.MinMaxAttack(uae_tf.ReconstructionCriterion(autoencoder))
>>> result = attack(x[:64])
"""

__version__ = "0.1.0"

# Importing the model package registers its custom objects, so that
# ``keras.models.load_model`` reads our ``.keras`` files once uae_tf is imported.
import autoencoders  # noqa: F401
from uae_tf import datasets, distribution, evaluation, metrics, models, similarity, training
from uae_tf.attacks import AttackResult, GaussianAugmentation, MinMaxAttack
from uae_tf.attacks import MemoryEstimate, PenaltyAttack, PGDAttack, estimate_attack_memory
from uae_tf.augmentation import ConventionalAugmentation, UAERegeneration, UAESequence
from uae_tf.criteria import (
    ContrastiveCriterion,
    Criterion,
    LossCriterion,
    MarginCriterion,
    ReconstructionCriterion,
)
from uae_tf.evaluation import (
    feature_selection_accuracy,
    per_sample_reconstruction_error,
    reconstruction_error,
)
from uae_tf.generation import GenerationResults, generate, load_results
from uae_tf.metrics import frechet_distance, kernel_inception_distance
from uae_tf.mine import StatisticsNetwork, donsker_varadhan, estimate_mutual_information
from uae_tf.models import build_classifier, train_classifier
from uae_tf.presets import PRESETS, get_preset
from uae_tf.similarity import L2Similarity, MINESimilarity, Similarity
from uae_tf.training import load_model_dir, retrain, train_autoencoder, train_concrete
from uae_tf.views import ConvView, RandomView, find_first_conv2d, make_view
# Last: the experiments use the rest of the library.
from uae_tf import reproduce, runs

__all__ = [
    "__version__",
    "datasets",
    "distribution",
    "evaluation",
    "metrics",
    "models",
    "similarity",
    "training",
    "train_autoencoder",
    "train_concrete",
    "train_classifier",
    "build_classifier",
    "retrain",
    "load_model_dir",
    "reconstruction_error",
    "per_sample_reconstruction_error",
    "frechet_distance",
    "kernel_inception_distance",
    "feature_selection_accuracy",
    "AttackResult",
    "MinMaxAttack",
    "PenaltyAttack",
    "PGDAttack",
    "GaussianAugmentation",
    "estimate_attack_memory",
    "MemoryEstimate",
    "UAESequence",
    "UAERegeneration",
    "ConventionalAugmentation",
    "Criterion",
    "ContrastiveCriterion",
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
    "GenerationResults",
    "runs",
    "reproduce",
]
