"""UAE augmentation for ``model.fit``: a ``keras.utils.PyDataset`` and a regeneration callback.

The paper's recipe (Section 5.4): every training sample gets one adversarial
example; where the attack failed, the sample is *replicated* instead ("to keep
balance"); the model is trained from scratch on the originals plus these. Gaussian
augmentation (GA) uses every noisy sample, a UAE or not.

:class:`UAESequence` serves that training set, 2N samples, in shuffled batches
(or (k + 1)N with k augmentations per sample, as appendix H's second run, or the N
originals alone); :class:`UAERegeneration` re-attacks the current model every k
epochs and swaps the new examples into the sequence. :class:`ConventionalAugmentation`
is Table 5's flip, rotation and Gaussian noise, applied to each batch on the fly.

Example:

>>> results = uae_tf.load_results("runs/uae")                    # doctest: +SKIP
>>> sequence = UAESequence.from_results(x_train, results, batch_size=100, seed=0)  # doctest: +SKIP
>>> model.fit(sequence, epochs=30)                                # doctest: +SKIP
"""

import math
import tempfile
from pathlib import Path

import keras
import numpy as np

import autoencoders
from uae_tf import _validation
from uae_tf.generation import GenerationResults, generate

# Batches Keras reads before training to learn the output signature
# (keras.src.trainers.data_adapters.data_adapter_utils.NUM_BATCHES_FOR_TENSOR_SPEC).
_PEEKED_BATCHES = 2

# Methods whose failures are replaced by their originals; GA uses every sample.
_REPLACES_FAILURES = {"mine": True, "l2": True, "gaussian": False, "start": True}


def augmentation_pool(x, x_aug, success=None):
    """The augmentation half of the training set: ``x_aug`` with failures replaced by ``x``.

    Args:
        x: ``[N, ...]`` originals in [0, 1].
        x_aug: ``[N, ...]`` their augmentations (UAEs), row i made from ``x[i]``.
        success: ``[N]`` bool; rows where it is False get ``x[i]`` instead of
            ``x_aug[i]``. ``None`` uses every row of ``x_aug``.

    Returns:
        ``[N, ...]`` float32.
    """
    x = _validation.check_images(x, "x")
    x_aug = _validation.check_images(x_aug, "x_aug", x.shape[1:])
    if len(x_aug) != len(x):
        raise ValueError(
            f"x_aug must have one row per original: {len(x)} expected. Received {len(x_aug)}"
        )
    if success is None:
        return x_aug
    success = np.asarray(success).reshape(-1)
    if success.dtype != bool or len(success) != len(x):
        raise ValueError(
            f"success must be {len(x)} booleans, one per original. Received dtype "
            f"{success.dtype} and {len(success)} entries"
        )
    mask = success.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(mask, x_aug, x)


def align_results(results, n, indices=None):
    """Puts generation results in the order of N training samples.

    Args:
        results: A :class:`uae_tf.generation.GenerationResults`.
        n: Number of training samples.
        indices: ``[n]`` dataset rows of the training samples (default
            ``range(n)``), matched against ``results.index``.

    Returns:
        ``(x_adv, success, covered)`` of ``n`` rows in the training samples'
        order; a sample the results do not cover (``covered`` False) counts as
        failed, so that augmentation replicates it.
    """
    indices = np.arange(n) if indices is None else np.asarray(indices).reshape(-1)
    if len(indices) != n:
        raise ValueError(f"indices must have {n} entries. Received {len(indices)}")
    position = {int(i): p for p, i in enumerate(results.index.reshape(-1))}
    rows = np.array([position.get(int(i), -1) for i in indices])
    covered = rows >= 0
    out = np.zeros((n,) + results.x_adv.shape[1:], np.float32)
    out[covered] = results.x_adv[rows[covered]]
    success = np.zeros(n, bool)
    success[covered] = np.asarray(results.success, bool)[rows[covered]]
    return out, success, covered


