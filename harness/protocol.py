"""A suite's reporting protocol: which metric and which evaluations make a run's final score.

A suite declares it (``metric``, ``final`` in its YAML, checked by ``check_protocol`` when the suite is
loaded); ``flowbench sweep`` records it in the suite's results root (``suite.json``, ``rundir.PROTOCOL``:
``{"suite": NAME, "metric": ..., "final": ...}``); ``report``, ``aggregate`` and ``plot`` read it back
(``resolve_protocol``), ``--metric``/``--final`` overriding it. Runs of no suite get the defaults: the
normalised score at the last evaluation. ``origin`` says where a protocol came from, for captions.
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


def protocol_record(suite: str, suite_file: Path, protocol: "ReportProtocol") -> dict[str, Any]:
    """What ``suite.json`` holds for the suite named ``suite``, read from ``suite_file``."""
    return {"suite": suite, "path": str(suite_file), "metric": protocol.metric, "final": protocol.final}


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


def recorded_protocols(root: Path) -> list[ReportProtocol]:
    """The protocols sweeps recorded for the runs under ``root``: the nearest ``suite.json`` at ``root`` or
    above it (``root`` is a suite's results root, or a directory inside one), else every one below it
    (``root`` holds suites' results roots); none for runs of no suite."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {root}")
    nearest = next((d / rundir.PROTOCOL for d in (root, *root.parents) if (d / rundir.PROTOCOL).is_file()), None)
    files = [nearest] if nearest else rundir.find_protocol_files(root)
    protocols = []
    for path in files:
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
