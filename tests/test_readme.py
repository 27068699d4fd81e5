"""The README stays true: its commands, run in order as a new user types them, exit as it says.

The commands are the ``flowbench`` commands of the bash blocks in "Set up" (the demo), "Quickstart", "CLI"
(the examples) and "Running on a cluster" (only the ``--dry-run`` lines: the others need a real cluster
profile). They run in a fresh directory on a fresh Minari root with ``FLOWBENCH_SCALE`` shrinking every step
count, episode count and dataset size, so relative paths (``runs/``, ``results/``) land there and the
checkout is left alone. A command is expected to exit 0 unless its comment says ``exit N``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO
from tests.test_report import latex_problems

SECTIONS = ("Set up", "Quickstart", "CLI", "Running on a cluster")
SCALE = "0.01"


@dataclass(frozen=True)
class ReadmeCommand:
    section: str
    command: str
    expected_exit: int


def readme_commands(text: str) -> list[ReadmeCommand]:
    """The README's ``flowbench`` commands, in order, with the exit status each one announces."""
    commands, section, fence = [], "", None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence is None:
            if line.startswith("## "):
                section = line[3:].strip()
            continue
        if fence != "bash" or section not in SECTIONS:
            continue
        code, _, comment = line.partition(" # ")
        announced = re.search(r"\bexit (\d+)", comment)
        for part in code.split("&&"):  # "python3 -m venv .venv && ... && flowbench demo": the flowbench part
            part = part.strip()
            if not part.startswith("flowbench "):
                continue
            if section == "Running on a cluster" and "--dry-run" not in part:
                continue
            commands.append(ReadmeCommand(section, part, int(announced.group(1)) if announced else 0))
    return commands


def run_in_order(commands: list[ReadmeCommand], cwd: Path, env: dict[str, str]) -> list[str]:
    """Runs each command; returns one line per command that exited otherwise than announced (stopping there)."""
    for item in commands:
        argv = shlex.split(item.command)
        result = subprocess.run([sys.executable, "-m", "harness.cli", *argv[1:]], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=900)
        if result.returncode != item.expected_exit:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            return [f"[{item.section}] {item.command}: exit {result.returncode}, expected {item.expected_exit}: "
                    + " | ".join(tail)]
    return []


def fresh_environment(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, FLOWBENCH_SCALE=SCALE, MINARI_DATASETS_PATH=str(tmp_path / "minari"))
    env.pop("SLURM_CONF", None)  # the dry run needs no cluster
    return env


def test_readme_commands_are_found_with_their_announced_exits():
    commands = readme_commands((REPO / "README.md").read_text())
    sections = [c.section for c in commands]
    assert sections[0] == "Set up" and commands[0].command == "flowbench demo"
    for section in SECTIONS[1:]:
        assert section in sections, f"no command found in README section {section!r}"
    assert sections == sorted(sections, key=SECTIONS.index), "commands out of README order"
    assert any(c.expected_exit == 2 for c in commands), "the CLI examples announce a refused command"
    assert all("--dry-run" in c.command for c in commands if c.section == "Running on a cluster")


@pytest.mark.slow
def test_readme_commands_run_in_order(tmp_path):
    text = (REPO / "README.md").read_text()
    commands = readme_commands(text)
    work = tmp_path / "user"
    work.mkdir()
    env = fresh_environment(tmp_path)
    assert run_in_order(commands, work, env) == []
    # what the commands promised is there, outside the checkout: the demo's results first
    demo = work / "runs" / "demo" / "report"
    names = {p.name for p in demo.iterdir()}
    assert {"evals.csv", "table.md", "table.tex", "aggregates.md", "aggregates.csv"} <= names
    for stem in ["learning_curves", "aggregate_intervals", "performance_profile", "probability_of_improvement"]:
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert {"README.md", "toy_actions.png", "toy_actions.md"} <= names and (demo / "timing" / "timing.png").exists()
    table = (demo / "table.md").read_text()
    assert "± n/a" not in table  # 3 seeds: every cell has its spread
    assert "[n/a]" not in (demo / "aggregates.md").read_text()  # and every aggregate its interval
    for figure in ("learning_curves.png", "toy_actions.png", "timing/timing.png"):
        assert f"]({figure})" in (demo / "README.md").read_text()
    assert latex_problems((demo / "table.tex").read_text()) == []
    demo_evals = sum(len(pd.read_csv(p)) for p in (work / "runs" / "demo").rglob("eval.csv"))
    assert len(pd.read_csv(demo / "evals.csv")) == demo_evals
    assert (work / "runs" / "single" / "fql" / "toy_bimodal-v0" / "seed3" / "summary.json").exists()
    assert (work / "results" / "toy" / "toy_figure.png").exists()
    assert (work / "quickstart_evals.csv").exists()

    # The same check catches a broken README: a copy whose first Quickstart command has a typo fails there.
    first = next(c for c in commands if c.section == "Quickstart")
    broken = text.replace(first.command, first.command.replace("data build", "data biuld"), 1)
    assert broken != text
    failures = run_in_order([c for c in readme_commands(broken) if c.section != "Set up"], work, env)
    assert len(failures) == 1 and "data biuld" in failures[0] and "exit 2, expected 0" in failures[0], failures
