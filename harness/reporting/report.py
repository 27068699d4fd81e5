"""Results directories → tidy tables, and the paper-style score table (markdown, LaTeX or CSV).

- ``runs_table``: one row per run directory (a ``config.json``) below a results directory;
- ``collect``: one row per evaluation of every run (what ``flowbench collect`` writes as CSV);
- ``final_scores``: one row per run with its final score, or why it has none;
- ``score_table``: datasets (grouped by domain, with a domain-average row) × algorithms, mean and
  spread over seeds, the best per row and those within its spread marked; rendered by
  ``render_markdown`` / ``render_latex`` / ``render_csv``.

What counts, and how what does not is shown (nothing is averaged silently):
- Which metric and which evaluations count is the *reporting protocol* (``ReportProtocol``): a suite
  declares it (``metric``, ``final`` in its YAML), ``flowbench sweep`` records it in ``suite.json`` at
  the suite's results root, and ``report``/``aggregate``/``plot`` read it from there
  (``resolve_protocol``; ``--metric``/``--final`` override it; runs of no suite get the defaults,
  normalised score at the last evaluation). The caption says which protocol was used and whence.
- A run's final score is its last evaluation (``last``), or the mean of its last K evaluations
  (``avg-last-K``, FQL's OGBench convention). Only *finished* runs (``summary.json`` written) have
  one: the last evaluation of an unfinished run is not a final score. Unfinished runs, and finished
  ones whose value is not finite (a diverged run), are left out of the mean and the cell gets a
  †; runs with fewer than K evaluations are left out and get a ‡.
- A row's seeds are every seed any algorithm has a run directory for on that dataset. A cell with
  final scores from fewer of them shows ``(n=k/N)``; it is never marked best (only complete cells
  are ranked). A cell with runs but no final score shows ``unfinished``; a dataset × algorithm
  without any run shows ``missing``. Runs not started yet (no ``config.json``) count as missing.
- The domain-average row (for domains with two or more datasets) is the mean of the per-dataset
  means, shown only when every dataset of the domain is complete for that algorithm, else ``—``.
  Its spread is over seeds of the per-seed average across the domain's datasets.
- Spread: ``std`` is the sample standard deviation over seeds (ddof 1); ``ci95`` is the half-width
  of the 95% Student-t confidence interval of the mean (t₀.₉₇₅,ₙ₋₁ · s/√n): with the 3–10 seeds
  of a typical suite a bootstrap interval is too narrow. With one seed neither exists: ``± n/a``.
- Best: the highest mean among complete cells (bold); within its spread: other complete cells whose
  mean is at least the best mean minus the best's spread (italics in markdown, underlined in LaTeX).
- Grids (``harness.grids``): every variant is its own column (``--select none``), or with a selection
  rule (``harness.protocol.SelectionRule``, applied by ``harness.reporting.selection``) one column per
  suite entry on the reported seeds, each cell naming the value picked (``[alpha=0.3]``), the rule in
  the caption; a cell whose tuning runs are incomplete shows ``not picked``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import rundir
from harness.reporting.published import SOURCES, published_score

METRICS = ("normalized_score", "success_rate", "return_mean")
STATS = ("std", "ci95")
FORMATS = ("md", "latex", "csv")
RUN_COLUMNS = ["algo", "dataset", "domain", "seed"]

# Final-score states of a run (``final_scores``' ``status`` column).
FINAL, UNFINISHED, NO_VALUE, TOO_FEW = "final", "unfinished", "no value", "too few evaluations"


def runs_table(root: Path) -> pd.DataFrame:
    """One row per run below ``root``: algorithm label, dataset, domain, seed, config hash, finished, path.

    The label is what the run itself recorded (``config.json``'s ``run.label``: the suite's name for the
    algorithm entry), else the algorithm. The scheduler's ``job.json`` is not read: it exists only for
    runs a sweep submitted, and is rewritten at every submission.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {root}")
    rows = []
    for run in rundir.find_run_dirs(root, started_only=True):
        config = json.loads((run / rundir.CONFIG).read_text())
        identity = config["identity"]
        label = config.get("run", {}).get("label")  # absent in runs written before labels were recorded
        rows.append({"algo": label or identity["algo"], "dataset": identity["dataset"],
                     "domain": config.get("domain", ""), "seed": identity["seed"],
                     "config_hash": config["config_hash"], "finished": rundir.is_finished(run),
                     "run": str(run.relative_to(root))})
    if not rows:
        raise FileNotFoundError(f"no runs under {root} (a run directory holds a {rundir.CONFIG})")
    runs = pd.DataFrame(rows)
    twice = runs[runs.duplicated(["algo", "dataset", "seed"], keep=False)]
    if len(twice):
        # typically runs/ itself, holding a suite's runs (runs/SUITE) beside `flowbench run`'s (runs/single)
        tops = sorted({Path(run).parts[0] for run in twice["run"]})
        raise ValueError(f"{root} holds more than one run of the same algorithm, dataset and seed "
                         f"({', '.join(twice['run'].iloc[:4])}{', ...' if len(twice) > 4 else ''}); report one suite's "
                         f"directory at a time: {', '.join(str(root / top) for top in tops)}")
    return runs


