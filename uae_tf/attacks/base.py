"""What every attack returns, and the base they share: input checks, batching
(halving the batch on out-of-memory errors), the compiled loop with its XLA
fallback, and ``repr``."""

import abc
import dataclasses
import warnings

import keras
import numpy as np
import tensorflow as tf

from uae_tf import _validation
from uae_tf.attacks import memory


@dataclasses.dataclass
class AttackResult:
    """Per-sample results of an attack on N samples.

    Attributes:
        x_adv: ``[N, ...]`` float32 perturbed samples, in [0, 1] and within epsilon.
        success: ``[N]`` bool, whether ``criterion(x_adv) <= 0``.
        mi: ``[N]`` the similarity (MINE estimate) at the returned example: the best
            among successful iterates, or at the lowest-f iterate when none succeeded.
        f: ``[N]`` the criterion value f_x at the returned example.
        mi_history: ``[N, T]`` the similarity after each iteration.
        c_history: ``[N, T]`` the constant c after each iteration.
    """

    x_adv: np.ndarray
    success: np.ndarray
    mi: np.ndarray
    f: np.ndarray
    mi_history: np.ndarray
    c_history: np.ndarray

    @property
    def attack_success_rate(self):
        """Fraction of samples attacked successfully (the paper's ASR)."""
        return float(np.mean(self.success)) if len(self.success) else 0.0

    def __len__(self):
        return len(self.success)

    @classmethod
    def concatenate(cls, results):
        """Joins results of consecutive batches into one."""
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: np.concatenate([getattr(r, name) for r in results]) for name in fields})


def unoptimized_result(x_adv, f):
    """The :class:`AttackResult` of a method that optimizes nothing (noise, a start).

    ``success`` is ``f <= 0``, ``mi`` NaN and the histories empty.

    Args:
        x_adv: ``[N, ...]`` tensor, the perturbed samples.
        f: ``[N]`` tensor, the criterion there.
    """
    n = len(f)
    f = f.numpy()
    return AttackResult(
        x_adv=x_adv.numpy(),
        success=f <= 0,
        mi=np.full(n, np.nan, np.float32),
        f=f,
        mi_history=np.zeros((n, 0), np.float32),
        c_history=np.zeros((n, 0), np.float32),
    )


def run_in_batches(run_batch, arrays, batch_size, verbose=False):
    """Calls ``run_batch(*batch_arrays)`` over consecutive slices and joins the results.

    Args:
        run_batch: Callable returning an :class:`AttackResult` for one batch.
        arrays: Sequence of arrays (or ``None``) sliced along their first axis.
        batch_size: Samples per call.
        verbose: Whether to show a progress bar (terminal and notebook).
    """
    n = len(arrays[0])
    progbar = keras.utils.Progbar(n, unit_name="sample") if verbose else None
    results = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = [None if a is None else a[start:stop] for a in arrays]
        results.append(run_batch(*batch))
        if progbar is not None:
            progbar.update(stop, [("asr", results[-1].attack_success_rate)])
    return AttackResult.concatenate(results)


