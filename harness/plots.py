"""Figures drawn with seaborn: learning curves from the tidy evaluation table; atomic figure files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def learning_curves(evals: pd.DataFrame, path: Path, metric: str = "normalized_score") -> Path:
    """One panel per dataset: ``metric`` against training step, a line per algorithm (mean and CI over seeds)."""
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(data=evals, x="step", y=metric, hue="algo", col="dataset", kind="line", marker="o",
                       errorbar=("ci", 95), facet_kws={"sharey": False, "sharex": False}, height=3.2, aspect=1.25)
    grid.set_titles("{col_name}")
    grid.set_axis_labels("training step", metric.replace("_", " "))
    return save_figure(grid.figure, path, dpi=150)


def save_figure(figure: plt.Figure, path: Path, dpi: int = 150) -> Path:
    """Writes ``figure`` atomically (a hidden temporary renamed into place) and closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    tmp.replace(path)
    return path
