"""Aggregate statistics over a suite's tasks with rliable (Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice"): IQM, mean, median and optimality gap with stratified bootstrap
confidence intervals, performance profiles, and the probability of improvement.

The inputs are the score table's final scores (``harness.reporting.report.final_scores``: same ``--metric`` and
``--final`` rules, finished runs only; by default the suite's protocol, ``harness.protocol.resolve_protocol``).
Conventions:
- Scale: the table's, normalised score 0–100 or success rate in %. The optimality gap uses the
  threshold 100 on that scale (rliable's γ = 1 for scores in [0, 1]): the mean shortfall below 100.
  Raw returns are refused: they share no scale across tasks.
- rliable takes one [runs × tasks] matrix per algorithm, with the same number of runs on every task.
  A task (dataset) enters only if every algorithm has a final score on it; an algorithm's rows are
  the seeds with a final score on every task that entered; an algorithm with none is left out. What
  is left out is listed in ``notes`` (and in aggregates.md): never a silent average over fewer runs.
- Intervals: 95%, percentile method, ``reps`` resamples (default 2000). rliable 1.2 draws its
  resample indices from NumPy's *global* random state, so each rliable call here runs with it
  seeded to ``seed`` (and restores it afterwards): rliable called directly after
  ``np.random.seed(seed)`` on the same matrices gives the same intervals.
- With one run per task every resample is the data itself: such an algorithm gets point estimates
  and no interval (``n/a``), never a zero-width one, and is left out of the bootstrap calls.
- Probability of improvement: P(X > baseline) for every other algorithm X (rliable's Mann-Whitney
  estimate averaged over tasks, independent stratified bootstrap CIs); the baseline is the one
  given, else the algorithm with the highest IQM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.reporting.report import FINAL, METRIC_TEXT, final_text
from harness.files import atomic_write_text
from harness.seeding import global_numpy_seed

STATISTICS = ("IQM", "Mean", "Median", "Optimality gap")
GAP_THRESHOLD = 100.0  # optimality gap threshold on the 0–100 scale
MIN_REPS = 100
PROFILE_POINTS = 101
PAIR_SEPARATOR = ","  # rliable's, between the two algorithms of a pair (labels never hold one)


class NoCommonTasks(ValueError):
    """No dataset has a final score from every algorithm, so there is nothing to aggregate over."""


def aggregate_statistics(scores: np.ndarray) -> np.ndarray:
    """IQM, mean, median and optimality gap (threshold 100) of a [runs × tasks] matrix, in STATISTICS order."""
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_median(scores),
                     metrics.aggregate_optimality_gap(scores, GAP_THRESHOLD)])


@dataclass
class Aggregates:
    """Everything ``aggregate`` computed: the tables and plots are drawn from this."""

    metric: str
    last_k: int
    reps: int
    seed: int
    tasks: list[str]
    scores: dict[str, np.ndarray]  # algo -> [runs × tasks]
    seeds: dict[str, list[int]]  # algo -> the seeds that are its rows
    estimates: dict[str, np.ndarray]  # algo -> STATISTICS
    intervals: dict[str, np.ndarray | None]  # algo -> [2 × STATISTICS] (lower, upper); None: one run per task
    taus: np.ndarray
    profiles: dict[str, np.ndarray]
    profile_bands: dict[str, np.ndarray] | None  # None when no algorithm has two runs per task
    baseline: str | None  # None with a single algorithm
    improvement: dict[str, float] = field(default_factory=dict)  # X -> P(X > baseline)
    improvement_intervals: dict[str, np.ndarray | None] = field(default_factory=dict)  # X -> (lower, upper)
    notes: list[str] = field(default_factory=list)
    origin: str = ""  # where metric and final rule came from (harness.protocol.ReportProtocol.origin)

    @property
    def algorithms(self) -> list[str]:
        return list(self.scores)


def score_matrices(final: pd.DataFrame) -> tuple[list[str], dict[str, np.ndarray], dict[str, list[int]], list[str]]:
    """(tasks, algo -> [seeds × tasks] scores, algo -> seeds, what was left out) from final scores."""
    scored = final[final["status"] == FINAL]
    if scored.empty:
        raise NoCommonTasks("no run has a final score yet (finished, with enough evaluations), so there is nothing "
                            "to aggregate; `flowbench status DIR` shows the runs' states")
    notes = []
    algorithms = sorted(final["algo"].unique())
    for algo in [a for a in algorithms if a not in set(scored["algo"])]:
        notes.append(f"{algo}: no final score on any dataset")
        algorithms.remove(algo)
    datasets = sorted(final["dataset"].unique())
    have = scored.groupby("dataset")["algo"].agg(set)
    tasks = [d for d in datasets if set(algorithms) <= have.get(d, set())]
    for dataset in datasets:
        if dataset not in tasks:
            lacking = sorted(set(algorithms) - have.get(dataset, set()))
            notes.append(f"{dataset}: no final score from {', '.join(lacking)}")
    if not tasks:
        raise NoCommonTasks("no dataset has a final score from every algorithm, so there is nothing to aggregate; "
                            "`flowbench status DIR` shows which runs are unfinished")
    scores, seeds = {}, {}
    for algo in list(algorithms):
        table = scored[(scored["algo"] == algo) & scored["dataset"].isin(tasks)].pivot(
            index="seed", columns="dataset", values="score").reindex(columns=tasks)
        complete = table.dropna()
        if complete.empty:
            notes.append(f"{algo}: no seed has a final score on every task")
            continue
        if len(complete) < len(table):
            dropped = sorted(set(table.index) - set(complete.index))
            notes.append(f"{algo}: seeds {', '.join(map(str, dropped))} (no final score on every task)")
        scores[algo], seeds[algo] = complete.to_numpy(), [int(s) for s in complete.index]
    if not scores:
        raise NoCommonTasks("no algorithm has a seed with a final score on every common task; nothing to aggregate")
    return tasks, scores, seeds, notes


def aggregate(final: pd.DataFrame, metric: str = "normalized_score", last_k: int = 1, reps: int = 2000, seed: int = 0,
              baseline: str | None = None, origin: str = "") -> Aggregates:
    """rliable's aggregates of ``final`` (``harness.reporting.report.final_scores`` output); see the module docstring."""
    from rliable import library, metrics

    if metric == "return_mean":
        raise ValueError("aggregates need scores on one scale across tasks: use --metric normalized_score or "
                         "success_rate (raw returns differ from task to task)")
    if reps < MIN_REPS:
        raise ValueError(f"--reps must be at least {MIN_REPS} for a 95% bootstrap interval, got {reps}")
    algorithms = sorted(final["algo"].unique())
    if baseline is not None and baseline not in algorithms:
        raise ValueError(f"--baseline {baseline!r} is not an algorithm of these runs; choices: {', '.join(algorithms)}")
    tasks, scores, seeds, notes = score_matrices(final)
    if baseline is not None and baseline not in scores:
        raise ValueError(f"--baseline {baseline!r} has no seed with a final score on every common task")
    # The bootstrap runs on the algorithms with several runs per task (in order); with one run per task
    # every resample is the data itself, so those get point estimates only.
    several = {algo: m for algo, m in scores.items() if len(m) > 1}
    estimates = {algo: aggregate_statistics(m) for algo, m in scores.items()}
    intervals: dict[str, np.ndarray | None] = dict.fromkeys(scores)
    everything = np.concatenate([m.ravel() for m in scores.values()])
    taus = np.linspace(min(0.0, everything.min()), max(GAP_THRESHOLD, everything.max()), PROFILE_POINTS)
    bands = None
    if several:
        with global_numpy_seed(seed):
            intervals.update(library.get_interval_estimates(several, aggregate_statistics, reps=reps)[1])
        with global_numpy_seed(seed):
            bands = library.create_performance_profile(several, taus, custom_profile_func=score_distribution,
                                                       reps=reps)[1]
    result = Aggregates(metric, last_k, reps, seed, tasks, scores, seeds, estimates, intervals, taus,
                        {algo: score_distribution(m, taus) for algo, m in scores.items()}, bands, baseline, notes=notes,
                        origin=origin)
    if len(scores) > 1:
        result.baseline = baseline = baseline or max(scores, key=lambda a: estimates[a][0])
        others = [x for x in scores if x != baseline]
        pairs = {f"{x}{PAIR_SEPARATOR}{baseline}": [scores[x], scores[baseline]] for x in others
                 if x in several and baseline in several}
        if pairs:
            with global_numpy_seed(seed):
                prob_intervals = library.get_interval_estimates(pairs, metrics.probability_of_improvement, reps=reps)[1]
        for x in others:
            result.improvement[x] = float(metrics.probability_of_improvement(scores[x], scores[baseline]))
            interval = prob_intervals.get(f"{x}{PAIR_SEPARATOR}{baseline}") if pairs else None
            result.improvement_intervals[x] = None if interval is None else interval.ravel()  # rliable's is [2 × 1]
    return result


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The fraction of all runs × tasks scoring above each τ: rliable's default profile
    (``run_score_deviation``), vectorised over τ (rliable's calls it once per τ per resample)."""
    return (scores.reshape(-1, 1) > taus.reshape(1, -1)).mean(axis=0)


def aggregates_frame(result: Aggregates) -> pd.DataFrame:
    """Long format: one row per algorithm × statistic (and per P(X > baseline)), with the interval."""
    rows = []
    for algo in result.algorithms:
        runs, tasks = result.scores[algo].shape
        for i, name in enumerate(STATISTICS):
            interval = result.intervals[algo]
            rows.append({"algo": algo, "statistic": name, "estimate": result.estimates[algo][i],
                         "ci_low": np.nan if interval is None else interval[0, i],
                         "ci_high": np.nan if interval is None else interval[1, i], "runs": runs, "tasks": tasks})
        if algo in result.improvement:
            interval = result.improvement_intervals[algo]
            rows.append({"algo": algo, "statistic": f"P(X > {result.baseline})", "estimate": result.improvement[algo],
                         "ci_low": np.nan if interval is None else float(interval[0]),
                         "ci_high": np.nan if interval is None else float(interval[1]), "runs": runs, "tasks": tasks})
    return pd.DataFrame(rows).assign(metric=result.metric, final_evaluations=result.last_k, reps=result.reps,
                                     seed=result.seed)


def _with_interval(estimate: float, interval: np.ndarray | None, digits: int) -> str:
    if interval is None:
        return f"{estimate:.{digits}f} [n/a]"
    return f"{estimate:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def render_aggregates_markdown(result: Aggregates) -> str:
    from tabulate import tabulate

    order = sorted(result.algorithms, key=lambda a: -result.estimates[a][0])
    rows = [[algo, "{} × {}".format(*result.scores[algo].shape),
             *(_with_interval(result.estimates[algo][i], None if result.intervals[algo] is None
                              else result.intervals[algo][:, i], 1) for i in range(len(STATISTICS)))]
            for algo in order]
    origin = f" ({result.origin})" if result.origin else ""
    lines = [f"{METRIC_TEXT[result.metric]} {final_text(result.last_k)}{origin}, aggregated over {len(result.tasks)} "
             f"tasks with rliable: point estimate [95% stratified bootstrap CI, percentile, {result.reps} resamples, "
             f"seed {result.seed}]. Optimality gap: mean shortfall below {GAP_THRESHOLD:g}. Finished runs only.", "",
             tabulate(rows, headers=["algorithm", "runs × tasks", *STATISTICS], tablefmt="pipe", disable_numparse=True)]
    if result.improvement:
        lines += ["", f"Probability of improvement over {result.baseline}, P(X > {result.baseline}) [95% CI]:", "",
                  tabulate([[x, _with_interval(p, result.improvement_intervals[x], 2)]
                            for x, p in sorted(result.improvement.items(), key=lambda kv: -kv[1])],
                           headers=["X", f"P(X > {result.baseline})"], tablefmt="pipe", disable_numparse=True)]
    lines += ["", f"Tasks: {', '.join(result.tasks)}."]
    if any(i is None for i in [*result.intervals.values(), *result.improvement_intervals.values()]):
        lines.append("[n/a]: one run per task, so the bootstrap has nothing to resample and no interval exists.")
    if result.notes:
        lines += ["", "Left out (rliable needs the same runs on every task):", *(f"- {note}" for note in result.notes)]
    return "\n".join(lines) + "\n"


def write_aggregates(result: Aggregates, out: Path) -> list[Path]:
    """``aggregates.md`` and ``aggregates.csv`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "aggregates.md", render_aggregates_markdown(result))
    atomic_write_text(out / "aggregates.csv", aggregates_frame(result).to_csv(index=False))
    return [out / "aggregates.md", out / "aggregates.csv"]