def collect(root: Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per evaluation of every run below ``root``, with the run's algorithm, dataset, domain, seed,
    config hash, whether it finished, and its directory relative to ``root``."""
    root = Path(root)
    runs = runs_table(root) if runs is None else runs
    frames = []
    for run in runs.to_dict("records"):
        eval_csv = root / run["run"] / rundir.EVAL_LOG
        if not eval_csv.exists() or eval_csv.stat().st_size == 0:
            continue
        frame = pd.read_csv(eval_csv)
        for i, column in enumerate(RUN_COLUMNS):
            frame.insert(i, column, run[column])
        for column in ("finished", "config_hash", "run"):
            frame[column] = run[column]
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no evaluated runs under {root}")
    return pd.concat(frames, ignore_index=True)


PHASES = ("all", "offline", "online")


def load_results(root: Path, metric: str = "normalized_score", last_k: int = 1, phase: str = "all"
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every evaluation, every run's final score) of the runs below ``root``; ``phase`` keeps only the
    offline or the online evaluations of runs with an online phase (``eval.csv``'s ``phase``; rows written
    before the column existed are offline). For ``offline``, a run whose online phase has begun counts as
    finished: its offline phase is."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    runs = runs_table(root)
    evals = collect(root, runs)
    if "phase" not in evals:
        evals["phase"] = "offline"
    evals["phase"] = evals["phase"].fillna("offline")
    if phase != "all":
        if phase == "offline":
            went_online = set(evals.loc[evals["phase"] == "online", "run"])
            runs = runs.assign(finished=runs["finished"] | runs["run"].isin(went_online))
            evals = evals.assign(finished=evals["run"].isin(runs.loc[runs["finished"], "run"]))
        evals = evals[evals["phase"] == phase].reset_index(drop=True)
        if evals.empty:
            raise FileNotFoundError(f"no {phase} evaluations under {root}")
    return evals, final_scores(evals, runs, metric, last_k)


def final_text(last_k: int) -> str:
    return "at the last evaluation" if last_k == 1 else f"averaged over the last {last_k} evaluations"


def metric_values(evals: pd.DataFrame, metric: str) -> pd.Series:
    """The column ``metric``; success rates in percent, as papers report them."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid choices: {', '.join(METRICS)}")
    return 100.0 * evals[metric] if metric == "success_rate" else evals[metric]


def final_scores(evals: pd.DataFrame, runs: pd.DataFrame, metric: str = "normalized_score",
                 last_k: int = 1) -> pd.DataFrame:
    """One row per run: ``score`` (mean of its last ``last_k`` evaluations of ``metric``) and ``status``:
    ``final``, ``unfinished`` (no summary.json), ``too few evaluations`` (fewer than ``last_k``) or
    ``no value`` (finished, but the value is not finite: a diverged run, or a metric the env lacks)."""
    if last_k < 1:
        raise ValueError(f"--final avg-last-K needs K >= 1, got {last_k}")
    values = evals.assign(value=metric_values(evals, metric)).sort_values("step")
    tails = values.groupby("run")["value"].agg(evaluations="size",
                                                  score=lambda v: v.tail(last_k).mean(skipna=False))
    final = runs.join(tails, on="run")
    final["evaluations"] = final["evaluations"].fillna(0).astype(int)
    final["status"] = np.select(
        [~final["finished"], final["evaluations"] < last_k, ~np.isfinite(final["score"])],
        [UNFINISHED, TOO_FEW, NO_VALUE], FINAL)
    final.loc[final["status"] != FINAL, "score"] = np.nan
    return final