class ConventionalAugmentation:
    """Table 5's conventional augmentations: flips, a small rotation, Gaussian noise.

    Keras preprocessing layers (``RandomFlip("horizontal")``, ``RandomFlip("vertical")``,
    ``RandomRotation``) and ``keras.random.normal``, applied to a batch with seeds
    drawn from the ``seed`` the caller passes, so a batch's transformation depends
    on that seed alone (stateless: the layers' own seed generators are not used).
    Appendix F: rotation angle 10 degrees, "both horizontal and vertical flip" (each
    with probability 1/2, independently, as Keras 2's ``ImageDataGenerator`` did),
    noise sigma 0.001. Rotation fills with the nearest pixel (``ImageDataGenerator``'s
    default); noisy pixels are clipped to [0, 1] as in GA.

    Args:
        flip: Flip each sample horizontally and, independently, vertically, each
            with probability 1/2.
        rotation: Largest rotation in degrees; each sample turns by an angle drawn
            uniformly from [-rotation, rotation]. 0: none.
        noise: Standard deviation sigma of additive Gaussian noise. 0: none.

    Example:

    >>> augment = ConventionalAugmentation(flip=True, rotation=10)
    >>> batch = augment(x[:100], seed=(0, 3, 7))  # doctest: +SKIP
    """

    def __init__(self, flip=False, rotation=0.0, noise=0.0):
        self.flip = bool(flip)
        self.rotation = float(rotation)
        self.noise = float(noise)
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in [0, 180] degrees. Received: rotation={rotation!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a standard deviation >= 0. Received: noise={noise!r}")
        self._layers = []
        if self.flip:
            self._layers += [keras.layers.RandomFlip("horizontal"),
                             keras.layers.RandomFlip("vertical")]
        if self.rotation:
            self._layers.append(keras.layers.RandomRotation(self.rotation / 360.0,
                                                            fill_mode="nearest"))

    def __call__(self, x, seed):
        """Returns the transformed batch, ``[B, H, W, C]`` float32 in [0, 1].

        Args:
            x: ``[B, H, W, C]`` images in [0, 1].
            seed: An integer or a sequence of integers (e.g. ``(seed, epoch,
                batch)``): the same seed gives the same transformation.
        """
        seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, len(self._layers) + 1)
        x = keras.ops.convert_to_tensor(np.asarray(x, np.float32))
        for layer, layer_seed in zip(self._layers, seeds):
            transformation = layer.get_random_transformation(x, training=True,
                                                             seed=int(layer_seed))
            x = layer.transform_images(x, transformation, training=True)
        if self.noise:
            x = x + keras.random.normal(keras.ops.shape(x), stddev=self.noise, seed=int(seeds[-1]))
        return np.clip(keras.ops.convert_to_numpy(x), 0.0, 1.0).astype(np.float32)

    def get_config(self):
        """The settings, JSON-serializable (``ConventionalAugmentation(**config)`` rebuilds it)."""
        return {"flip": self.flip, "rotation": self.rotation, "noise": self.noise}

    def __repr__(self):
        return f"ConventionalAugmentation(flip={self.flip}, rotation={self.rotation:g}, noise={self.noise:g})"


