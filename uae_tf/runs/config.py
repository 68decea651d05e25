"""The config a run directory holds: written on the first run, checked on every other."""

import json
from pathlib import Path

from uae_tf._io import create_json_exclusive

CONFIG_FILE = "config.json"


class ConfigMismatchError(ValueError):
    """Raised when a run directory holds results made with another config."""


def read_json(path, what):
    """Reads the JSON file ``path``, a ``what`` (named in the error).

    Raises:
        ValueError: if the file cannot be read or parsed, naming it.
    """
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable {what} JSON file: {error}") from error


def check_config(out, config, format):
    """Writes ``config`` to ``out/config.json``, or checks it matches the one there.

    Args:
        out: The run directory (must exist).
        config: JSON-serializable facts identifying the run.
        format: Names the kind of directory (``"uae-tf/generation/v1"``...); a
            ``config.json`` of another kind is refused.

    Raises:
        ConfigMismatchError: if ``out`` holds results of a different config, naming
            the keys that differ (``attack.seed: 0 -> 1``) and their values.
        ValueError: if ``out/config.json`` is corrupt or not ours.
    """
    path = Path(out) / CONFIG_FILE
    # Exclusive creation: of two runs (shards) starting in one directory at once,
    # one writes its config and the other is checked against it.
    if create_json_exclusive(path, {"format": format, "config": config}):
        return
    stored = read_json(path, "run config")
    if not isinstance(stored, dict) or stored.get("format") != format:
        raise ValueError(
            f"{path} is not a uae-tf config of format {format!r}; "
            "choose an empty --out directory."
        )
    old = json.loads(json.dumps(stored.get("config") or {}))
    new = json.loads(json.dumps(config))
    if old != new:
        diff = ", ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in _differences(old, new))
        raise ConfigMismatchError(
            f"{out} holds results of another configuration ({diff}). Use a new --out "
            "directory, or rerun with the original arguments to resume."
        )


def _differences(old, new, key=""):
    """Yields ``(dotted key, old value, new value)`` of the leaves that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new)):
            yield from _differences(old.get(name), new.get(name), f"{key}.{name}".lstrip("."))
    elif old != new:
        yield key, old, new


def attack_config(attack):
    """The settings of ``attack`` that identify its results, for a run's config.

    ``jit_compile`` and the similarity's ``kernel`` are left out: they change how
    fast the attack runs, not what it returns (beyond float rounding).
    """
    config = {k: v for k, v in attack.get_config().items() if k != "jit_compile"}
    if isinstance(config.get("similarity"), dict):
        config["similarity"] = {k: v for k, v in config["similarity"].items() if k != "kernel"}
    return config