def spread(values: np.ndarray, stat: str) -> float:
    """Sample std over seeds, or the half-width of the mean's 95% Student-t interval; NaN for one seed."""
    if stat not in STATS:
        raise ValueError(f"unknown --stat {stat!r}; valid choices: {', '.join(STATS)}")
    n = len(values)
    if n < 2:
        return float("nan")
    std = float(np.std(values, ddof=1))
    if stat == "std":
        return std
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))


@dataclass
class ScoreTable:
    """The cells (one row per table row × algorithm) and how they were made; ``render_*`` format it."""

    cells: pd.DataFrame  # domain, dataset, average, algo, runs, n, expected, unfinished, no_value, too_few,
    #                      mean, spread, best, within
    algorithms: list[str]
    metric: str
    stat: str
    last_k: int
    published: dict[str, dict[str, tuple[float, bool]]]  # algo -> row key -> (score, average over tasks)
    origin: str = ""  # where metric and final rule came from (ReportProtocol.origin), stated in the caption
    selection: Any = None  # harness.reporting.selection.Selection: the per-task picks, when a rule picked

    def rows(self) -> list[tuple[str, str, bool]]:
        """(domain, dataset, is the domain average) in table order."""
        keys = self.cells[["domain", "dataset", "average"]].drop_duplicates()
        return [tuple(r) for r in keys.itertuples(index=False)]

    def cell(self, dataset: str, algo: str) -> pd.Series:
        return self.cells[(self.cells["dataset"] == dataset) & (self.cells["algo"] == algo)].iloc[0]


# Columns of ``ScoreTable.cells`` counting a cell's runs left out of its mean, by final-score state.
LEFT_OUT = {"unfinished": UNFINISHED, "no_value": NO_VALUE, "too_few": TOO_FEW}


def score_table(final: pd.DataFrame, metric: str = "normalized_score", stat: str = "std", last_k: int = 1,
                published: bool = False, origin: str = "", selection: Any = None) -> ScoreTable:
    """Datasets × algorithms from ``final_scores``' output, or with ``selection`` from its ``final`` (the picked
    variants on the reported seeds; see the module docstring for the rules)."""
    if selection is not None:
        final = selection.final
    spread(np.zeros(0), stat)  # validates stat before anything else
    algorithms = sorted(final["algo"].unique())
    seeds = final.groupby("dataset")["seed"].agg(lambda s: sorted(set(s)))
    rows = []
    for (domain, dataset), group in final.groupby(["domain", "dataset"], sort=True):
        for algo in algorithms:
            runs = group[group["algo"] == algo]
            scores = runs.loc[runs["status"] == FINAL, "score"].to_numpy()
            rows.append({"domain": domain, "dataset": dataset, "average": False, "algo": algo, "runs": len(runs),
                         "n": len(scores), "expected": len(seeds[dataset]),
                         **{key: int((runs["status"] == status).sum()) for key, status in LEFT_OUT.items()},
                         "mean": scores.mean() if len(scores) else np.nan, "spread": spread(scores, stat)})
    cells = pd.DataFrame(rows)
    averages = [domain_average(final, cells, domain, algo, stat)
                for domain, datasets in cells.groupby("domain")["dataset"].unique().items() if len(datasets) > 1
                for algo in algorithms]
    cells = pd.concat([cells, pd.DataFrame(averages, columns=cells.columns)], ignore_index=True) \
        if averages else cells
    cells = cells.sort_values(["domain", "average", "dataset"], kind="stable").reset_index(drop=True)
    mark_best(cells)
    refs = {}
    if published:
        for algo in algorithms:
            found = {d: s for d in cells.loc[~cells["average"], "dataset"].unique()
                     if (s := published_score(algo, d)) is not None}
            if found:
                refs[algo] = found
    return ScoreTable(cells, algorithms, metric, stat, last_k, refs, origin, selection)


