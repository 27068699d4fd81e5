"""Figures: learning curves (seaborn) from the tidy evaluation table, rliable's aggregate plots, atomic files.

Every figure of a results directory is written as PNG and PDF (``FIGURE_FORMATS``), each to a hidden
temporary renamed into place, so a reader never sees a half-written file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from rliable import plot_utils  # noqa: E402

from harness.reporting.aggregate import PAIR_SEPARATOR, STATISTICS, Aggregates  # noqa: E402
from harness.reporting.report import METRIC_TEXT, metric_values  # noqa: E402

FIGURE_FORMATS = ("png", "pdf")
CURVE_SEED = 0  # seaborn bootstraps the learning curves' CI bands; fixed so figures regenerate identically

# One readable name and one colour per algorithm, the same in every figure (a test keeps this complete).
# Other labels (a suite's own names, e.g. "fql-a3") keep their text and take the unused colours in turn.
ALGORITHM_NAMES = {
    "bc": "BC", "cac": "CAC", "diffusion_ql": "Diffusion-QL", "fawac": "FAWAC", "fbrac": "FBRAC", "flow_bc": "flow BC",
    "flowq": "FlowQ", "fql": "FQL", "idql": "IDQL", "ifql": "IFQL", "iql": "IQL", "qipo": "QIPO",
    "qipo_diff": "QIPO-Diff", "rebrac": "ReBRAC", "srpo": "SRPO",
}
# tab10, then five colours far from all of its hues (black, gold, navy, teal, maroon): 15 algorithms, no two
# alike; suite labels beyond them take Dark2's and Set1's.
PALETTE = (sns.color_palette("tab10") + sns.color_palette(["#000000", "#f5c710", "#1a2a80", "#00796b", "#7a1f3d"])
           + sns.color_palette("Dark2") + sns.color_palette("Set1"))
# Algorithms per learning-curve panel: beyond about six, lines and their bands cannot be told apart.
MAX_LINES = 6
AXIS_MARGIN = 0.05  # of the data's range on each side, so no mark sits on an axis edge


def display_name(label: str) -> str:
    return ALGORITHM_NAMES.get(label, label)


def algorithm_colors(labels: list[str]) -> dict[str, tuple[float, float, float]]:
    """Display name → colour for ``labels`` (algorithm names or suite labels): fixed per algorithm."""
    colors = {name: PALETTE[i] for i, name in enumerate(ALGORITHM_NAMES.values())}
    spare = PALETTE[len(colors):]
    others = sorted({display_name(label) for label in labels} - set(colors))
    colors.update({name: spare[i % len(spare)] for i, name in enumerate(others)})
    return {display_name(label): colors[display_name(label)] for label in labels}


def figure_order(labels: list[str]) -> list[str]:
    """Display names in one fixed order: registered algorithms as listed above, then other labels."""
    known = list(ALGORITHM_NAMES.values())
    names = {display_name(label) for label in labels}
    return [n for n in known if n in names] + sorted(names - set(known))


def learning_curves(evals: pd.DataFrame, stem: Path, metric: str = "normalized_score") -> list[Path]:
    """``learning_curve_grid`` written as ``stem``.png and .pdf."""
    return save_figures(learning_curve_grid(evals, metric).figure, stem)


def learning_curve_grid(evals: pd.DataFrame, metric: str = "normalized_score") -> sns.FacetGrid:
    """One panel per dataset: ``metric`` against training step, a line per algorithm (mean, 95% CI over seeds).

    Every evaluation is drawn, unfinished runs' too: a point is the mean over the seeds evaluated at that step. More
    than ``MAX_LINES`` algorithms are split over rows of panels, ``MAX_LINES`` a row, in ``figure_order``.
    """
    data = evals.assign(value=metric_values(evals, metric), algorithm=evals["algo"].map(display_name))
    order = figure_order(list(data["algo"]))
    sns.set_theme(style="whitegrid", context="paper")
    datasets = data["dataset"].nunique()
    if len(order) > MAX_LINES:
        data = data.assign(group=data["algorithm"].map({name: i // MAX_LINES + 1 for i, name in enumerate(order)}))
        facets = {"row": "group"}
    else:
        facets = {"col_wrap": min(datasets, 4)}
    grid = sns.relplot(data=data, x="step", y="value", hue="algorithm", hue_order=order,
                       palette=algorithm_colors(list(data["algo"].unique())), col="dataset", kind="line", marker="o",
                       errorbar=("ci", 95), seed=CURVE_SEED, facet_kws={"sharey": False, "sharex": False},
                       height=3.2, aspect=1.25, **facets)
    grid.set_titles("{col_name}" if "row" not in facets else "{col_name}, group {row_name}")
    grid.set_axis_labels("training step", METRIC_TEXT[metric])
    return grid


def aggregate_intervals(result: Aggregates, stem: Path) -> list[Path]:
    """rliable's interval plot: IQM, mean, median, optimality gap per algorithm with their 95% CIs."""
    order = sorted(result.algorithms, key=lambda a: result.estimates[a][0])
    # an algorithm without an interval (one run per task) is drawn as its point estimate alone
    intervals = {display_name(a): np.vstack([result.estimates[a]] * 2) if result.intervals[a] is None
                 else result.intervals[a] for a in order}
    estimates = {display_name(a): result.estimates[a] for a in order}
    no_interval = any(result.intervals[a] is None for a in order)
    xlabel = METRIC_TEXT[result.metric] + (" (a dot alone: one run per task, no interval)" if no_interval else "")
    colors = algorithm_colors(order)
    row_height = max(0.37, 1.6 / len(order))
    # rliable places the label in figure coordinates: keep it about 0.65 inch below the axes at any height
    label_y = 0.11 - 0.65 / (row_height * len(order))
    figure, axes = plot_utils.plot_interval_estimates(estimates, intervals, list(STATISTICS),
                                                      algorithms=[display_name(a) for a in order], colors=colors,
                                                      xlabel=xlabel, xlabel_y_coordinate=label_y, row_height=row_height)
    for i, ax in enumerate(np.atleast_1d(axes)):  # room around the extreme marks
        values = np.concatenate([np.ravel(v[:, i]) for v in intervals.values()]
                                + [[e[i] for e in estimates.values()]])
        low, high = float(values.min()), float(values.max())
        pad = AXIS_MARGIN * ((high - low) or max(abs(high), 1.0))
        ax.set_xlim(low - pad, high + pad)
        for row, algo in enumerate(order):
            if result.intervals[algo] is None:
                mark_point(ax, result.estimates[algo][i], row, colors[display_name(algo)])
    return save_figures(figure, stem)


