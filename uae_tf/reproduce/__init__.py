"""Experiments that reproduce the paper's tables and figures (``uae reproduce NAME``).

Each experiment is a module with:

* ``NAME`` -- the subcommand name (``uae reproduce NAME``);
* ``SUMMARY`` -- one line for ``--help``;
* ``add_arguments(parser)`` -- its command-line options;
* ``run(args)`` -- runs it from parsed arguments and returns the JSON-serializable
  dict that ``uae`` prints as its last line.

Every experiment writes ``OUT/report.json`` (``{"rows": [...], "config": {...}}``,
config including versions and seeds), ``OUT/report.md`` and its figures, and keeps
its intermediate results in ``OUT`` so that an interrupted run resumes.
"""

import importlib

# name -> module under uae_tf.reproduce; imported only when the experiment runs.
EXPERIMENTS = {
    "table4": "uae_tf.reproduce.table4",
    "table3": "uae_tf.reproduce.table3",
    "figure3": "uae_tf.reproduce.figure3",
    "robustness": "uae_tf.reproduce.robustness",
}


def load(name):
    """Returns the module of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}. Received: {name!r}")
    return importlib.import_module(EXPERIMENTS[name])
