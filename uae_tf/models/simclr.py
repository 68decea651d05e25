"""SimCLR (Chen et al. 2020), the contrastive model of the paper's Table 7.

:class:`SimCLR` is a ``keras.Model`` with its own ``train_step``, in the shape of
keras-io's SimCLR example: every step augments the batch twice
(:class:`~uae_tf.contrastive.SimCLRAugmentation`), encodes and projects both
views, and minimizes the NT-Xent loss (:func:`~uae_tf.contrastive.nt_xent`,
temperature 0.5).

* encoders: ``"resnet18"``, ResNet-18 with the CIFAR stem (3x3 stride-1
  convolution, no max-pool; 512-d features), the paper's; ``"small"``, three
  convolutions (128-d features) that a CPU trains in minutes;
* the projection head: three dense layers to 128-d with batch norm (ReLU between);
* optimizers: Adam (CPU) or :class:`LARS` with linear warm-up and cosine decay
  (SimCLR's recipe; :func:`lars_with_warmup`).

The encoder's first convolution (its stem, ``"stem_conv"``, before batch norm) is
what the published attack used as MINE's conv view.

Example:

>>> model = build_simclr((28, 28, 1), encoder="small", seed=0)
>>> model.fit(x_train, epochs=10, batch_size=256)  # doctest: +SKIP
>>> features = model.encoder.predict(x_test)  # doctest: +SKIP
>>> model.export("encoder_savedmodel")  # the encoder, as a SavedModel  # doctest: +SKIP
"""

import keras
import tensorflow as tf

from uae_tf.contrastive import TEMPERATURE, SimCLRAugmentation, nt_xent

ENCODERS = ("small", "resnet18")
OPTIMIZERS = ("adam", "lars")
PROJECTION_DIM = 128


def _initializer(seed, index):
    return keras.initializers.HeNormal(seed=None if seed is None else int(seed) + index)


def build_encoder(name, input_shape, seed=None):
    """Builds a functional encoder (image -> feature vector).

    Args:
        name: ``"small"`` (CPU) or ``"resnet18"`` (ResNet-18, CIFAR stem).
        input_shape: ``(H, W, C)``.
        seed: Seed of the initializers, or ``None``.

    Returns:
        A ``keras.Model`` named ``"encoder"`` whose first ``Conv2D`` is ``"stem_conv"``.
    """
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}. Received: encoder={name!r}")
    layers = keras.layers
    counter = iter(range(10_000))

    def conv(x, filters, strides=1, name=None):
        return layers.Conv2D(filters, 3, strides, padding="same", use_bias=False, name=name,
                             kernel_initializer=_initializer(seed, next(counter)))(x)

    def bn_relu(x, relu=True):
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU()(x) if relu else x

    inputs = keras.Input(input_shape)
    widths = (16, 32, 64) if name == "small" else (64, 128, 256, 512)
    x = bn_relu(conv(inputs, widths[0], name="stem_conv"))
    if name == "small":
        for filters in widths[1:]:
            x = bn_relu(conv(x, filters, strides=2))
    else:
        for stage, filters in enumerate(widths):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                shortcut = x
                if strides != 1 or x.shape[-1] != filters:
                    shortcut = layers.Conv2D(filters, 1, strides, use_bias=False,
                                             kernel_initializer=_initializer(seed, next(counter))
                                             )(x)
                    shortcut = bn_relu(shortcut, relu=False)
                y = bn_relu(conv(x, filters, strides))
                y = bn_relu(conv(y, filters), relu=False)
                x = layers.ReLU()(layers.Add()([y, shortcut]))
    outputs = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="encoder")


def build_projection_head(feature_dim, projection_dim=PROJECTION_DIM, seed=None):
    """SimCLR's 3-layer projection head: (Dense, BN, ReLU) x 2, Dense, BN."""
    layers = keras.layers
    inputs = keras.Input((feature_dim,))
    x = inputs
    for i, units in enumerate((feature_dim, feature_dim, projection_dim)):
        x = layers.Dense(units, use_bias=False, kernel_initializer=_initializer(seed, 1000 + i))(x)
        x = layers.BatchNormalization(momentum=0.9, center=i < 2)(x)
        if i < 2:
            x = layers.ReLU()(x)
    return keras.Model(inputs, x, name="projection_head")


