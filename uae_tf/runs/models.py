"""Model directories: trained once, reused while their config holds, refused after."""

from pathlib import Path

from uae_tf._io import make_writable_dir
from uae_tf.runs.config import CONFIG_FILE, check_config, read_json

MODEL_FILE = "model.keras"
RECORD_FILE = "train.json"
MODEL_FORMAT = "uae-tf/model/v1"


def train_once(directory, config, train):
    """Trains a model into ``directory`` unless one of the same ``config`` is there.

    The first call writes ``directory/config.json``, then runs ``train(directory)``,
    which must write ``model.keras`` and ``train.json`` there (as
    :func:`uae_tf.train_autoencoder` and :func:`uae_tf.models.train_classifier`
    do with ``out=directory``). Later calls with the same ``config`` reuse the
    model; a call with another ``config`` is refused, so a changed setting never
    silently reuses an old model. A run killed while training leaves no
    ``model.keras`` and trains again; a training that fails with an error leaves
    no ``config.json`` either, unless one was there before.

    Args:
        directory: The model directory (created if missing).
        config: JSON-serializable facts identifying the model (architecture,
            data, epochs, seed...).
        train: Callable ``train(directory)`` that trains and saves the model.

    Returns:
        ``(record, trained)``: the ``train.json`` dict, and whether the model was
        trained by this call (False: reused).

    Raises:
        ConfigMismatchError: if ``directory`` holds a model of another config, or a
            model without a config (made before configs were recorded).
        OSError: if ``directory`` cannot be written to, before anything is trained.
    """
    directory = make_writable_dir(directory)
    finished = (directory / MODEL_FILE).is_file() and (directory / RECORD_FILE).is_file()
    configured = (directory / CONFIG_FILE).is_file()
    check_config(directory, config, format=MODEL_FORMAT,
                 results=[directory / MODEL_FILE] if finished else ())
    if not finished:
        try:
            train(directory)
        except Exception:
            # A training that fails (bad data...) leaves no config to hold a next try
            # to its settings; an interrupted one keeps it, to resume as it was.
            if not configured:
                (directory / CONFIG_FILE).unlink(missing_ok=True)
            raise
    return read_json(directory / RECORD_FILE, "training record"), not finished


def model_file(path):
    """Returns the ``.keras`` file of ``path``: a model directory's ``model.keras``, or ``path``."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path
