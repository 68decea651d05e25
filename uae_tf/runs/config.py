"""The config a run directory holds: written on the first run, checked on every other."""

import hashlib
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


def config_sha256(config):
    """The identity of a run: the hex sha256 of ``config`` as canonical JSON.

    Every result file of a run (chunk files, ``uae.npz``) carries it, so that a
    file copied from another run, or left by a run whose ``config.json`` is gone,
    is recognized as such when read.

    Args:
        config: JSON-serializable facts identifying the run (the ``config`` of its
            ``config.json``).
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_config(out, config, format, results=()):
    """Writes ``config`` to ``out/config.json``, or checks it matches the one there.

    Args:
        out: The run directory (must exist).
        config: JSON-serializable facts identifying the run.
        format: Names the kind of directory (``"uae-tf/generation/v1"``...); a
            ``config.json`` of another kind is refused.
        results: The result files already in ``out`` (chunk files, a model). With
            no ``config.json`` beside them nothing says what made them, so the
            directory is refused rather than adopted under ``config``.

    Returns:
        The run's identity, :func:`config_sha256` of ``config``.

    Raises:
        ConfigMismatchError: if ``out`` holds results of a different config, naming
            the keys that differ (``attack.seed: 0 -> 1``) and their values, or
            results without a ``config.json``, saying how to recover.
        ValueError: if ``out/config.json`` is corrupt or not ours.
    """
    path = Path(out) / CONFIG_FILE
    results = sorted(str(result) for result in results)
    if results and not path.is_file():
        shown = ", ".join(results[:3]) + (f" and {len(results) - 3} more" if len(results) > 3
                                          else "")
        raise ConfigMismatchError(
            f"{out} holds results ({shown}) without a {CONFIG_FILE}, so the configuration "
            "that made them is unknown and they cannot be checked against this one. Restore "
            f"{path} to resume that run, or delete those files (or use a new --out directory) "
            "to start afresh."
        )
    new = json.loads(json.dumps(config))
    # Exclusive creation: of two runs (shards) starting in one directory at once,
    # one writes its config and the other is checked against it.
    if create_json_exclusive(path, {"format": format, "config": config}):
        return config_sha256(new)
    found, stored = _read_config_file(path)
    if found != format:
        raise ValueError(
            f"{path} is not a uae-tf config of format {format!r}; "
            "choose an empty --out directory."
        )
    old = json.loads(json.dumps(stored))
    if old != new:
        diff = ", ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in _differences(old, new))
        raise ConfigMismatchError(
            f"{out} holds results of another configuration ({diff}). Use a new --out "
            "directory, or rerun with the original arguments to resume."
        )
    return config_sha256(new)


def read_config(directory, format, what=None):
    """The config of run directory ``directory``, checked to be of kind ``format``.

    What a command calls before it reads another command's directory (a Table 7 run
    for Figure 10(b)...), so that a directory of another kind is one clear error.

    Args:
        directory: The run directory.
        format: The kind expected (``"uae-tf/table7/v1"``...).
        what: The directory expected, for the errors (e.g. ``"a 'uae reproduce
            table7' directory"``); default one named by ``format``.

    Returns:
        The ``config`` dict of ``directory/config.json``.

    Raises:
        FileNotFoundError: if ``directory`` has no ``config.json``.
        ValueError: if it is unreadable or of another kind, naming the kind found.
    """
    path = Path(directory) / CONFIG_FILE
    what = what or f"a uae-tf directory of format {format!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {directory} is not {what}.")
    found, config = _read_config_file(path)
    if found != format:
        kind = "is not a uae-tf run config" if found is None else f"is of format {found!r}"
        raise ValueError(f"{directory} is not {what}: its {CONFIG_FILE} {kind}.")
    return config


def _read_config_file(path):
    """``(format, config)`` of a ``config.json``; format ``None`` if it is not ours."""
    stored = read_json(path, "run config")
    if (not isinstance(stored, dict) or not isinstance(stored.get("format"), str)
            or not isinstance(stored.get("config"), dict)):
        return None, None
    return stored["format"], stored["config"]


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
