"""Named settings of the MinMax and penalty attacks.

* ``paper`` -- the published defaults: T = 40 iterations, 20 MINE steps per
  iteration at Adam lr 1.5e-5, alpha = 0.01, epsilon = 1, c_0 = 1e-3 (beta is the
  MinMax attack's default, 0.1). About 800 statistics-network updates per sample:
  tens of seconds a sample on a 2-core CPU with the conv view (see ``bench/``).
* ``fast`` -- for CPUs: T = 20 iterations with 5 MINE steps each (100 updates, 8x
  fewer), everything else as ``paper``. The README and ``bench/`` compare its
  attack success rate and MI with ``paper`` on the same samples.

A preset is keyword arguments that both :class:`~uae_tf.attacks.MinMaxAttack` and
:class:`~uae_tf.attacks.PenaltyAttack` take, the similarity as a config dict; to
choose the view, merge it in: ``{**preset["similarity"], "view": "random"}``.

Example:

>>> attack = MinMaxAttack(criterion, **get_preset("fast"))
"""

import copy

PRESETS = {
    "paper": {
        "steps": 40,
        "step_size": 0.01,
        "epsilon": 1.0,
        "initial_const": 1e-3,
        "similarity": {"name": "mine", "mine_steps": 20, "learning_rate": 1.5e-5},
    },
    "fast": {
        "steps": 20,
        "step_size": 0.01,
        "epsilon": 1.0,
        "initial_const": 1e-3,
        "similarity": {"name": "mine", "mine_steps": 5, "learning_rate": 1.5e-5},
    },
}


def get_preset(name):
    """Returns a copy of the attack settings of preset ``name`` (``paper`` or ``fast``).

    Args:
        name: ``"paper"`` or ``"fast"``.

    Returns:
        A dict of keyword arguments of the attacks (a fresh copy, safe to change).

    Raises:
        ValueError: for another name.
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={name!r}")
    return copy.deepcopy(PRESETS[name])