class Attack(abc.ABC):
    """Base of the attacks: input checks, batching, the compiled loop and ``repr``.

    A subclass implements ``_settings()`` (its part of ``get_config``),
    ``_run_batch(x, labels, indices)`` (one
    batch of numpy arrays to an :class:`AttackResult`) and, when it has a loop to
    compile, ``_attack_loop(*tensors)``, which it runs by ``_run_loop``. It may
    override ``_build(input_shape)``, called on every call before the batches, and
    ``_memory_estimate(input_shape)``, from which the default batch size on a GPU
    is chosen.

    Args:
        criterion: The attack's criterion: its ``model`` gives the expected sample
            shape and ``needs_labels`` whether labels are required.
        batch_size: Samples per batch; ``None``: chosen at the first call by
            :meth:`resolve_batch_size`. A batch that runs out of device memory is
            halved and retried, and the attack keeps the smaller size.
        seed: Seed of every random choice, an integer in ``[0, 2**31)``; sample i's
            depend on ``(seed, indices[i])``.
        jit_compile: ``True``, ``False`` or ``"auto"`` (XLA when the similarity's
            ops allow it, :meth:`Similarity.compiles_with_xla`, falling back to
            graph mode with a warning when the model does not compile).
        verbose: Show a progress bar.
    """

    def __init__(self, criterion, batch_size, seed, jit_compile, verbose):
        self.criterion = criterion
        self.batch_size = (None if batch_size is None
                           else _validation.check_positive_int(batch_size, "batch_size"))
        self.seed = _validation.check_seed(seed)
        if jit_compile not in (True, False, "auto"):
            raise ValueError(
                f"jit_compile must be True, False or 'auto'. Received: jit_compile={jit_compile!r}"
            )
        self.jit_compile = jit_compile
        self.verbose = bool(verbose)
        self._uses_xla = None
        self._loop = None

    @property
    def uses_xla(self):
        """Whether the loop runs XLA-compiled: ``None`` before the first call; ``False``
        after ``jit_compile="auto"`` fell back to graph mode."""
        return self._uses_xla

    def get_config(self):
        """Returns the attack's settings as a JSON-serializable dict (with ``"attack"``)."""
        return {
            "attack": type(self).__name__,
            **self._settings(),
            "seed": self.seed,
            "jit_compile": self.jit_compile,
        }

    @abc.abstractmethod
    def _settings(self):
        """Returns the subclass's settings for :meth:`get_config`."""

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "attack")
        return f"{type(self).__name__}({settings})"

    def __call__(self, x, labels=None, indices=None):
        """Attacks the samples ``x``.

        Args:
            x: ``[N, ...]`` samples with values in [0, 1].
            labels: ``[N]`` labels for supervised criteria (true classes, or targets
                for a targeted criterion).
            indices: ``[N]`` integer identities of the samples (their rows in the
                dataset); sample i's randomness depends on ``(seed, indices[i])``.
                Default ``range(N)``.

        Returns:
            An :class:`AttackResult`.

        Raises:
            ValueError: if ``x`` is not a batch of samples in [0, 1] of the model's
                input shape, labels are missing where the criterion needs them or
                are not classes of the model, or ``labels`` or ``indices`` do not
                have one entry per sample; or if the criterion (or the similarity)
                comes out NaN or infinite, as for a model with NaN weights.
        """
        x, labels, indices = self._check_inputs(x, labels, indices)
        self._build(x.shape[1:])
        batch_size = self.resolve_batch_size(x.shape[1:])
        result = run_in_batches(self._run_batch_or_halve, [x, labels, indices], batch_size,
                                self.verbose)
        self._check_finite(result, indices)
        return result

    def _check_finite(self, result, indices):
        """Raises a ValueError if the result holds NaN or infinity where numbers belong.

        A model with non-finite weights or outputs makes f NaN, which no comparison
        marks successful: without this check its run would read as "ASR 0%".
        ``mi`` is checked for attacks with a similarity (it is NaN by design for
        the noise and start baselines).
        """
        fields = {"f": result.f, "x_adv": result.x_adv.reshape(len(result), -1)}
        if getattr(self, "similarity", None) is not None:
            fields["mi"] = result.mi
        for name, values in fields.items():
            bad = ~np.isfinite(values)
            if bad.ndim > 1:
                bad = bad.any(axis=1)
            if bad.any():
                raise ValueError(
                    f"{type(self).__name__} computed a NaN or infinite {name} for "
                    f"{int(bad.sum())} of {len(bad)} samples (indices "
                    f"{indices[bad][:5].tolist()}{'...' if bad.sum() > 5 else ''}): the model "
                    "returns non-finite outputs (are its weights finite?)."
                )

    def resolve_batch_size(self, input_shape):
        """Returns ``batch_size``, setting it first if it was left to the attack.

        The default is :func:`uae_tf.attacks.memory.default_batch_size` of the
        attack's memory estimate for samples of ``input_shape``: on a CPU 16 for
        cache-sized statistics networks (the random view's), else 1; on a GPU as
        many samples as its free memory holds, up to 512 (32 when unknown).

        Args:
            input_shape: Shape of one sample.
        """
        if self.batch_size is None:
            self._build(tuple(input_shape))
            self.batch_size = memory.default_batch_size(
                lambda: self._memory_estimate(tuple(input_shape)))
        return self.batch_size

    def _memory_estimate(self, input_shape):
        """The attack's :class:`~uae_tf.attacks.memory.MemoryEstimate`, or ``None``."""
        del input_shape

    def _run_batch_or_halve(self, x, labels, indices):
        """``_run_batch`` in slices of ``batch_size``, halving it on out-of-memory errors.

        A slice that runs out of device memory is retried in two halves, and
        ``batch_size`` stays halved for the slices and calls that follow; results
        do not depend on it. At one sample the error is raised again, saying so.
        """
        results, start, n = [], 0, len(x)
        while start < n:
            stop = min(start + self.batch_size, n)
            try:
                results.append(self._run_batch(
                    x[start:stop], None if labels is None else labels[start:stop],
                    indices[start:stop]))
            except tf.errors.OpError as error:
                if not memory.is_out_of_memory(error):
                    raise
                if stop - start == 1:
                    raise type(error)(
                        error.node_def, error.op,
                        f"{type(self).__name__} ran out of device memory on a batch of one "
                        "sample; it needs a device with more memory (see "
                        f"uae_tf.attacks.estimate_attack_memory). ({error.message})",
                    ) from error
                self.batch_size = (stop - start) // 2
                warnings.warn(
                    f"{type(self).__name__} ran out of device memory on a batch of "
                    f"{stop - start} samples; retrying them, and attacking from now on, in "
                    f"batches of {self.batch_size}. Results do not depend on the batch size."
                )
                continue
            start = stop
        return AttackResult.concatenate(results)

    def _build(self, input_shape):
        """Makes what depends on the samples' shape (nothing by default)."""

    def _check_inputs(self, x, labels, indices):
        model = self.criterion.model
        expected = None
        if model is not None and getattr(model, "inputs", None):
            expected = tuple(model.inputs[0].shape[1:])
        x = _validation.check_images(x, "x", expected)
        n = len(x)
        if labels is None and self.criterion.needs_labels:
            raise ValueError(
                f"{type(self).__name__} with {type(self.criterion).__name__} needs labels, "
                "one per sample: true classes, or targets if targeted."
            )
        if labels is not None:
            labels = _one_per_sample(labels, "labels", n)
        if self.criterion.needs_labels:
            labels = labels.astype(np.int32)
            num_classes = getattr(model, "output_shape", (None,))[-1]
            if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
                raise ValueError(
                    f"labels must be classes in [0, {num_classes}). Received labels in "
                    f"[{labels.min()}, {labels.max()}]"
                )
        if indices is None:
            indices = np.arange(n)
        else:
            indices = _one_per_sample(indices, "indices", n)
            if indices.dtype.kind not in "iu" or not np.all(
                    (indices >= 0) & (indices < _validation.SEED_LIMIT)):
                raise ValueError(
                    f"indices must be integers in [0, {_validation.SEED_LIMIT - 1}] (they seed "
                    f"the samples). Received: {indices.dtype} indices in "
                    f"[{indices.min()}, {indices.max()}]"
                )
        return x, labels, indices

    def _run_loop(self, *args):
        """Runs ``_attack_loop(*args)`` compiled: with XLA or in graph mode.

        XLA with ``jit_compile=True``; with ``"auto"`` when the similarity's ops
        allow it (:meth:`Similarity.compiles_with_xla`), and a loop XLA cannot
        compile is compiled again in graph mode, once, with a warning; ``uses_xla``
        says which ran.
        """
        if self._loop is None:
            allowed = self._compiles_with_xla()
            self._compile(self.jit_compile is True or (self.jit_compile == "auto" and allowed))
        try:
            return self._loop(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if not (self._uses_xla and self.jit_compile == "auto" and "XLA" in str(error)):
                raise
            warnings.warn(
                f"The {type(self).__name__} loop does not compile with XLA for this model; "
                "running it in plain graph mode (slower). Set jit_compile=False to skip the "
                f"try. ({error})"
            )
            self._compile(False)
            return self._loop(*args)

    def _compiles_with_xla(self):
        """Whether the loop's ops allow XLA (``True``; attacks with a similarity ask it)."""
        similarity = getattr(self, "similarity", None)
        return True if similarity is None else similarity.compiles_with_xla(self.jit_compile)

    def _compile(self, xla):
        self._uses_xla = xla
        self._loop = tf.function(self._attack_loop, jit_compile=xla, reduce_retracing=True)


def _one_per_sample(values, name, n):
    """Returns ``values`` flattened, or raises unless it has ``n`` entries."""
    values = np.asarray(values).reshape(-1)
    if len(values) != n:
        raise ValueError(
            f"{name} must have {n} entries, one per sample. Received: {len(values)} {name}"
        )
    return values
