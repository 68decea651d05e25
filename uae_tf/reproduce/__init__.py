"""Experiments that reproduce the paper's tables and figures.

Each experiment is a keyword function that runs it into a directory and returns
its report (the dict written to ``OUT/report.json``), callable from Python:

>>> from uae_tf import reproduce
>>> report = reproduce.run_table3("runs/table3", n=2, steps=4,
...                               search_steps=2)  # doctest: +SKIP

* :func:`run_table2` -- Table 2 / Figure 1: FID and KID of supervised examples, conv and random view;
* :func:`run_table3` -- Table 3 / Figure 2: MinMax against the penalty method;
* :func:`run_figure3` -- Figure 3: MINE-MinMax against PGD for epsilon 0.1 to 1.0;
* :func:`run_robustness` -- appendix I: PGD against classifiers trained with UAEs;
* :func:`run_robust_models` -- Figs. 6-8: MinMax and PGD against robust (Madry, TRADES) models;
* :func:`run_table4` -- Table 4: retraining autoencoders on UAE-augmented data;
* :func:`run_table6` -- Table 6: the concrete autoencoder (feature selection) with UAEs;
* :func:`run_table7` -- Table 7: SimCLR retrained on UAE-augmented data;
* :func:`run_figure10b` -- appendix I, Fig. 10(b): PGD against SimCLR with and without UAEs;
* :func:`run_table5` -- Table 5: UAEs on top of flip/rotation/noise augmentation;
* :func:`run_table9` -- Table 9: MINE-UAE augmentation for each alpha and beta;
* :func:`run_second_run` -- appendix H: a second UAE augmentation run;
* :func:`run_adversarial_training` -- Fig. 9: adversarial training with and without UAEs.

Every experiment writes ``OUT/report.json`` (``{"rows": [...], "config": {...}}``,
config including versions and seeds), ``OUT/report.md`` and its figures, and keeps
its intermediate results in ``OUT`` (through :mod:`uae_tf.runs`) so that an
interrupted run resumes and a run with other settings is refused.

``uae reproduce NAME`` is a thin adapter: each experiment's module has ``NAME``,
``SUMMARY`` (one line for ``--help``), ``add_arguments(parser)`` and ``run(args)``,
which calls the keyword function and returns the JSON last line. The
shared report helpers are in :mod:`uae_tf.reproduce.reports`, the paper's
published numbers in :mod:`uae_tf.reproduce.paper`.
"""

from uae_tf.reproduce import (
    adversarial_training,
    figure3,
    figure10b,
    robust_models,
    robustness,
    second_run,
    table2,
    table3,
    table4,
    table5,
    table6,
    table7,
    table9,
)
from uae_tf.reproduce.adversarial_training import run_adversarial_training
from uae_tf.reproduce.figure10b import run_figure10b
from uae_tf.reproduce.figure3 import run_figure3
from uae_tf.reproduce.robust_models import run_robust_models
from uae_tf.reproduce.robustness import run_robustness
from uae_tf.reproduce.second_run import run_second_run
from uae_tf.reproduce.table2 import run_table2
from uae_tf.reproduce.table3 import run_table3
from uae_tf.reproduce.table4 import run_table4
from uae_tf.reproduce.table5 import run_table5
from uae_tf.reproduce.table6 import run_table6
from uae_tf.reproduce.table7 import run_table7
from uae_tf.reproduce.table9 import run_table9

# ``uae reproduce NAME``: name -> the experiment's module, in the paper's order.
EXPERIMENTS = {module.NAME: module for module in (
    table2, table3, figure3, table4, table5, table6, table7, table9, second_run,
    robust_models, adversarial_training, robustness, figure10b)}

__all__ = ["run_table2", "run_table3", "run_figure3", "run_table4", "run_table5", "run_table6",
           "run_table7", "run_table9", "run_second_run", "run_adversarial_training",
           "run_robust_models", "run_robustness", "run_figure10b", "EXPERIMENTS"]