def domain_average(final: pd.DataFrame, cells: pd.DataFrame, domain: str, algo: str, stat: str) -> dict:
    """The domain-average cell of ``algo``: defined only if every dataset of the domain is complete."""
    parts = cells[(cells["domain"] == domain) & (cells["algo"] == algo) & ~cells["average"]]
    row = {"domain": domain, "dataset": f"{domain} average", "average": True, "algo": algo,
           "runs": int(parts["runs"].sum()), "n": 0, "expected": 0, **{k: int(parts[k].sum()) for k in LEFT_OUT},
           "mean": np.nan, "spread": np.nan}
    if not ((parts["n"] == parts["expected"]) & (parts["n"] > 0)).all():
        return row
    scores = final[(final["domain"] == domain) & (final["algo"] == algo)].pivot(
        index="seed", columns="dataset", values="score")
    per_seed = scores.mean(axis=1, skipna=False).dropna()  # seeds present on every dataset of the domain
    row["mean"] = parts["mean"].mean()
    row["n"] = row["expected"] = len(scores)
    if len(per_seed) == len(scores):  # the same seeds everywhere: the per-seed average has a spread
        row["spread"] = spread(per_seed.to_numpy(), stat)
    return row


def mark_best(cells: pd.DataFrame) -> None:
    """Adds ``best`` and ``within`` (mean ≥ best mean − best's spread) among each row's complete cells."""
    cells["best"] = False
    cells["within"] = False
    complete = (cells["n"] == cells["expected"]) & (cells["n"] > 0) & np.isfinite(cells["mean"])
    for _, index in cells[complete].groupby("dataset").groups.items():
        row = cells.loc[index]
        top = row["mean"].max()
        best = row.index[row["mean"] == top]
        cells.loc[best, "best"] = True
        reach = row.loc[best, "spread"].max()
        if np.isfinite(reach):
            cells.loc[row.index[(row["mean"] >= top - reach) & (row["mean"] < top)], "within"] = True


# ---------------------------------------------------------------------------------------------- rendering

LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "–": "--", "—": "---", "±": r"$\pm$", "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$"}


@dataclass(frozen=True)
class Style:
    """How one output format writes the table's pieces (``bold``/``within`` wrap a number: one ``{}``)."""

    pm: str
    dagger: str
    ddagger: str
    dash: str
    bold: str
    within: str
    latex: bool = False
    undefined: str = "n/a"

    def escape(self, text: str) -> str:
        return "".join(LATEX_SPECIALS.get(c, c) for c in text) if self.latex else text


MARKDOWN = Style(pm="±", dagger="†", ddagger="‡", dash="—", bold="**{}**", within="*{}*")
LATEX = Style(pm=r"$\pm$", dagger=r"$^{\dagger}$", ddagger=r"$^{\ddagger}$", dash="---", bold=r"\textbf{{{}}}",
              within=r"\underline{{{}}}", latex=True)


def cell_text(cell: pd.Series, style: Style) -> str:
    """One cell: ``mean ± spread`` with its marks, or why there is no number."""
    if cell["average"]:
        if not np.isfinite(cell["mean"]):
            return style.dash
    elif cell["n"] == 0:
        return ("missing" if cell["runs"] == 0 else "unfinished" if cell["unfinished"] else
                "too few evals" if cell["too_few"] else "n/a")
    spread_text = style.undefined if not np.isfinite(cell["spread"]) else f"{cell['spread']:.1f}"
    number = f"{cell['mean']:.1f} {style.pm} {spread_text}"
    if cell["best"]:
        number = style.bold.format(number)
    elif cell["within"]:
        number = style.within.format(number)
    count = f" (n={cell['n']}/{cell['expected']})" if cell["n"] < cell["expected"] else ""
    left_out = style.dagger * bool(cell["unfinished"] + cell["no_value"]) + style.ddagger * bool(cell["too_few"])
    return number + count + ("" if cell["average"] else left_out)


