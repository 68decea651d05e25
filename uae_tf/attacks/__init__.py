"""Attacks: MinMax (Algorithm 1) and the baselines."""

from uae_tf.attacks.base import AttackResult
from uae_tf.attacks.gaussian import GaussianAugmentation
from uae_tf.attacks.memory import MemoryEstimate, estimate_attack_memory
from uae_tf.attacks.minmax import MinMaxAttack
from uae_tf.attacks.penalty import PenaltyAttack
from uae_tf.attacks.pgd import PGDAttack
from uae_tf.attacks.start import StartOnly

__all__ = ["AttackResult", "GaussianAugmentation", "MemoryEstimate", "MinMaxAttack", "PGDAttack",
           "PenaltyAttack", "StartOnly", "estimate_attack_memory"]
