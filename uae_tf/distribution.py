"""Which devices ``model.fit`` trains on: one, or several under ``tf.distribute.MirroredStrategy``.

:func:`get_strategy` turns a ``devices`` setting (``uae train --devices``,
``uae retrain --devices``, the ``devices`` argument of the training helpers) into
a ``tf.distribute`` strategy; :func:`describe` says what it trains on, for the
training record. With several replicas, each global batch is split across the
devices, each computes the gradient of its share of the loss, and the gradients
are summed: Keras scales every replica's loss by ``1 / replicas``, so the step is
the one-device step on the same global batch, up to the order of float sums.

Build *and* compile the model inside ``strategy.scope()``; ``fit`` then
distributes by itself (the training helpers do this)::

    strategy = get_strategy(2)
    with strategy.scope():
        model = autoencoders.build("conv", (28, 28, 1), seed=0)
    model.fit(sequence, epochs=30, shuffle=False)

Device placement stays with TensorFlow: GPUs when it sees any, else CPUs (one CPU
can be split into several logical devices for testing, with
``tf.config.set_logical_device_configuration`` before TensorFlow starts).
"""

import tensorflow as tf

# One MirroredStrategy per set of devices in a process: each strategy numbers its
# collective all-reduces from the same keys, so a second strategy over the same
# devices collides with the first's (measured: training a conv autoencoder after a
# dense one failed with "Shape mismatch in the collective instance 100").
_STRATEGIES = {}

_DEVICES_HELP = (
    "devices must be None (automatic), a positive int (the first N GPUs, or CPUs when "
    "there is no GPU) or device names such as 'GPU:0,GPU:1'"
)


def get_strategy(devices=None):
    """Returns the ``tf.distribute`` strategy that trains on ``devices``.

    Args:
        devices: ``None``: automatic, every visible GPU when TensorFlow sees two or
            more, else TensorFlow's default single-device placement. An int N: N == 1
            is the default placement (one device, as without distribution); N >= 2
            mirrors over the first N GPUs, or the first N CPU devices when there is
            no GPU. Device names (a list, or one comma-separated string), e.g.
            ``"GPU:0,GPU:1"`` or ``["/gpu:0", "/gpu:2"]``: mirrors over those
            devices. A string of digits counts, like an int.

    Returns:
        A ``tf.distribute.MirroredStrategy`` (the same object for the same devices
        throughout the process), or ``tf.distribute.get_strategy()`` for one
        device (the default strategy, outside any scope).

    Raises:
        ValueError: naming the value, if ``devices`` is malformed, asks for more
            devices than TensorFlow sees, names a device it does not see, or names
            one twice.

    Example:

    >>> strategy = get_strategy(1)
    >>> strategy.num_replicas_in_sync
    1
    """
    devices = normalize(devices)
    if devices is None:
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        return _mirrored(gpus) if len(gpus) >= 2 else tf.distribute.get_strategy()
    if isinstance(devices, int):
        if devices == 1:
            return tf.distribute.get_strategy()
        kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        visible = [device.name for device in tf.config.list_logical_devices(kind)]
        if devices > len(visible):
            raise ValueError(
                f"devices={devices} asks for {devices} devices, but TensorFlow sees "
                f"{len(visible)} {kind} device{'s' if len(visible) != 1 else ''} "
                f"({', '.join(_short(name) for name in visible)})."
                + (" To test on a CPU, split it into logical devices first with "
                   "tf.config.set_logical_device_configuration." if kind == "CPU" else "")
            )
        return _mirrored(visible[:devices])
    visible = {_short(device.name): device.name for device in tf.config.list_logical_devices()}
    for name in devices:
        if name not in visible:
            raise ValueError(
                f"devices names {name}, which TensorFlow does not see (visible: "
                f"{', '.join(visible)}). Received: devices={','.join(devices)!r}"
            )
    return _mirrored([visible[name] for name in devices])


def normalize(devices):
    """Returns ``devices`` checked: ``None``, an int >= 1, or a tuple of ``"TYPE:INDEX"`` names.

    Names are written as TensorFlow's logical devices are, upper case and without
    ``/device:``: ``"/gpu:0"`` becomes ``"GPU:0"``. What :func:`get_strategy` accepts;
    the training record keeps this form.

    Raises:
        ValueError: naming the value, for anything else (a bool, an int < 1, an
            empty or unparsable name, a name twice).
    """
    if devices is None:
        return None
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1:
            raise ValueError(f"{_DEVICES_HELP}. Received: devices={devices!r}")
        return devices
    names = devices.split(",") if isinstance(devices, str) else devices
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{_DEVICES_HELP}. Received: devices={devices!r}")
    parsed = []
    for name in names:
        try:
            spec = tf.DeviceSpec.from_string(name.strip())
        except (AttributeError, ValueError):
            spec = None
        if spec is None or spec.device_type is None or spec.device_index is None:
            raise ValueError(
                f"{_DEVICES_HELP}; {name!r} is not a device name TYPE:INDEX. "
                f"Received: devices={devices!r}"
            )
        parsed.append(f"{spec.device_type.upper()}:{spec.device_index}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"devices names a device twice. Received: devices={devices!r}")
    return tuple(parsed)


def describe(strategy):
    """What ``strategy`` trains on, for the training record.

    Returns:
        ``{"replicas": R, "devices": [names] or None}``: the replicas kept in sync
        (1 on one device) and the devices they run on as ``"TYPE:INDEX"``
        (``None``: the default strategy, TensorFlow's own placement on one device).
    """
    try:
        devices = [_short(name) for name in strategy.extended.worker_devices]
    except RuntimeError:  # The default strategy has no worker devices of its own.
        devices = None
    return {"replicas": strategy.num_replicas_in_sync, "devices": devices}


def _mirrored(devices):
    """The process's ``MirroredStrategy`` over ``devices`` (made on first use)."""
    key = tuple(devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES[key]


def _short(name):
    """``"/job:localhost/replica:0/task:0/device:GPU:1"`` -> ``"GPU:1"``."""
    spec = tf.DeviceSpec.from_string(name)
    return f"{spec.device_type}:{spec.device_index}"
