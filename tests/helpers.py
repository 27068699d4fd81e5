"""Small helpers shared by the test files: the real CLI in a subprocess, waiting, suite files, sacct, small agents."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import yaml

from algos import make_agent, resolve_config
from harness.data import TransitionBuffer

REPO = Path(__file__).resolve().parent.parent


def flowbench(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``flowbench ARGS`` as a user runs it: a new process, its exit code and output."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def start_flowbench(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``flowbench ARGS`` started in the background (text pipes for stdout and stderr)."""
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def preempt_and_wait(run: Path, job_id: str, after_step: int = 500) -> None:
    """Once ``run`` has logged ``after_step``, sends its SLURM job the preemption signal (USR2) and waits until the
    requeued job has finished the run."""

    def step_reached() -> int:
        try:
            return int(pd.read_csv(run / "train.csv")["step"].max())
        except (FileNotFoundError, pd.errors.EmptyDataError, KeyError, ValueError):
            return 0

    wait_for(lambda: step_reached() >= after_step, 120, "training to start")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    wait_for(lambda: (run / "summary.json").exists(), 300, "the requeued run to finish")


def write_suite(path: Path, name: str, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump({"name": name, **fields}))
    return path


def sacct(*args: str) -> str:
    return subprocess.run(["sacct", "-n", "-P", *args], capture_output=True, text=True, timeout=30, check=True).stdout


# -- small agents for white-box tests of an algorithm's terms -------------------------------------

SMALL = {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32"}


def small_agent(name: str, data, **overrides):
    torch.manual_seed(0)
    config = resolve_config(name, {**SMALL, **overrides})
    agent = make_agent(name, data.obs_dim, data.act_dim, config)
    batch = agent.with_seed_axis(TransitionBuffer(data).sample(64, torch.Generator().manual_seed(0)))
    return agent, batch


def generator_copy(source) -> torch.Generator:
    """A generator in the current state of ``source`` (a generator, or an agent: its seed-0 generator), to replay its
    next draws."""
    g = torch.Generator()
    g.set_state((source if isinstance(source, torch.Generator) else source.generators[0]).get_state())
    return g