def mark_point(ax: plt.Axes, x: float, row: int, color) -> None:
    """The algorithm's colour on an estimate that has no interval (rliable colours only the interval's bar,
    which is empty then, and draws the estimate grey)."""
    ax.plot([x], [row], marker="o", markersize=6, color=color, zorder=3, clip_on=False)


def performance_profile(result: Aggregates, stem: Path) -> list[Path]:
    """Fraction of runs scoring above τ, per algorithm, with bootstrap bands where there are several runs."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    profiles = {display_name(a): v for a, v in result.profiles.items()}
    bands = None if result.profile_bands is None else {display_name(a): v for a, v in result.profile_bands.items()}
    plot_utils.plot_performance_profiles(profiles, result.taus, performance_profile_cis=bands, ax=ax,
                                         colors=algorithm_colors(list(result.profiles)),
                                         xlabel=rf"{METRIC_TEXT[result.metric]} ($\tau$)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return save_figures(figure, stem)


def probability_of_improvement(result: Aggregates, stem: Path) -> list[Path]:
    """P(X > baseline) for every other algorithm X, with 95% CIs (none drawn where there is one run per task)."""
    order = sorted(result.improvement, key=lambda x: result.improvement[x])
    baseline = display_name(result.baseline)
    pairs = {f"{display_name(x)}{PAIR_SEPARATOR}{baseline}": result.improvement[x] for x in order}
    intervals = {f"{display_name(x)}{PAIR_SEPARATOR}{baseline}": np.array([result.improvement[x]] * 2)
                 if result.improvement_intervals[x] is None else result.improvement_intervals[x] for x in order}
    colors = algorithm_colors(order)
    figure, ax = plt.subplots(figsize=(4.5, max(2.0, 0.45 * len(order))))
    plot_utils.plot_probability_of_improvement(pairs, intervals, pair_separator=PAIR_SEPARATOR, ax=ax,
                                               colors=[colors[display_name(x)] for x in order],
                                               xlabel=f"P(X > {baseline})", xticks=[0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlim(-AXIS_MARGIN, 1 + AXIS_MARGIN)  # a probability of 0 or 1 is drawn inside the frame
    for row, x in enumerate(order):
        if result.improvement_intervals[x] is None:
            mark_point(ax, result.improvement[x], row, colors[display_name(x)])
    return save_figures(figure, stem)


def plot_results(evals: pd.DataFrame, result: Aggregates | None, out: Path,
                 metric: str = "normalized_score") -> list[Path]:
    """Learning curves and, given aggregates, the aggregate plots under ``out``; the paths written."""
    paths = learning_curves(evals, out / "learning_curves", metric)
    if result is not None:
        paths += aggregate_intervals(result, out / "aggregate_intervals")
        paths += performance_profile(result, out / "performance_profile")
        if result.improvement:
            paths += probability_of_improvement(result, out / "probability_of_improvement")
    return paths


def save_figures(figure: plt.Figure, stem: Path, formats: tuple[str, ...] = FIGURE_FORMATS,
                 dpi: int = 150) -> list[Path]:
    """Writes ``figure`` as ``stem.<format>`` for each format, atomically, and closes it."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            tmp = path.with_name(f".{stem.name}.tmp.{fmt}")
            # no creation date in PDFs: a regenerated figure is byte-identical when nothing changed
            figure.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
            tmp.replace(path)
            paths.append(path)
    finally:
        plt.close(figure)
    return paths


def save_figure(figure: plt.Figure, path: Path, dpi: int = 150) -> Path:
    """Writes ``figure`` to ``path`` (its suffix is the format) atomically and closes it."""
    return save_figures(figure, path.with_suffix(""), (path.suffix.lstrip("."),), dpi)[0]