class UAESequence(keras.utils.PyDataset):
    """Batches of originals plus their augmentations, for ``model.fit``.

    Serves ``2N`` samples: the N originals and their N augmentations (a failed UAE
    replaced by its original), shuffled each epoch by a permutation drawn from
    ``(seed, epoch)``. Batches are ``(inputs, targets)`` with ``targets = inputs``
    for an autoencoder, or the labels ``y`` (copied to the augmentations) when
    given. With k augmentations per original (``x_aug`` of kN rows, appendix H's
    two runs) it serves (k + 1)N samples; with ``x_aug=None`` the N originals alone.
    A ``transform`` (a :class:`ConventionalAugmentation`) is applied to every batch
    with the seed ``(seed, epoch, batch)``, before the targets are copied from it.

    The sequence shuffles its rows itself, so pass ``shuffle=False`` to
    ``model.fit`` (as :func:`uae_tf.retrain` does) for a run that the seed alone
    determines. Keras 3's ``fit`` defaults to ``shuffle=True``, which for a
    ``PyDataset`` permutes the order of the batches with Python's global ``random``
    state: the batches are the same, their order is then reproducible only after
    ``random.seed`` (``keras.utils.set_random_seed`` sets it).

    Each batch is assembled once per epoch. Keras reads the first two batches
    before training to learn their shapes; those are kept and handed out when the
    first epoch asks for them, so the peek costs nothing. Under a
    ``tf.distribute`` strategy (see :mod:`uae_tf.distribution`) Keras then reads
    on, in an epoch of its own, to build the model before training; that
    read-through is not counted as an epoch and its batches are kept too, so the
    first training epoch still gets epoch 0's shuffle and each batch is assembled
    once, as on one device. Each global batch is then split across the replicas.

    Args:
        x: ``[N, ...]`` originals in [0, 1].
        x_aug: ``[kN, ...]`` k augmentations per original, row ``j * N + i`` made
            from ``x[i]`` (usually k = 1), or ``None``: the originals alone.
        success: ``[kN]`` bool or ``None``: failed rows are replaced by originals
            (``None``: use every row, as for GA).
        y: ``[N]`` labels, or ``None`` for autoencoders.
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Shuffle the rows every epoch, by a permutation drawn from ``(seed,
            epoch)``. Independent of ``fit``'s ``shuffle``, which permutes the
            batch order with the global ``random`` state (see above).
        seed: Seed of the shuffling and of ``transform``.
        transform: ``None``, or a callable ``transform(batch, seed)`` such as
            :class:`ConventionalAugmentation`, applied to each batch's inputs.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.
    """

    def __init__(self, x, x_aug, success=None, y=None, batch_size=100, shuffle=True, seed=0,
                 transform=None, **kwargs):
        super().__init__(**kwargs)
        self.x = _validation.check_images(x, "x")
        if len(self.x) == 0:
            raise ValueError("x is empty: UAESequence needs at least one training sample.")
        self.labels = None if y is None else np.asarray(y)
        if self.labels is not None and len(self.labels) != len(self.x):
            raise ValueError(f"y must have {len(self.x)} entries. Received {len(self.labels)}")
        self.transform = transform
        self.batch_size = _validation.check_positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        self.seed = _validation.check_seed(seed)
        self.epoch = 0
        self.batches_built = 0  # Counts batch assemblies (one per batch per epoch).
        self._kept = {}
        self._served = 0  # Batches handed out this epoch (in this process).
        self._in_epoch = False  # Between Keras' on_epoch_begin and on_epoch_end.
        self._peek_ended = False  # Keras ended the peek with an on_epoch_end of its own.
        self._rehearsal = False  # In the read-through a distributed fit makes first.
        self._order = None
        self._order_epoch = None
        self.set_augmentation(x_aug, success)

    @classmethod
    def from_results(cls, x, results, indices=None, **kwargs):
        """Builds the sequence from a finished generation.

        Failed UAEs (``mine``, ``l2``) are replaced by their originals; GA
        (``gaussian``) uses every noisy sample.

        Args:
            x: ``[N, ...]`` the training originals.
            results: A :class:`uae_tf.generation.GenerationResults`, from
                :func:`uae_tf.load_results` or :func:`uae_tf.generate`, or a list
                of them (k augmentations per original, as appendix H's two runs).
            indices: ``[N]`` dataset rows of ``x`` (default ``range(N)``); samples
                the results do not cover are replicated.
            **kwargs: Passed to :class:`UAESequence`.

        Raises:
            TypeError: if ``results`` is not a ``GenerationResults`` (a path, say:
                load it with :func:`uae_tf.load_results`).
        """
        several = isinstance(results, (list, tuple))
        for one in results if several else [results]:
            if not isinstance(one, GenerationResults):
                raise TypeError(
                    "results must be a GenerationResults (uae_tf.load_results(path)) or a "
                    f"list of them. Received: {type(one).__name__}"
                )
        x = _validation.check_images(x, "x")
        x_aug, success = [], []
        for one in results if several else [results]:
            rows, succeeded, covered = align_results(one, len(x), indices)
            x_aug.append(rows)
            success.append(succeeded if _REPLACES_FAILURES[one.method] else covered)
        return cls(x, np.concatenate(x_aug), np.concatenate(success), **kwargs)

    def set_augmentation(self, x_aug, success=None):
        """Replaces the augmentations (e.g. with UAEs of the current model).

        Args:
            x_aug: ``[kN, ...]`` k augmentations per original, or ``None`` for none.
            success: ``[kN]`` bool or ``None`` (see :class:`UAESequence`).
        """
        copies = 0 if x_aug is None else len(x_aug) // len(self.x)
        if x_aug is None:
            self.x_pool = self.x
        else:
            if copies == 0 or len(x_aug) % len(self.x):
                raise ValueError(
                    f"x_aug must have k * {len(self.x)} rows: one row per original for each "
                    f"of k augmentations. Received {len(x_aug)}"
                )
            originals = np.concatenate([self.x] * copies)
            self.x_pool = np.concatenate([self.x, augmentation_pool(originals, x_aug, success)])
        self.y = None if self.labels is None else np.concatenate([self.labels] * (copies + 1))
        self._kept.clear()

    @property
    def num_samples(self):
        """(k + 1)N: originals plus k augmentations each (2N for one UAE each)."""
        return len(self.x_pool)

    def __len__(self):
        return math.ceil(self.num_samples / self.batch_size)

    def _permutation(self):
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range [0, {len(self)})")
        self._served += 1
        key = (self.epoch, index)
        if key in self._kept:
            batch = self._kept[key] if self._rehearsal else self._kept.pop(key)
        else:
            batch = self._assemble(index)
            if index < _PEEKED_BATCHES or self._rehearsal:
                # Keras builds these to learn the output signature (or the model),
                # then asks again.
                self._kept[key] = batch
        if self._rehearsal:
            # Kept for epoch 0, so handed out now as a copy: TensorFlow must not get
            # one array twice (see _assemble).
            return tuple(np.copy(part) for part in batch)
        return batch

    def _assemble(self, index):
        """Builds batch ``index`` of the current epoch: ``(inputs, targets)``."""
        if self._order_epoch != self.epoch:
            self._order, self._order_epoch = self._permutation(), self.epoch
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.x_pool[rows]
        if self.transform is not None:
            x = self.transform(x, seed=(self.seed, self.epoch, index))
        self.batches_built += 1
        # Autoencoder targets are a copy, not the inputs' array: under tf.distribute
        # TensorFlow may take over the memory of the arrays a batch hands it, and
        # with one array behind inputs and targets, it overwrote one with other data
        # (measured: batches changed after serving, trajectories that differed from
        # run to run).
        return x, (np.copy(x) if self.y is None else self.y[rows])

    def _only_peeked(self):
        """Whether the batches served since the last epoch are the kept ones Keras peeked at."""
        return not self._in_epoch and self._served > 0 and self._served == len(self._kept)

    def on_epoch_begin(self):
        """Called by Keras when an epoch starts.

        On one device Keras closes the peek with an ``on_epoch_end`` first; under a
        ``tf.distribute`` strategy it begins an epoch straight after the peek, reads
        batches from it to build the model (Keras' TF trainer,
        ``_maybe_symbolic_build``) and ends it before training: that read-through
        is not a training epoch.
        """
        self._rehearsal = self._only_peeked() and not self._peek_ended
        self._in_epoch = True

    def on_epoch_end(self):
        """Moves to the next epoch's shuffle.

        Keras also calls this once before training, right after reading the first
        batches for their shapes (or, under a ``tf.distribute`` strategy, after
        reading on to build the model); an epoch that served nothing but those
        batches is not over, so they stay valid for the first real epoch.
        """
        if self._rehearsal:
            self._rehearsal = False
            self._in_epoch = False
            self._served = len(self._kept)
            self._peek_ended = True
            return
        if self._only_peeked():
            self._peek_ended = True
            return
        self._in_epoch = False
        self.epoch += 1
        self._served = 0
        self._peek_ended = False
        self._kept.clear()