METRIC_TEXT = {"normalized_score": "Normalised score (0–100)", "success_rate": "Success rate (%)",
               "return_mean": "Return"}
STAT_TEXT = {"std": "standard deviation over seeds (ddof 1)",
             "ci95": "half-width of the 95% Student-t confidence interval of the mean over seeds"}


def caption(table: ScoreTable) -> str:
    """What the numbers are: metric, final rule (and where that protocol came from), statistic."""
    origin = f" ({table.origin})" if table.origin else ""
    text = f"{METRIC_TEXT[table.metric]} {final_text(table.last_k)}{origin}: mean ± {STAT_TEXT[table.stat]}."
    return text + (f" {table.selection.caption()}" if table.selection is not None else "")


def picked_text(table: ScoreTable, dataset: str, algo: str, text: str, style: Style) -> str:
    """A cell's text with the value its selection picked (``[alpha=0.3]``), or ``not picked``."""
    if table.selection is None:
        return text
    values = table.selection.values_text(algo, dataset)
    if values is None:
        return "not picked"
    return f"{text} {style.escape(f'[{values}]')}" if values else text


def legend(table: ScoreTable, style: Style) -> list[str]:
    """The lines explaining the marks that appear in the table (and only those)."""
    cells, lines, e = table.cells, [], style.escape
    spread_name = "standard deviation" if table.stat == "std" else "95% CI half-width"
    if cells["best"].any():
        line = style.bold.format("bold") + e(": the best mean of the row, among cells with final scores from every seed")
        if cells["within"].any():
            line += "; " + style.within.format("marked") + e(f": mean within the best's {spread_name} of it")
        lines.append(line + ".")
    scored = np.isfinite(cells["mean"])
    if (scored & ~np.isfinite(cells["spread"])).any():
        lines.append(f"{style.pm} {style.undefined}" + e(": a single seed, so no spread (never counted as within "
                                                         "the best's)."))
    if (scored & (cells["n"] < cells["expected"])).any():
        lines.append(e("(n=k/N): final scores from k of the N seeds run on this dataset; the mean is over those k."))
    data_cells = cells[~cells["average"]]
    if ((data_cells["unfinished"] + data_cells["no_value"] > 0) & (data_cells["n"] > 0)).any():
        lines.append(style.dagger + e(f": runs left out of the mean: unfinished (no {rundir.SUMMARY}; their last "
                                      f"evaluation is not a final score), or with a non-finite value."))
    if ((data_cells["too_few"] > 0) & (data_cells["n"] > 0)).any():
        lines.append(style.ddagger + e(f": runs with fewer than {table.last_k} evaluations left out of the mean."))
    shown = {cell_text(cell, style) for _, cell in data_cells[data_cells["n"] == 0].iterrows()}
    words = {"missing": "no run of this algorithm on this dataset", "unfinished": "runs, none of them finished",
             "too few evals": f"no finished run has {table.last_k} evaluations",
             "n/a": "finished runs, but no finite value (a diverged run, or a metric this environment lacks)"}
    if shown:
        lines.append(e("; ".join(f"{word}: {meaning}" for word, meaning in words.items() if word in shown) + "."))
    if (cells["average"] & ~scored).any():
        lines.append(style.dash + e(": no domain average: not every dataset of the domain has final scores from "
                                    "all its seeds for this algorithm."))
    if table.selection is not None:
        lines.append(e("[key=value]: the grid value picked for this algorithm and dataset by the selection rule of "
                       "the caption; the number is that variant's score on the reported seeds only."))
        if (table.selection.picks["status"] != "picked").any():
            lines.append(e("not picked: some variant lacks a final score on a tuning seed, so no pick was made."))
        if table.selection.rule.on_reported_seeds:
            lines.append(e("Picked on the reported seeds: each number is the best of several noisy means, so it "
                           "overstates what the picked value scores on new seeds."))
    for algo in table.published:
        lines.append(e(f"{algo} (paper): published, not measured here: {SOURCES[algo]}."))
    if any(average for refs in table.published.values() for _, average in refs.values()):
        lines.append(e("(avg): the paper reports only the average over this environment's tasks."))
    return lines


