"""A suite's reporting protocol: which metric and which evaluations make a run's final score, and by which
rule a grid's variant is picked per task.

A suite declares it (``metric``, ``final`` in its YAML, checked by ``check_protocol`` when the suite is
loaded); ``flowbench sweep`` records it in the suite's results root (``suite.json``, ``rundir.PROTOCOL``:
``{"suite": NAME, "metric": ..., "final": ...}``); ``report``, ``aggregate`` and ``plot`` read it back
(``resolve_protocol``), ``--metric``/``--final`` overriding it. Runs of no suite get the defaults: the
normalised score at the last evaluation. ``origin`` says where a protocol came from, for captions.

Selection (``SelectionRule``; a suite's ``selection: {rule: best-per-task, tune_seeds: [0, 1]}``, recorded in
``suite.json`` as ``"selection"``; ``--select``/``--tune-seeds``/``--tune-on-reported-seeds`` override it):
- ``none``: every variant of a grid is its own column, on every seed.
- ``best-per-task``: per suite entry and dataset, the variant with the highest mean final score (this
  protocol's metric and final rule) over the *tuning seeds*; the table then shows that variant's scores on
  the *reported seeds*, every seed of the runs but the tuning ones, and names the value picked. Every
  entry is reported on the same seeds, a grid of one variant too. Picking needs a final score on every
  tuning seed from every variant of the entry on that dataset (else no pick: "not picked"); a tie goes to
  the variant whose label sorts first.
- Picking on the seeds that are reported is refused unless asked for (``--tune-on-reported-seeds``): the
  maximum over variants of a noisy mean is biased upwards, so the reported number would be inflated by the
  very noise it was picked on. When asked for, every seed is reported and the caption says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import rundir

# What a suite may declare as its metric: scores on one scale across tasks (raw returns are not).
PROTOCOL_METRICS = ("normalized_score", "success_rate")
FINAL_CHOICES = "last, avg-last-K with K >= 1 (e.g. avg-last-3)"
FINAL_RULE = re.compile(r"^(last|avg-last-(-?\d+))$")
SELECTION_RULES = ("none", "best-per-task")
SELECTION_FIELDS = ("rule", "tune_seeds")


def protocol_record(suite: str, suite_file: Path, protocol: "ReportProtocol",
                    selection: "SelectionRule | None" = None) -> dict[str, Any]:
    """What ``suite.json`` holds for the suite named ``suite``, read from ``suite_file``."""
    return {"suite": suite, "path": str(suite_file), "metric": protocol.metric, "final": protocol.final,
            "selection": None if selection is None else {"rule": selection.rule,
                                                          "tune_seeds": list(selection.tune_seeds)}}


def parse_final(rule: str) -> int:
    """How many of a run's last evaluations make its final score: ``last`` → 1, ``avg-last-K`` → K."""
    match = FINAL_RULE.match(rule)
    if not match:
        raise ValueError(f"--final must be 'last' or 'avg-last-K' (e.g. avg-last-3), got {rule!r}")
    k = 1 if match.group(1) == "last" else int(match.group(2))
    if k < 1:
        raise ValueError(f"--final avg-last-K needs K >= 1, got {k}")
    return k


@dataclass(frozen=True)
class ReportProtocol:
    """How a table is read: the metric, and which evaluations make a run's final score (``parse_final``'s
    rules); ``origin`` says where it came from, for the caption."""

    metric: str = "normalized_score"
    final: str = "last"
    origin: str = "default protocol"

    @property
    def last_k(self) -> int:
        return parse_final(self.final)


def check_protocol(values: dict[str, Any], where: str, origin: str) -> ReportProtocol:
    """The protocol in ``values`` (a suite's YAML, or a ``suite.json``), defaults for absent keys; a bad
    value raises ``ValueError`` naming ``where``, the key and the allowed values."""
    default = ReportProtocol()
    metric = values.get("metric", default.metric)
    if metric not in PROTOCOL_METRICS:
        raise ValueError(f"{where}: metric {metric!r} is not allowed; allowed values: {', '.join(PROTOCOL_METRICS)}")
    final = values.get("final", default.final)
    try:
        parse_final(final if isinstance(final, str) else repr(final))
    except ValueError:
        raise ValueError(f"{where}: final {final!r} is not allowed; allowed values: {FINAL_CHOICES}") from None
    return ReportProtocol(metric, final, origin)


