"""What every attack returns, and the batching loop they share."""

import dataclasses

import keras
import numpy as np


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