def table_columns(table: ScoreTable) -> list[tuple[str, str, bool]]:
    """(header, algorithm, published) per column after domain and dataset: measured, then published next to it."""
    columns = []
    for algo in table.algorithms:
        columns.append((algo, algo, False))
        if algo in table.published:
            columns.append((f"{algo} (paper)", algo, True))
    return columns


def table_rows(table: ScoreTable, style: Style) -> list[list[str]]:
    """The body: domain (first row of its group only), dataset, then one text per column."""
    rows, last_domain = [], None
    for domain, dataset, average in table.rows():
        row = [style.escape(domain) if domain != last_domain else "", "average" if average else style.escape(dataset)]
        last_domain = domain
        for _, algo, published in table_columns(table):
            if published:
                score, over_tasks = table.published[algo].get(dataset, (None, False))
                row.append("" if score is None or average else f"{score:g}" + (" (avg)" if over_tasks else ""))
            elif average:
                row.append(cell_text(table.cell(dataset, algo), style))
            else:
                row.append(picked_text(table, dataset, algo, cell_text(table.cell(dataset, algo), style), style))
        rows.append(row)
    return rows


def render_markdown(table: ScoreTable) -> str:
    from tabulate import tabulate

    headers = ["domain", "dataset", *(h for h, _, _ in table_columns(table))]
    rows = [[d, f"*{name}*" if name == "average" else name, *cells] for d, name, *cells in table_rows(table, MARKDOWN)]
    body = tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True,
                    colalign=("left", "left", *("right",) * (len(headers) - 2)))
    return "\n".join([caption(table), "", body, "", *(f"- {line}" for line in legend(table, MARKDOWN))]) + "\n"


def render_latex(table: ScoreTable) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), then the caption and legend in a footnote-size
    paragraph below it (``\\input`` it inside a ``table``)."""
    columns = table_columns(table)
    width = 2 + len(columns)
    lines = ["% Written by flowbench report; needs \\usepackage{booktabs}.",
             rf"\begin{{tabular}}{{ll{'c' * len(columns)}}}", r"\toprule",
             " & ".join(["Domain", "Dataset", *(LATEX.escape(h) for h, _, _ in columns)]) + r" \\", r"\midrule"]
    previous = None
    for row, (domain, _, average) in zip(table_rows(table, LATEX), table.rows()):
        if previous is not None and domain != previous:
            lines.append(r"\midrule")
        elif average:
            lines.append(rf"\cmidrule(l){{2-{width}}}")
        previous = domain
        if average:
            row[1] = r"\textit{average}"
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              "{\\footnotesize " + " \\\\\n".join([LATEX.escape(caption(table)), *legend(table, LATEX)]) + r"\par}"]
    return "\n".join(lines) + "\n"


def render_csv(table: ScoreTable) -> str:
    """The cells as numbers, one row per table row × algorithm (published numbers in ``published``)."""
    cells = table.cells.assign(stat=table.stat, metric=table.metric, final_evaluations=table.last_k)
    if table.selection is not None:
        picks = table.selection.picks.rename(columns={"entry": "algo", "label": "picked", "values": "picked_values",
                                                      "status": "selection_status", "scores": "tuning_scores"})
        cells = cells.merge(picks[["algo", "dataset", "selection_status", "picked", "picked_values", "tune_score",
                                   "tuning_scores"]], on=["algo", "dataset"], how="left")
        cells["selection_rule"] = table.selection.rule.describe(table.selection.reported_seeds)
    if table.published:
        cells["published"] = [np.nan if average or algo not in table.published else
                              table.published[algo].get(dataset, (np.nan,))[0]
                              for algo, dataset, average in zip(cells["algo"], cells["dataset"], cells["average"])]
    return cells.to_csv(index=False)


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv}


def render(table: ScoreTable, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ValueError(f"unknown --format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    return RENDERERS[fmt](table)