def protocol_files(root: Path) -> list[Path]:
    """The ``suite.json`` that applies to the runs under ``root``: the nearest at ``root`` or above it (``root`` is
    a suite's results root, or a directory inside one), else every one below it (``root`` holds suites')."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {root}")
    nearest = next((d / rundir.PROTOCOL for d in (root, *root.parents) if (d / rundir.PROTOCOL).is_file()), None)
    return [nearest] if nearest else rundir.find_protocol_files(root)


def recorded_protocols(root: Path) -> list[ReportProtocol]:
    """The protocols sweeps recorded for the runs under ``root``: the nearest ``suite.json`` at ``root`` or
    above it (``root`` is a suite's results root, or a directory inside one), else every one below it
    (``root`` holds suites' results roots); none for runs of no suite."""
    protocols = []
    for path in protocol_files(root):
        recorded = json.loads(path.read_text())
        if not isinstance(recorded, dict):
            raise ValueError(f"{path}: a suite's protocol file is a JSON object, got {type(recorded).__name__}")
        suite = recorded.get("suite", path.parent.name)
        protocols.append(check_protocol(recorded, str(path), f"protocol of suite {suite}"))
    return protocols


def resolve_protocol(root: Path, metric: str | None = None, final: str | None = None) -> ReportProtocol:
    """The protocol for the runs under ``root``: ``metric`` and ``final`` where given (the command line's
    ``--metric``/``--final``), else the recorded suite protocol's, else the defaults. Suites under ``root``
    that disagree are an error unless both are given: their runs cannot share one table's reading."""
    given = [f"--{name}" for name, value in (("metric", metric), ("final", final)) if value is not None]
    if len(given) == 2:
        return ReportProtocol(metric, final, "--metric and --final from the command line")
    recorded = recorded_protocols(root)
    if len({(p.metric, p.final) for p in recorded}) > 1:
        raise ValueError(f"the runs under {root} come from suites with different protocols "
                         f"({'; '.join(f'{p.origin}: {p.metric}, {p.final}' for p in recorded)}); "
                         f"report one suite at a time, or give both --metric and --final")
    base = recorded[0] if recorded else ReportProtocol()
    origin = base.origin + (f"; {' and '.join(given)} from the command line" if given else "")
    return ReportProtocol(metric or base.metric, final or base.final, origin)


@dataclass(frozen=True)
class SelectionRule:
    """How a grid's variant is picked per task (see the module docstring): ``rule``, the seeds it picks on,
    and whether the reported seeds may be among them; ``origin`` says where it came from."""

    rule: str = "none"
    tune_seeds: tuple[int, ...] = ()
    on_reported_seeds: bool = False
    origin: str = "default"

    @property
    def picks(self) -> bool:
        return self.rule != "none"

    def describe(self, reported: list[int] | None = None) -> str:
        """The rule in words, for captions and exported files."""
        if not self.picks:
            return "no selection: every variant shown"
        tune = ", ".join(map(str, self.tune_seeds)) if self.tune_seeds else "every seed"
        text = f"best-per-task: per algorithm and dataset, the variant with the highest mean final score on seeds {tune}"
        if reported is not None:
            text += f", reported on seeds {', '.join(map(str, reported))}"
        if self.on_reported_seeds:
            text += " (picked on reported seeds: the scores are inflated by the pick, not held-out)"
        return text


def parse_seed_list(value: Any, where: str) -> tuple[int, ...]:
    if not (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                        for s in value)):
        raise ValueError(f"{where} must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: seeds repeat: {value}")
    return tuple(value)


def check_selection(values: Any, seeds: list[int] | None, where: str, origin: str = "") -> SelectionRule | None:
    """The ``selection`` block of a suite (``seeds``: its seeds) or of a ``suite.json`` (``seeds`` None): None when
    absent; a bad one raises ``ValueError`` naming ``where``, the key and what is allowed. A suite can only
    declare a rule that leaves seeds to report: picking on the reported seeds is a command-line choice."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise ValueError(f"{where}: selection must be a mapping such as {{rule: best-per-task, tune_seeds: [0, 1]}}, "
                         f"got {values!r}")
    unknown = sorted(set(values) - set(SELECTION_FIELDS))
    if unknown:
        raise ValueError(f"{where}: selection: unknown field(s) {', '.join(map(repr, unknown))}; valid fields: "
                         f"{', '.join(SELECTION_FIELDS)}")
    rule = values.get("rule", "best-per-task")
    if rule not in SELECTION_RULES:
        raise ValueError(f"{where}: selection.rule {rule!r} is not allowed; allowed values: {', '.join(SELECTION_RULES)}")
    if rule == "none":
        return SelectionRule(origin=origin or f"{where}: selection")
    if "tune_seeds" not in values:
        raise ValueError(f"{where}: selection.rule best-per-task needs tune_seeds (the seeds the pick is made on; "
                         f"the others are reported)")
    tune = parse_seed_list(values["tune_seeds"], f"{where}: selection.tune_seeds")
    if seeds is not None:
        if set(tune) - set(seeds):
            raise ValueError(f"{where}: selection.tune_seeds {sorted(set(tune) - set(seeds))} are not seeds of the "
                             f"suite ({seeds})")
        if set(seeds) <= set(tune):
            raise ValueError(f"{where}: selection.tune_seeds are every seed of the suite, so none is left to report; "
                             f"tune on some seeds and report on the others")
    return SelectionRule(rule, tune, False, origin or f"{where}: selection")


def recorded_selections(root: Path) -> list[SelectionRule | None]:
    """The selection rules sweeps recorded for the runs under ``root`` (as ``recorded_protocols`` finds them)."""
    out = []
    for path in protocol_files(root):
        recorded = json.loads(path.read_text())
        suite = recorded.get("suite", path.parent.name) if isinstance(recorded, dict) else path.parent.name
        out.append(check_selection(recorded.get("selection") if isinstance(recorded, dict) else None, None,
                                   str(path), f"selection of suite {suite}"))
    return out


def resolve_selection(root: Path, select: str | None = None, tune_seeds: list[int] | None = None,
                      on_reported_seeds: bool = False) -> SelectionRule:
    """The selection rule for the runs under ``root``: the command line's (``--select``, ``--tune-seeds``,
    ``--tune-on-reported-seeds``) where given, else the recorded suite's, else none. ``best-per-task``
    without tuning seeds picks on the reported ones: refused unless ``on_reported_seeds``."""
    if select is not None and select not in SELECTION_RULES:
        raise ValueError(f"--select must be one of {', '.join(SELECTION_RULES)}, got {select!r}")
    recorded = [r for r in recorded_selections(root) if r is not None]
    if select is None and len({(r.rule, r.tune_seeds) for r in recorded}) > 1:
        raise ValueError(f"the runs under {root} come from suites with different selection rules "
                         f"({'; '.join(f'{r.origin}: {r.describe()}' for r in recorded)}); give --select")
    base = recorded[0] if recorded and select in (None, recorded[0].rule) else None
    rule = select or (base.rule if base else "none")
    if rule == "none":
        if tune_seeds or on_reported_seeds:
            raise ValueError("--tune-seeds and --tune-on-reported-seeds apply to --select best-per-task only")
        return SelectionRule(origin="--select none" if select else (base.origin if base else "default"))
    given = [name for name, value in (("--select", select), ("--tune-seeds", tune_seeds),
                                      ("--tune-on-reported-seeds", on_reported_seeds)) if value]
    origin = "; ".join(filter(None, [base.origin if base else "", " and ".join(given) + " from the command line"
                                     if given else ""]))
    tune = tuple(tune_seeds) if tune_seeds else (base.tune_seeds if base else ())
    if tune_seeds is not None:
        parse_seed_list(list(tune_seeds), "--tune-seeds")
    if not tune and not on_reported_seeds:
        raise ValueError("--select best-per-task needs the seeds to pick on: --tune-seeds (e.g. 0,1; the other seeds "
                         "are reported) or the suite's selection.tune_seeds. Picking on the seeds that are reported "
                         "inflates their scores; to do it anyway, say --tune-on-reported-seeds (the caption says so)")
    return SelectionRule(rule, tune, on_reported_seeds, origin)
