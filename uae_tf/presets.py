"""Named settings of the MinMax attack.

* ``paper`` -- the published defaults: T = 40 iterations, 20 MINE steps per
  iteration at Adam lr 1.5e-5, alpha = 0.01, beta = 0.1, epsilon = 1, c_0 = 1e-3.
  About 800 statistics-network updates per sample: tens of seconds a sample on a
  2-core CPU with the conv view (see ``bench/``).
* ``fast`` -- for CPUs: T = 20 iterations with 5 MINE steps each (100 updates, 8x
  fewer), everything else as ``paper``. The README and ``bench/`` compare its
  attack success rate and MI with ``paper`` on the same samples.
"""

PRESETS = {
    "paper": {
        "steps": 40,
        "mine_steps": 20,
        "mine_lr": 1.5e-5,
        "step_size": 0.01,
        "beta": 0.1,
        "epsilon": 1.0,
        "initial_const": 1e-3,
    },
    "fast": {
        "steps": 20,
        "mine_steps": 5,
        "mine_lr": 1.5e-5,
        "step_size": 0.01,
        "beta": 0.1,
        "epsilon": 1.0,
        "initial_const": 1e-3,
    },
}


def get_preset(name):
    """Returns a copy of the attack settings of preset ``name`` (``paper`` or ``fast``)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={name!r}")
    return dict(PRESETS[name])
