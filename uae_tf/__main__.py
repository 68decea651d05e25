"""Runs the ``uae`` command line as ``python -m uae_tf``."""

import sys

from uae_tf.cli import main

if __name__ == "__main__":
    sys.exit(main())
