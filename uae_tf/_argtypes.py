"""Argument parsing shared by the ``uae`` command line and the experiments."""

import argparse


def int_at_least(minimum):
    """Returns an argparse ``type`` that parses an integer >= ``minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def initial_perturbation(text):
    """Parses ``--initial-perturbation``: ``"glorot"`` or a radius in [0, 1]."""
    if text == "glorot":
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected 'glorot' or a number in [0, 1], got {text!r}")
    return value
