"""What the experiments share to report: progress lines, distances, markdown, figures.

Figures are ``matplotlib.figure.Figure`` objects drawn without pyplot, so an
experiment never touches pyplot's global backend or figure list: it runs the same
in a terminal without a display and inside a notebook.
"""

import numpy as np
from matplotlib.figure import Figure

from uae_tf._io import write_json_atomic, write_text_atomic

MISSING = "–"

REPORT_FILE = "report.json"


def printer(verbose):
    """Returns ``print`` (flushed at once) when ``verbose``, else a function doing nothing."""
    if not verbose:
        return lambda *args: None
    return lambda *args: print(*args, flush=True)


def distances(x, x_adv):
    """Per-sample L2 and L-infinity distances of ``x_adv`` from ``x``.

    Returns:
        A dict of two ``[N]`` arrays, ``"l2"`` and ``"linf"``.
    """
    delta = (np.asarray(x_adv) - np.asarray(x)).reshape(len(x), -1)
    return {"l2": np.linalg.norm(delta, axis=1), "linf": np.abs(delta).max(axis=1)}


def mean_or_none(values):
    """The mean of ``values`` as a float, or ``None`` when there are none."""
    return float(np.mean(values)) if len(values) else None


def cell(value, spec):
    """Formats ``value`` for a table cell with ``spec``; ``None`` becomes a dash."""
    return MISSING if value is None else format(value, spec)


def markdown_table(header, rows):
    """Returns the lines of a markdown table.

    Args:
        header: Column titles.
        rows: One sequence of already formatted cells per row.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def new_figure(**kwargs):
    """Returns a ``matplotlib.figure.Figure`` (Agg canvas), without pyplot.

    Args:
        **kwargs: Passed to ``Figure`` (``figsize``, ``layout``...).
    """
    return Figure(**kwargs)


def plot_asr_against_epsilon(path, rows, models, title):
    """Saves ASR against epsilon, one line per model (the paper's Figure 10).

    Args:
        path: Where the PNG goes.
        rows: Dicts with ``model``, ``epsilon`` and ``asr``.
        models: ``{model key: legend label}``, in drawing order.
        title: The figure's title.
    """
    fig = new_figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, label in models.items():
        points = [(r["epsilon"], r["asr"]) for r in rows if r["model"] == name]
        ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xlabel("ε (L∞ bound of the attack)")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=120)


def plot_grouped_bars(path, groups, series, title, ylabel="test reconstruction error",
                      reference=None):
    """Saves a bar chart: one group of bars per entry of ``groups``, one bar per series.

    Args:
        path: Where the PNG goes.
        groups: Group labels, along the x axis.
        series: ``{legend label: [one value per group, or None]}``, in drawing order.
        title: The figure's title.
        ylabel: The y axis' label.
        reference: ``(label, value)`` drawn as a horizontal dashed line, or ``None``.
    """
    fig = new_figure(figsize=(max(5.0, 1.6 * len(groups) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        at = [g + (k - (len(series) - 1) / 2) * width for g, v in enumerate(values) if v is not None]
        ax.bar(at, [v for v in values if v is not None], width, label=label)
    if reference is not None:
        ax.axhline(reference[1], color="0.3", ls="--", lw=1, label=reference[0])
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def write_report(out, report, markdown):
    """Writes ``out/report.json`` and ``out/report.md``, each atomically."""
    write_json_atomic(out / REPORT_FILE, report)
    write_text_atomic(out / "report.md", markdown)
