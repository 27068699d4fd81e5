"""Per-task selection of a grid's variant (the rule is ``harness.protocol.SelectionRule``), and its export.

``select`` turns ``final_scores``' rows (one per run, labelled by variant, e.g. ``fql[alpha=0.3]``) into the
rows the table, aggregates and plots read: one column per suite entry (``fql``), the picked variant's runs on
the reported seeds only, and a ``picks`` frame saying per entry and dataset which variant was picked, with
which values, on which tuning score. ``export_selection`` writes the picks as suite ``algorithms:`` entries
with ``per_dataset`` overrides (``harness.cluster.suites``), so a later suite runs exactly the picked configs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness import rundir
from harness.files import atomic_write_text
from harness.grids import split_label
from harness.protocol import SelectionRule
from harness.reporting.report import FINAL

# Why an entry has no pick on a dataset (``picks``' ``status``).
PICKED, INCOMPLETE = "picked", "tuning incomplete"


@dataclass
class Selection:
    """The outcome of a rule on a set of runs."""

    rule: SelectionRule
    tune_seeds: list[int]
    reported_seeds: list[int]
    picks: pd.DataFrame  # entry, dataset, status, label, values (text), tune_score, candidates, run (a tuning run)
    final: pd.DataFrame  # final_scores rows of the picked variants on the reported seeds, algo = entry
    labels: dict[tuple[str, str], str] = field(default_factory=dict)  # (entry, dataset) -> picked label

    def caption(self) -> str:
        text = f"Per-task selection, {self.rule.describe(self.reported_seeds)}; ties go to the label sorting first"
        return text + (f" ({self.rule.origin})" if self.rule.origin else "") + "."

    def values_text(self, entry: str, dataset: str) -> str | None:
        """``alpha=0.3`` for a pick of that variant, ``""`` for an entry of no grid, None where nothing was picked."""
        row = self.picks[(self.picks["entry"] == entry) & (self.picks["dataset"] == dataset)]
        if row.empty or row["status"].iloc[0] != PICKED:
            return None
        return row["values"].iloc[0]

    def evals(self, evals: pd.DataFrame) -> pd.DataFrame:
        """The evaluations of the picked variants' runs on the reported seeds, labelled by entry (for curves)."""
        kept = evals[evals["run"].isin(set(self.final["run"]))].copy()
        kept["algo"] = kept["algo"].map(lambda label: split_label(label)[0])
        return kept


def with_entries(final: pd.DataFrame) -> pd.DataFrame:
    """``final`` with each run's suite entry and grid values (as written in its label)."""
    split = final["algo"].map(split_label)
    return final.assign(entry=split.map(lambda s: s[0]),
                        values=split.map(lambda s: ",".join(f"{k}={v}" for k, v in s[1].items())))


def select(final: pd.DataFrame, rule: SelectionRule) -> Selection:
    """Applies ``rule`` (best-per-task) to ``final_scores``' rows; see ``harness.protocol`` for the rule."""
    if not rule.picks:
        raise ValueError("select() needs a picking rule; with --select none every variant is shown as it is")
    final = with_entries(final)
    seeds = sorted(int(s) for s in final["seed"].unique())
    tune = sorted(rule.tune_seeds) if rule.tune_seeds else seeds
    missing = sorted(set(tune) - set(seeds))
    if missing:
        raise ValueError(f"tuning seeds {missing} have no runs here (seeds run: {seeds}); give --tune-seeds from "
                         f"those")
    reported = seeds if rule.on_reported_seeds else [s for s in seeds if s not in tune]
    if not reported:
        raise ValueError(f"every seed run ({seeds}) is a tuning seed, so none is left to report on; tune on fewer "
                         f"seeds, or pick on the reported seeds with --tune-on-reported-seeds (inflated scores)")
    picks, chosen = [], {}
    for (entry, dataset), group in final.groupby(["entry", "dataset"], sort=True):
        tuning = group[group["seed"].isin(tune)]
        scored = tuning[tuning["status"] == FINAL]
        complete = scored.groupby("algo")["seed"].nunique() == len(tune)
        labels = sorted(group["algo"].unique())
        means = scored.groupby("algo")["score"].mean()
        texts = group.drop_duplicates("algo").set_index("algo")["values"]
        row = {"entry": entry, "dataset": dataset, "candidates": len(labels), "label": None, "values": None,
               "tune_score": np.nan, "run": None,
               # every candidate's tuning mean, so the unpicked stay visible next to the pick
               "scores": "; ".join(f"{texts[label] or label}: "
                                   + (f"{means[label]:.1f}" if complete.get(label, False) else "incomplete")
                                   for label in labels)}
        if not all(complete.get(label, False) for label in labels):
            picks.append({**row, "status": INCOMPLETE})
            continue
        top = max(means[label] for label in labels)
        best = min(label for label in labels if means[label] == top)  # a tie goes to the label sorting first
        chosen[(entry, dataset)] = best
        picks.append({**row, "status": PICKED, "label": best,
                      "values": group.loc[group["algo"] == best, "values"].iloc[0], "tune_score": means[best],
                      "run": tuning.loc[tuning["algo"] == best, "run"].iloc[0]})
    picked = final[[chosen.get((e, d)) == a for e, d, a in zip(final["entry"], final["dataset"], final["algo"])]]
    reported_rows = picked[picked["seed"].isin(reported)].assign(algo=lambda f: f["entry"])
    # entries without a pick keep their reported seeds' rows as unfinished, so their column and seeds stay visible
    unpicked = final[[(e, d) not in chosen for e, d in zip(final["entry"], final["dataset"])]]
    placeholders = (unpicked[unpicked["seed"].isin(reported)].drop_duplicates(["entry", "dataset", "seed"])
                    .assign(algo=lambda f: f["entry"], status=INCOMPLETE, score=np.nan))
    rows = pd.concat([reported_rows, placeholders], ignore_index=True).drop(columns=["entry", "values"])
    return Selection(rule, tune, reported, pd.DataFrame(picks), rows, chosen)


def export_selection(selection: Selection, root: Path, path: Path) -> dict:
    """Writes the picks as suite ``algorithms:`` entries: per entry its algorithm, profile and ``per_dataset``
    overrides (each the picked run's whole overrides, so a suite using them runs exactly that config)."""
    entries: dict[str, dict] = {}
    for pick in selection.picks[selection.picks["status"] == PICKED].itertuples():
        config = json.loads((Path(root) / pick.run / rundir.CONFIG).read_text())
        run = config["run"]
        entry = entries.setdefault(pick.entry, {"algo": config["identity"]["algo"]})
        if run.get("profile"):
            if entry.setdefault("profile", run["profile"]) != run["profile"]:
                raise ValueError(f"{pick.entry}'s picked runs used different profiles; export one profile at a time")
        entry.setdefault("per_dataset", {})[pick.dataset] = dict(run.get("overrides") or {})
    if not entries:
        raise ValueError("nothing was picked (every entry's tuning runs are incomplete), so there is nothing to export")
    header = (f"# Written by flowbench report from {Path(root).resolve()}.\n"
              f"# {selection.caption()}\n"
              "# Suite `algorithms:` entries: paste them under a suite's `algorithms:` to run the picked values.\n")
    atomic_write_text(Path(path), header + yaml.safe_dump(entries, sort_keys=False))
    return entries
