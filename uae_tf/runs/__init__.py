"""Run directories: the one home of config checks, chunks, model directories, hashes
and provenance.

Every long job of uae-tf (a generation, an experiment, a trained model) keeps its
results in a directory that carries the config that made them:

* :func:`check_config` writes ``config.json`` on the first run and refuses another
  config later (:class:`ConfigMismatchError` names the keys that differ), and a
  directory holding results without one; :func:`read_config` checks the kind of a
  directory another command reads;
* :func:`config_sha256` is a run's identity, carried by every chunk file and
  ``uae.npz`` (under :data:`IDENTITY_KEY`) and checked when they are read;
* :func:`attack_in_chunks` is the one chunk-and-resume engine: an attack written
  chunk by chunk, resumed after a kill to what an uninterrupted run gives, and
  split into shards (:func:`shard_positions`) that run anywhere at once; its
  pieces (:func:`pending_chunks`, :func:`attack_chunk`, :func:`merge_chunks`) are
  what :mod:`uae_tf.runs.ray_engine` runs on Ray actors, writing the same files;
* :func:`train_once` trains a model into its directory once and reuses it while
  its config holds;
* :func:`file_sha256` and :func:`array_sha256` identify inputs and results;
* :func:`versions` is the provenance recorded next to every result.
"""

from uae_tf.runs.provenance import versions
from uae_tf.runs.chunks import (
    IDENTITY_KEY,
    attack_chunk,
    attack_in_chunks,
    merge_chunks,
    pending_chunks,
    shard_positions,
)
from uae_tf.runs.config import (
    CONFIG_FILE,
    ConfigMismatchError,
    attack_config,
    check_config,
    config_sha256,
    read_config,
    read_json,
)
from uae_tf.runs.hashes import array_sha256, file_sha256
from uae_tf.runs.models import MODEL_FILE, RECORD_FILE, model_file, train_once
from uae_tf.runs import ray_engine

__all__ = [
    "ConfigMismatchError",
    "CONFIG_FILE",
    "check_config",
    "read_config",
    "config_sha256",
    "IDENTITY_KEY",
    "attack_config",
    "read_json",
    "attack_in_chunks",
    "shard_positions",
    "pending_chunks",
    "attack_chunk",
    "merge_chunks",
    "ray_engine",
    "train_once",
    "model_file",
    "MODEL_FILE",
    "RECORD_FILE",
    "file_sha256",
    "array_sha256",
    "versions",
]
