"""Adversarial autoencoder of the paper (Section 5.4, "Adversarial Autoencoder").

Makhzani et al., "Adversarial Autoencoders" (2015), as in the published
``keras-aae.py`` used by Hsu et al. (AAAI 2022): an encoder, a decoder and a
discriminator that tells codes of the data from samples of a Gaussian prior. Every
batch runs a reconstruction phase (encoder + decoder on the reconstruction loss) and
a regularization phase (the discriminator learns prior samples = 1, codes = 0; then
the encoder learns to make the discriminator say 1 on codes).

Published settings: three MLPs with two hidden ReLU layers of 1000 units, a 2-d code
with a sigmoid output, a sigmoid decoder output and a sigmoid discriminator output,
prior N(0, I), MSE and binary cross-entropy, three Adam optimizers with learning rate
1e-4, batch size 100. The paper's MNIST training error (Table 8: 0.0448) is of the
order a 2-d code gives; its much lower SVHN error (0.00169) suggests a larger code
there, which the paper does not state -- pass ``latent_dim`` to change it.
"""

import keras
import tensorflow as tf
from keras import ops

from autoencoders._common import check_input_shape, input_dim, kernel_initializer


def _mlp(input_size, hidden_units, output_size, output_activation, seed, seed_offset, name):
    inputs = keras.Input(shape=(input_size,), name=f"{name}_input")
    h = inputs
    for i in range(2):
        h = keras.layers.Dense(hidden_units, activation="relu",
                               kernel_initializer=kernel_initializer(seed, seed_offset + i),
                               name=f"{name}_hidden{i + 1}")(h)
    outputs = keras.layers.Dense(output_size, activation=output_activation,
                                 kernel_initializer=kernel_initializer(seed, seed_offset + 2),
                                 name=f"{name}_output")(h)
    return keras.Model(inputs, outputs, name=name)


def _unscaled(loss):
    """A replica's mean loss from the one a Keras loss returns under ``tf.distribute``.

    Keras divides each replica's loss by the number of replicas, so that summing
    the replicas' gradients gives the gradient of the global batch's mean; the
    loss trackers average the replicas' means instead, as Keras' own train step
    does (``unscale_loss_for_distribution``).
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * replicas


class _PerSampleLoss(keras.losses.Loss):
    """A loss function ``fn(y_true, y_pred)`` as a ``Loss`` (sample weights, reduction)."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "reconstruction_loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


