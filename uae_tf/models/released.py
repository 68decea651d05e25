"""The released robust MNIST classifiers the paper attacks in its Figs. 6-8, as Keras models.

The paper's appendix H.1 attacks "the released adversarially robust models trained
using the Madry model and TRADES". Their weights are not redistributable with
uae-tf and need a download; where a user has them, :func:`load_released_classifier`
turns them into a Keras classifier (logits of 28x28x1 images in [0, 1], the range
both were trained on) that every attack and experiment here takes:

* ``"madry"``: a TensorFlow checkpoint of MadryLab's ``mnist_challenge``
  (``python fetch_model.py secret`` or ``adv_trained`` there writes
  ``models/secret/`` or ``models/adv_trained/``): its ``model.py`` network,
  conv 5x5x32 and 5x5x64 (``same`` padding, ReLU, 2x2 max-pooling each), dense
  1024 ReLU, dense 10, whose eight ``tf.Variable``\\ s the checkpoint names
  ``Variable`` to ``Variable_7``. Read with ``tf.train.load_checkpoint``.
* ``"trades"``: the state dict of TRADES's ``checkpoints/model_mnist_smallcnn.pt``
  (yaodongyu/TRADES, ``models/small_cnn.py``): conv 3x3x32, 3x3x32, pool, 3x3x64,
  3x3x64, pool, dense 200, 200, 10, which is the Carlini-Wagner MNIST network of
  :func:`uae_tf.models.build_classifier`. The ``.pt`` file needs PyTorch to read;
  without it, convert it once where PyTorch is installed into an ``.npz`` of the
  same names (see :data:`TRADES_TO_NPZ`), which this reads with NumPy alone.
  PyTorch's ``[out, in, h, w]`` kernels and its channels-first flattening are
  transposed to Keras's layout.

Example:

>>> model = load_released_classifier("madry", "mnist_challenge/models/secret")  # doctest: +SKIP
>>> model = load_released_classifier("trades", "model_mnist_smallcnn.npz")  # doctest: +SKIP
"""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from uae_tf.models.classifiers import build_classifier

RELEASED = ("madry", "trades")
INPUT_SHAPE = (28, 28, 1)
# Where each comes from, for the error when it is absent.
SOURCES = {
    "madry": "MadryLab/mnist_challenge: run 'python fetch_model.py secret' there and pass "
             "models/secret (or models/adv_trained)",
    "trades": "yaodongyu/TRADES: checkpoints/model_mnist_smallcnn.pt",
}
# The one line that turns TRADES's PyTorch checkpoint into the .npz read without PyTorch.
TRADES_TO_NPZ = (
    "python -c \"import numpy, torch; numpy.savez('model_mnist_smallcnn.npz', **{k: v.numpy() "
    "for k, v in torch.load('model_mnist_smallcnn.pt', map_location='cpu').items()})\""
)
# mnist_challenge's model.py creates its variables in this order, unnamed.
_MADRY_VARIABLES = (("conv1", "Variable", "Variable_1"), ("conv2", "Variable_2", "Variable_3"),
                    ("dense1", "Variable_4", "Variable_5"), ("logits", "Variable_6", "Variable_7"))
_TRADES_LAYERS = (("conv1", "feature_extractor.conv1"), ("conv2", "feature_extractor.conv2"),
                  ("conv3", "feature_extractor.conv3"), ("conv4", "feature_extractor.conv4"),
                  ("dense1", "classifier.fc1"), ("dense2", "classifier.fc2"),
                  ("logits", "classifier.fc3"))


def load_released_classifier(name, path):
    """Loads a released robust MNIST classifier into Keras (logits output).

    Args:
        name: ``"madry"`` (a TensorFlow checkpoint of MadryLab's mnist_challenge: its
            directory or checkpoint prefix) or ``"trades"`` (TRADES's
            ``model_mnist_smallcnn.pt``, or its ``.npz`` export, see
            :data:`TRADES_TO_NPZ`).
        path: Where the checkpoint is.

    Returns:
        A ``keras.Model`` from ``[N, 28, 28, 1]`` images in [0, 1] to ``[N, 10]``
        logits, compiled with the cross-entropy of the logits and accuracy, so that
        ``evaluate`` works.

    Raises:
        ValueError: for an unknown ``name``, or a checkpoint whose variables do not
            have the released network's names and shapes.
        FileNotFoundError: if ``path`` does not exist, naming where to get it.
        ImportError: for a ``.pt`` file without PyTorch installed, with the
            conversion that avoids it.
    """
    if name not in RELEASED:
        raise ValueError(f"name must be one of {RELEASED}. Received: name={name!r}")
    path = Path(path)
    if not path.exists() and not (name == "madry" and Path(f"{path}.index").exists()):
        raise FileNotFoundError(
            f"No {name} checkpoint at {path}. The released weights are not shipped with "
            f"uae-tf; get them from {SOURCES[name]}."
        )
    return _load_madry(path) if name == "madry" else _load_trades(path)