@keras.saving.register_keras_serializable(package="uae_tf")
class SimCLR(keras.Model):
    """SimCLR: encoder, projection head and NT-Xent training on augmented pairs.

    ``model(x)`` returns the 128-d projections; ``model.encoder`` maps images to the
    features a linear probe reads; ``fit`` trains on images alone (a batch ``(x,
    y)``, e.g. from a :class:`uae_tf.UAESequence`, uses only x).

    Args:
        input_shape: ``(H, W, C)`` of the images (values in [0, 1]).
        encoder: ``"small"`` or ``"resnet18"``.
        projection_dim: Output size of the projection head.
        temperature: NT-Xent's tau.
        color_jitter_strength: s of the colour jitter (colour images).
        seed: Seed of the initializers and of the augmentations drawn in training.

    Example:

    >>> model = SimCLR((32, 32, 3), encoder="resnet18", seed=0)
    >>> model.compile(optimizer=lars_with_warmup(2.0, total_steps=97_000, warmup_steps=970))
    """

    def __init__(self, input_shape, encoder="small", projection_dim=PROJECTION_DIM,
                 temperature=TEMPERATURE, color_jitter_strength=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
        self.image_shape = tuple(int(d) for d in input_shape)
        self.encoder_name = encoder
        self.projection_dim = int(projection_dim)
        self.temperature = float(temperature)
        self.color_jitter_strength = float(color_jitter_strength)
        self.seed = seed
        self.encoder = build_encoder(encoder, self.image_shape, seed)
        self.projection_head = build_projection_head(self.encoder.output_shape[-1],
                                                     self.projection_dim, seed)
        self.augmenter = SimCLRAugmentation(color_jitter_strength, seed=seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        return self.projection_head(self.encoder(inputs, training=training), training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _pair_loss(self, data, training):
        x = data[0] if isinstance(data, (tuple, list)) else data
        views = self.augmenter(tf.concat([x, x], axis=0))
        z1, z2 = tf.split(self(views, training=training), 2, axis=0)
        return nt_xent(z1, z2, self.temperature)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self._pair_loss(data, training=True)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        self.loss_tracker.update_state(self._pair_loss(data, training=False))
        return {"loss": self.loss_tracker.result()}

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Exports the encoder (images -> features), the part used downstream."""
        return self.encoder.export(filepath, format=format, verbose=verbose, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "input_shape": self.image_shape,
            "encoder": self.encoder_name,
            "projection_dim": self.projection_dim,
            "temperature": self.temperature,
            "color_jitter_strength": self.color_jitter_strength,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="uae_tf")
class LARS(keras.optimizers.Optimizer):
    """LARS (You et al. 2017) with momentum, as SimCLR trains with it.

    Per weight w with gradient g (weight decay added to g), the step is scaled by
    the trust ratio ``eeta * ||w|| / ||g||``; biases and batch-norm parameters
    (1-D weights) get neither weight decay nor the trust ratio, as in SimCLR.

    Args:
        learning_rate: A float or a schedule (see :func:`lars_with_warmup`).
        momentum: Momentum of the update.
        weight_decay: L2 weight decay added to the gradients (SimCLR: 1e-6 to 1e-4).
        eeta: Trust coefficient.
    """

    def __init__(self, learning_rate=1.0, momentum=0.9, weight_decay=1e-4, eeta=1e-3,
                 name="lars", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eeta = float(eeta)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        velocity = self._velocities[self._get_variable_index(variable)]
        lr = tf.cast(learning_rate, variable.dtype)
        if len(variable.shape) > 1:
            gradient = gradient + self.lars_weight_decay * variable
            w_norm, g_norm = tf.norm(variable), tf.norm(gradient)
            trust = tf.where((w_norm > 0) & (g_norm > 0), self.eeta * w_norm / g_norm, 1.0)
            lr = lr * trust
        velocity.assign(self.momentum * velocity + lr * gradient)
        variable.assign(variable - velocity)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay, "eeta": self.eeta}


def lars_with_warmup(learning_rate, total_steps, warmup_steps, weight_decay=1e-4):
    """SimCLR's optimizer: LARS, linear warm-up to ``learning_rate``, then cosine decay.

    Args:
        learning_rate: Peak rate (SimCLR: 1.0 x batch size / 256).
        total_steps: Gradient steps of the whole training.
        warmup_steps: Steps of the linear warm-up (SimCLR: 10 epochs).
        weight_decay: LARS weight decay.
    """
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total_steps - warmup_steps), warmup_target=learning_rate,
        warmup_steps=warmup_steps)
    return LARS(schedule, weight_decay=weight_decay)


def build_simclr(input_shape, seed=None, encoder="small", optimizer="adam", learning_rate=None,
                 total_steps=None, warmup_steps=0, **kwargs):
    """Builds and compiles a :class:`SimCLR` model (the registry's ``simclr`` builder).

    Args:
        input_shape: ``(H, W, C)`` of the images.
        seed: Seed of the initializers and augmentations.
        encoder: ``"small"`` or ``"resnet18"``.
        optimizer: ``"adam"`` (default lr 1e-3) or ``"lars"`` (default lr 1.0,
            warm-up and cosine decay over ``total_steps``).
        learning_rate: Peak learning rate.
        total_steps: Training steps of the LARS schedule (needed for ``"lars"``).
        warmup_steps: Warm-up steps of the LARS schedule.
        **kwargs: Other :class:`SimCLR` arguments (``temperature``...).

    Returns:
        The compiled model.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}. Received: optimizer={optimizer!r}")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be (H, W, C). Received: input_shape={input_shape!r}")
    model = SimCLR(input_shape, encoder=encoder, seed=seed, **kwargs)
    if optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate or 1e-3)
    else:
        if total_steps is None:
            raise ValueError("optimizer='lars' needs total_steps for its cosine schedule.")
        opt = lars_with_warmup(learning_rate or 1.0, total_steps, warmup_steps)
    model.compile(optimizer=opt)
    return model