@keras.saving.register_keras_serializable(package="uae_tf")
class AdversarialAutoencoder(keras.Model):
    """Adversarial autoencoder trainer (Makhzani et al. 2015; paper Section 5.4).

    ``fit(x, x)`` runs, per batch: (1) a reconstruction step on the encoder and
    decoder with ``optimizer``; (2) two discriminator steps with
    ``discriminator_optimizer`` on the B codes ``encoder(x)`` (label 0) and B prior
    samples z ~ N(0, I) (label 1), shuffled together and split in halves of B, as the
    published ``keras-aae.py`` (``discriminator.fit`` on the 2B with batch size B;
    ``discriminator_loss`` is their mean); (3) a generator step on the encoder with
    ``generator_optimizer``, target label 1 for ``encoder(x)``. It reports ``loss``
    (the reconstruction loss), ``discriminator_loss`` and ``generator_loss``.
    TensorFlow backend only (the train step uses ``tf.GradientTape``).

    The reconstruction model Phi is :attr:`autoencoder`, a plain functional
    ``keras.Model`` x -> decoder(encoder(x)) with the input's shape; calling or
    predicting with the trainer runs it.

    Args:
        input_shape: Shape of one sample, without the batch axis; samples are
            flattened for the MLPs and reshaped back.
        latent_dim: Size of the code. Default 2 (the published default).
        hidden_units: Units of each of the two hidden layers of the encoder, decoder
            and discriminator. Default 1000.
        code_activation: Activation of the encoder's output. Default ``"sigmoid"``,
            as published, although the prior N(0, I) is not confined to (0, 1);
            ``"linear"`` gives Makhzani et al.'s original setting.
        seed: Integer seed of the weight initializers and of the prior samples, or
            ``None``.
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).

    Attributes:
        encoder: Functional model, flattened x -> code.
        decoder: Functional model, code -> flattened reconstruction.
        discriminator: Functional model, code -> probability that it is a prior sample.
        autoencoder: Functional model Phi, x -> reconstruction of x's shape.

    Example:

    >>> aae = AdversarialAutoencoder((28, 28, 1), seed=0)
    >>> aae.compile()
    >>> history = aae.fit(x, x, epochs=1, batch_size=100)  # doctest: +SKIP
    >>> sorted(history.history)  # doctest: +SKIP
    ['discriminator_loss', 'generator_loss', 'loss']
    """

    def __init__(self, input_shape, latent_dim=2, hidden_units=1000,
                 code_activation="sigmoid", seed=None, **kwargs):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "AdversarialAutoencoder's train step needs the TensorFlow backend. "
                f"Received: keras.backend.backend()={keras.backend.backend()!r}"
            )
        kwargs.setdefault("name", "adversarial_autoencoder")
        super().__init__(**kwargs)
        self.data_shape = check_input_shape(input_shape, "adversarial_autoencoder")
        for arg, value in (("latent_dim", latent_dim), ("hidden_units", hidden_units)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{arg} must be a positive int. Received: {arg}={value!r}")
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.code_activation = code_activation
        self.seed = seed
        d = input_dim(self.data_shape)
        self.encoder = _mlp(d, hidden_units, latent_dim, code_activation, seed, 0, "encoder")
        self.decoder = _mlp(latent_dim, hidden_units, d, "sigmoid", seed, 3, "decoder")
        self.discriminator = _mlp(latent_dim, hidden_units, 1, "sigmoid", seed, 6,
                                  "discriminator")
        inputs = keras.Input(shape=self.data_shape, name="x")
        flat = keras.layers.Flatten(name="flatten")(inputs) if len(self.data_shape) > 1 else inputs
        reconstruction = self.decoder(self.encoder(flat))
        if len(self.data_shape) > 1:
            reconstruction = keras.layers.Reshape(self.data_shape, name="reshape")(reconstruction)
        self.autoencoder = keras.Model(inputs, reconstruction, name="aae_reconstruction")
        self.prior_seed_generator = keras.random.SeedGenerator(seed, name="prior_seed_generator")
        self.reconstruction_tracker = keras.metrics.Mean(name="loss")
        self.discriminator_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.generator_tracker = keras.metrics.Mean(name="generator_loss")
        self.built = True

    def compile(self, optimizer=None, discriminator_optimizer=None, generator_optimizer=None,
                loss=None, **kwargs):
        """Sets the three optimizers and the reconstruction loss.

        Args:
            optimizer: Optimizer of the reconstruction phase (encoder + decoder);
                default ``Adam(1e-4)``.
            discriminator_optimizer: Optimizer of the discriminator; default
                ``Adam(1e-4)``.
            generator_optimizer: Optimizer of the encoder in the regularization
                phase; default ``Adam(1e-4)``.
            loss: Reconstruction loss (name or ``keras.losses.Loss``); default MSE.
            **kwargs: Passed to ``keras.Model.compile`` (e.g. ``jit_compile``).
        """
        optimizer = keras.optimizers.get(optimizer or keras.optimizers.Adam(1e-4))
        super().compile(optimizer=optimizer, **kwargs)
        self.discriminator_optimizer = keras.optimizers.get(
            discriminator_optimizer or keras.optimizers.Adam(1e-4))
        self.generator_optimizer = keras.optimizers.get(
            generator_optimizer or keras.optimizers.Adam(1e-4))
        loss = keras.losses.get(loss or "MeanSquaredError")
        self.reconstruction_loss = (loss if isinstance(loss, keras.losses.Loss)
                                    else _PerSampleLoss(loss))
        self._compile_arguments = {
            "optimizer": self.optimizer,
            "discriminator_optimizer": self.discriminator_optimizer,
            "generator_optimizer": self.generator_optimizer,
            "loss": loss,
            **kwargs,
        }
        self.adversarial_loss = keras.losses.BinaryCrossentropy()
        # Optimizer slots are created here, outside the traced train step.
        self.optimizer.build(self._autoencoder_variables())
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.generator_optimizer.build(self.encoder.trainable_variables)

    @property
    def metrics(self):
        """The reconstruction, discriminator and generator loss trackers."""
        return [self.reconstruction_tracker, self.discriminator_tracker, self.generator_tracker]

    def call(self, inputs, training=False):
        """Returns the reconstruction Phi(x), of x's shape."""
        return self.autoencoder(inputs, training=training)

    def sample_prior(self, batch_size):
        """Draws ``batch_size`` codes from the prior N(0, I), seeded by ``seed``.

        In a replica of a ``tf.distribute`` strategy the replicas' seed streams are
        the same, so each draws the samples of all of them (the one-device draw of
        the global batch) and keeps its own slice: they train on different prior
        samples, as one device would.
        """
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        if replicas == 1:
            return keras.random.normal((batch_size, self.latent_dim),
                                       seed=self.prior_seed_generator)
        samples = keras.random.normal((batch_size * replicas, self.latent_dim),
                                      seed=self.prior_seed_generator)
        start = context.replica_id_in_sync_group * batch_size
        return samples[start:start + batch_size]

    def train_step(self, data):
        """One reconstruction phase and one regularization phase on a batch."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        target = x if y is None else y
        flat = ops.reshape(x, (-1, input_dim(self.data_shape)))

        autoencoder_variables = self._autoencoder_variables()
        with tf.GradientTape() as tape:
            reconstruction = self.autoencoder(x, training=True)
            reconstruction_loss = self.reconstruction_loss(target, reconstruction, sample_weight)
        self.optimizer.apply_gradients(
            zip(tape.gradient(reconstruction_loss, autoencoder_variables), autoencoder_variables))

        fake = self.encoder(flat, training=True)
        batch_size = ops.shape(fake)[0]
        real = self.sample_prior(batch_size)
        codes = ops.concatenate([fake, real], axis=0)
        labels = ops.concatenate([ops.zeros_like(fake[:, :1]), ops.ones_like(real[:, :1])], axis=0)
        # The published trainer fits the discriminator on the B codes and B prior
        # samples with batch size B and Keras's shuffle: two steps on shuffled halves.
        order = keras.random.shuffle(ops.arange(2 * batch_size), seed=self.prior_seed_generator)
        discriminator_variables = self.discriminator.trainable_variables
        discriminator_losses = []
        for half in (order[:batch_size], order[batch_size:]):
            with tf.GradientTape() as tape:
                discriminator_loss = self.adversarial_loss(
                    ops.take(labels, half, axis=0),
                    self.discriminator(ops.take(codes, half, axis=0), training=True))
            self.discriminator_optimizer.apply_gradients(
                zip(tape.gradient(discriminator_loss, discriminator_variables),
                    discriminator_variables))
            discriminator_losses.append(discriminator_loss)
        discriminator_loss = ops.mean(ops.stack(discriminator_losses))

        encoder_variables = self.encoder.trainable_variables
        with tf.GradientTape() as tape:
            judged = self.discriminator(self.encoder(flat, training=True), training=False)
            generator_loss = self.adversarial_loss(ops.ones_like(judged), judged)
        self.generator_optimizer.apply_gradients(
            zip(tape.gradient(generator_loss, encoder_variables), encoder_variables))

        self.reconstruction_tracker.update_state(_unscaled(reconstruction_loss))
        self.discriminator_tracker.update_state(_unscaled(discriminator_loss))
        self.generator_tracker.update_state(_unscaled(generator_loss))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Reconstruction loss on a batch (``evaluate`` reports it as ``loss``)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        target = x if y is None else y
        loss = self.reconstruction_loss(target, self.autoencoder(x, training=False), sample_weight)
        self.reconstruction_tracker.update_state(_unscaled(loss))
        return {"loss": self.reconstruction_tracker.result()}

    def get_config(self):
        """Returns the constructor arguments, so ``.keras`` files round-trip."""
        return {
            "name": self.name,
            "input_shape": self.data_shape,
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "code_activation": self.code_activation,
            "seed": self.seed,
        }

    def get_compile_config(self):
        """Returns the ``compile`` arguments (three optimizers, loss), serialized."""
        if not self.compiled:
            return None
        return {name: keras.saving.serialize_keras_object(value)
                for name, value in self._compile_arguments.items()}

    def compile_from_config(self, config):
        """Compiles from :meth:`get_compile_config`'s output (used by ``load_model``)."""
        self.compile(**{name: keras.saving.deserialize_keras_object(value)
                        for name, value in config.items()})

    def _autoencoder_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables


def build_adversarial(input_shape, latent_dim=2, hidden_units=1000, code_activation="sigmoid",
                      learning_rate=1e-4, seed=None):
    """Builds the compiled adversarial autoencoder trainer of the paper (Section 5.4).

    Args:
        input_shape: Shape of one sample, without the batch axis.
        latent_dim: Size of the code. Default 2 (published).
        hidden_units: Units of the hidden layers. Default 1000 (published).
        code_activation: Activation of the code. Default ``"sigmoid"`` (published).
        learning_rate: Learning rate of the three Adam optimizers. Default 1e-4.
        seed: Integer seed of the initializers and of the prior samples, or ``None``.

    Returns:
        A compiled :class:`AdversarialAutoencoder`; train it with
        ``model.fit(x, x, ...)`` and take Phi as ``model.autoencoder``.
    """
    model = AdversarialAutoencoder(input_shape, latent_dim=latent_dim, hidden_units=hidden_units,
                                   code_activation=code_activation, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  discriminator_optimizer=keras.optimizers.Adam(learning_rate),
                  generator_optimizer=keras.optimizers.Adam(learning_rate))
    return model