class UAERegeneration(keras.callbacks.Callback):
    """Re-attacks the model being trained every ``every`` epochs (appendix H, "second run").

    After epochs ``every``, ``2 * every``, ... (but not after the last one) it makes
    new augmentations of the sequence's originals against the current
    reconstruction model with :func:`uae_tf.generate` and swaps them into the
    sequence, so the following epochs train on UAEs of the model as it is now.
    Regeneration ``r`` (r = 1, 2, ...) uses seed ``seed + r``.

    Args:
        sequence: The :class:`UAESequence` passed to ``model.fit``.
        every: Regenerate every this many epochs.
        indices: Dataset rows of the sequence's originals (their seeds); default
            ``range(N)``.
        out: Directory to keep each regeneration's results in
            (``OUT/regeneration-R``, resumable); default a temporary directory.
        method: ``"mine"``, ``"l2"``, ``"gaussian"`` or ``"start"`` (see
            :func:`uae_tf.generate`).
        seed: Base seed.
        verbose: Print one line per regeneration.
        **generate_kwargs: Passed to :func:`uae_tf.generate` (``preset``, ``view``,
            ``batch_size``, ``initial_perturbation``...).

    Attributes:
        history: One dict per regeneration: ``epoch``, ``asr``, ``seconds``.
    """

    def __init__(self, sequence, every, indices=None, out=None, method="mine", seed=0,
                 verbose=1, **generate_kwargs):
        super().__init__()
        if not isinstance(sequence, UAESequence):
            raise TypeError(
                f"sequence must be a UAESequence. Received: {type(sequence).__name__}"
            )
        self.sequence = sequence
        self.every = _validation.check_positive_int(every, "every")
        self.indices = indices
        self.out = out
        self.method = method
        self.seed = _validation.check_seed(seed)
        self.verbose = verbose
        self.generate_kwargs = generate_kwargs
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every or done >= self.params.get("epochs", math.inf):
            return
        phi = autoencoders.reconstruction_model(self.model)
        regeneration = len(self.history) + 1
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(self.out or scratch) / f"regeneration-{regeneration}"
            results = generate(
                phi, self.sequence.x, out, indices=self.indices, method=self.method,
                seed=self.seed + regeneration, verbose=False,
                config={"regeneration": regeneration, "epoch": done}, **self.generate_kwargs,
            )
        summary = results.summary
        success = results.success if _REPLACES_FAILURES[self.method] else None
        self.sequence.set_augmentation(results.x_adv, success)
        self.history.append({"epoch": done, "asr": summary["asr"], "seconds": summary["seconds"]})
        if self.verbose:
            print(
                f"UAERegeneration: epoch {done}, new {self.method} augmentations of "
                f"{summary['n']} samples, ASR {summary['asr']:.1%}, {summary['seconds']:.1f} s"
            )