def _check_shapes(shapes, expected, source):
    """Checks a checkpoint's variables (name -> shape) against the released network's."""
    for key, shape in expected.items():
        if key not in shapes:
            raise ValueError(f"{source} has no variable {key!r}: not the released network "
                             f"(expected {sorted(expected)}).")
        if tuple(shapes[key]) != shape:
            raise ValueError(f"{source}: variable {key!r} has shape {tuple(shapes[key])}, "
                             f"expected {shape}.")


def _load_madry(path):
    """mnist_challenge's ``model.py`` network, from its TensorFlow checkpoint."""
    prefix = tf.train.latest_checkpoint(str(path)) if path.is_dir() else str(path)
    if prefix is None:
        raise FileNotFoundError(f"{path} holds no TensorFlow checkpoint (no 'checkpoint' file); "
                                f"get one from {SOURCES['madry']}.")
    reader = tf.train.load_checkpoint(prefix)
    expected = {"Variable": (5, 5, 1, 32), "Variable_1": (32,), "Variable_2": (5, 5, 32, 64),
                "Variable_3": (64,), "Variable_4": (7 * 7 * 64, 1024), "Variable_5": (1024,),
                "Variable_6": (1024, 10), "Variable_7": (10,)}
    _check_shapes(reader.get_variable_to_shape_map(), expected, prefix)
    layers = keras.layers
    inputs = keras.Input(INPUT_SHAPE, name="x")
    h = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(inputs)
    h = layers.MaxPooling2D(2, padding="same", name="pool1")(h)
    h = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(2, padding="same", name="pool2")(h)
    h = layers.Flatten(name="flatten")(h)  # NHWC order, as model.py's reshape.
    h = layers.Dense(1024, activation="relu", name="dense1")(h)
    model = keras.Model(inputs, layers.Dense(10, name="logits")(h), name="madry_mnist")
    for layer, kernel, bias in _MADRY_VARIABLES:
        model.get_layer(layer).set_weights([reader.get_tensor(kernel), reader.get_tensor(bias)])
    _compile(model)
    return model


def _load_trades(path):
    """TRADES's SmallCNN, from its PyTorch state dict (``.pt``) or an ``.npz`` of it."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            weights = {key: data[key] for key in data.files}
    else:
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                f"Reading {path} (a PyTorch checkpoint) needs PyTorch: pip install torch. Or "
                f"convert it once where PyTorch is installed and pass the .npz: {TRADES_TO_NPZ}"
            ) from error
        state = torch.load(str(path), map_location="cpu")
        weights = {key: value.numpy() for key, value in state.items()}
    expected = {}
    for (_, prefix), shape in zip(_TRADES_LAYERS, ((32, 1, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3),
                                                   (64, 64, 3, 3), (200, 1024), (200, 200),
                                                   (10, 200))):
        expected[f"{prefix}.weight"] = shape
        expected[f"{prefix}.bias"] = shape[:1]
    _check_shapes({key: value.shape for key, value in weights.items()}, expected, str(path))
    model = build_classifier(INPUT_SHAPE, variant="mnist")
    for layer, prefix in _TRADES_LAYERS:
        kernel = weights[f"{prefix}.weight"].astype(np.float32)
        if kernel.ndim == 4:  # [out, in, h, w] -> [h, w, in, out]
            kernel = kernel.transpose(2, 3, 1, 0)
        elif layer == "dense1":  # Its inputs flattened channels-first: (c, h, w) -> (h, w, c).
            kernel = kernel.reshape(200, 64, 4, 4).transpose(2, 3, 1, 0).reshape(1024, 200)
        else:
            kernel = kernel.T
        model.get_layer(layer).set_weights([kernel, weights[f"{prefix}.bias"].astype(np.float32)])
    return model


def _compile(model):
    """Compiles a loaded classifier for ``evaluate``: cross-entropy of the logits, accuracy."""
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
