"""Attacks: MinMax (Algorithm 1) and the baselines."""

from uae_tf.attacks.base import AttackResult
from uae_tf.attacks.minmax import MinMaxAttack

__all__ = ["AttackResult", "MinMaxAttack"]
