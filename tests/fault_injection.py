"""Fault injection: ``flowbench run`` killed with SIGKILL at random moments must lose and repeat nothing.

Each trial trains one run, killing it ``--kills`` times: at a random moment of its life, or (every
other kill) the moment a checkpoint's temporary file appears, i.e. inside a checkpoint write. It is
then run to the end and compared with one uninterrupted run of the same config: every train.csv and
eval.csv step exactly once and with the same values (wall-clock seconds aside), and the final
checkpoint's agent and sampler bit for bit the same.

    python -m tests.fault_injection --trials 10 --kills 5          # the figures in the notes
    python -m tests.fault_injection --trials 2 --kills 3           # CI's short form (tests/test_faults.py)

Exit code 0 when every trial matches; the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from harness.files import is_temporary, load_checkpoint

RUN_ARGS = ["bc", "toy/bimodal-v0", "--profile", "cpu", "--steps", "800", "--eval-every", "200", "--eval-episodes", "3",
            "--log-every", "50", "--checkpoint-every", "50"]


def flowbench_run(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *RUN_ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_at_random(out: Path, rng: random.Random, inside_checkpoint_write: bool, max_wait: float) -> str:
    """Starts the run and SIGKILLs it; returns when it was killed ("random", "checkpoint write", or "finished")."""
    proc = flowbench_run(out)
    deadline = time.monotonic() + (max_wait if inside_checkpoint_write else rng.uniform(0.5, max_wait))
    moment = "random"
    while time.monotonic() < deadline and proc.poll() is None:
        if inside_checkpoint_write and out.is_dir() and any(is_temporary(p) and "checkpoint" in p.name
                                                            for p in out.iterdir()):
            moment = "checkpoint write"
            break
        time.sleep(0.0005 if inside_checkpoint_write else 0.01)
    if proc.poll() is not None:
        proc.communicate()
        return "finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return moment


def finish(out: Path) -> None:
    proc = flowbench_run(out)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the resumed run failed (rc {proc.returncode}): {err}")


def compare(run: Path, reference: Path) -> list[str]:
    """What differs between a run and the uninterrupted reference (empty: nothing)."""
    problems = []
    for name in ("train.csv", "eval.csv"):
        got, want = pd.read_csv(run / name), pd.read_csv(reference / name)
        if list(got["step"]) != list(want["step"]):
            problems.append(f"{name} steps {list(got['step'])} != {list(want['step'])}")
        elif not got.drop(columns="seconds").equals(want.drop(columns="seconds")):
            problems.append(f"{name} values differ")
    got, want = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    if not torch.equal(got["sampler"], want["sampler"]):
        problems.append("sampler state differs")
    for key, value in want["agent"].items():
        if not _equal(got["agent"].get(key), value):
            problems.append(f"checkpoint agent[{key!r}] differs")
    return problems


def _equal(a: object, b: object) -> bool:
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in b)
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kills", type=int, default=5, help="kills per trial")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-wait", type=float, default=12.0, help="latest kill, seconds after a start")
    parser.add_argument("--workdir", help="keep the runs here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="flowbench-faults-"))
    reference = work / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    finish(reference)
    moments: dict[str, int] = {}
    failures = []
    for trial in range(args.trials):
        run = work / f"trial{trial}"
        shutil.rmtree(run, ignore_errors=True)
        for kill in range(args.kills):
            moment = kill_at_random(run, rng, inside_checkpoint_write=kill % 2 == 1, max_wait=args.max_wait)
            moments[moment] = moments.get(moment, 0) + 1
        finish(run)
        problems = compare(run, reference)
        print(f"trial {trial}: {'identical' if not problems else '; '.join(problems)}", flush=True)
        if problems:
            failures.append(trial)
    summary = {"trials": args.trials, "kills": sum(v for k, v in moments.items() if k != "finished"),
               "kill_moments": moments, "failed_trials": failures}
    print(json.dumps(summary), flush=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
