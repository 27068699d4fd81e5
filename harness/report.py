"""Results directories → tidy tables: every run's evaluations, and final scores per dataset × algorithm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def find_runs(root: Path) -> list[Path]:
    """Run directories below ``root`` (those holding a ``config.json``)."""
    return sorted(p.parent for p in Path(root).rglob("config.json"))


def collect(root: Path) -> pd.DataFrame:
    """One row per evaluation of every run below ``root``, with the run's algorithm, dataset and seed."""
    frames = []
    for run in find_runs(root):
        config = json.loads((run / "config.json").read_text())
        eval_csv = run / "eval.csv"
        if not eval_csv.exists() or eval_csv.stat().st_size == 0:
            continue
        frame = pd.read_csv(eval_csv)
        identity = config["identity"]
        # a suite may run one algorithm under several labels (configs): its job.json names the label
        job = run / "job.json"
        label = json.loads(job.read_text()).get("label") if job.exists() else None
        frame.insert(0, "algo", label or identity["algo"])
        frame.insert(1, "dataset", identity["dataset"])
        frame.insert(2, "domain", config.get("domain"))
        frame.insert(3, "seed", identity["seed"])
        frame["config_hash"] = config["config_hash"]
        frame["finished"] = (run / "summary.json").exists()
        frame["run_dir"] = str(run)
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no evaluated runs under {root}")
    return pd.concat(frames, ignore_index=True)


def final_scores(evals: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation of each run."""
    last = evals.sort_values("step").groupby(["algo", "dataset", "seed"], as_index=False).last()
    return last


def score_table(evals: pd.DataFrame, metric: str = "normalized_score") -> pd.DataFrame:
    """Datasets × algorithms, cells "mean ± std" of the final ``metric`` over seeds (n shown if < all).

    Success rates are shown in percent, as papers report them.
    """
    final = final_scores(evals)
    if metric == "success_rate":
        final = final.assign(success_rate=100.0 * final["success_rate"])
    stats = final.groupby(["dataset", "algo"])[metric].agg(["mean", "std", "count"])

    def cell(row: pd.Series) -> str:
        if np.isnan(row["mean"]):
            return "n/a"
        spread = 0.0 if np.isnan(row["std"]) else row["std"]
        return f"{row['mean']:.1f} ± {spread:.1f}" + (f" (n={int(row['count'])})" if row["count"] < stats["count"].max() else "")

    return stats.apply(cell, axis=1).unstack("algo").fillna("missing")
