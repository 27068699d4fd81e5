"""What state each run of a results directory is in: pending, running, done, failed or diverged.

Read from the run directory's files, and from the scheduler for runs submitted as jobs:
- ``summary.json``  the run finished (``diverged`` if its final score is not finite);
- ``error.txt``     the traceback of the attempt that failed (``diverged`` for non-finite losses);
- ``job.json``      the job the run was last submitted in (written by ``flowbench sweep``); its state
                    comes from SLURM accounting (``sacct``, through submitit) or, for a local job,
                    from whether its process is alive;
- ``train.csv`` / ``eval.csv`` step reached and last score;
- ``.lock``         the process writing the run now (``harness.locks``): the run is running, whoever started it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import rundir
from harness.files import read_csv, read_json
from harness.locks import current_holder

STATES = ("pending", "running", "done", "failed", "diverged")
# SLURM states of a job that may still run the run (submitit reports "CANCELLED by 0" etc.).
SLURM_ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD")


@dataclass
class RunStatus:
    name: str
    run_dir: Path
    state: str
    step: int
    steps: int | None
    score: float | None
    job_id: str | None
    error: str | None = None  # failed runs: the exception line (full traceback in error.txt)
    job_state: str | None = None  # the scheduler's word for the job, when it has one
    writer: str | None = None  # the process holding the run directory's lock (pid, host, job)

    @property
    def progress(self) -> str:
        return f"{self.step}/{self.steps}" if self.steps else str(self.step)


def unfinished_jobs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """The job records of the unfinished runs among ``run_dirs`` (a finished run's job no longer matters)."""
    return [job for d in run_dirs if not rundir.is_finished(d) and (job := read_json(d / rundir.JOB))]


def job_states(jobs: list[dict[str, Any]]) -> dict[str, str]:
    """The scheduler's state of recorded jobs by job id (``RUNNING``, ``COMPLETED``, ...); unknown ones are left out.

    SLURM jobs are asked about in one ``sacct`` call through submitit's watcher; a local job is
    running while its process is alive.
    """
    import submitit

    states: dict[str, str] = {}
    slurm = {j["job_id"]: submitit.SlurmJob(folder=j["folder"], job_id=j["job_id"])
             for j in jobs if j.get("executor") == "slurm"}
    if slurm:
        watcher = next(iter(slurm.values())).watcher
        watcher.update()  # every job registered above, in one call
        for job_id in slurm:
            state = watcher.get_state(job_id, mode="cache")
            if state != "UNKNOWN":
                states[job_id] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    for job in jobs:
        if job.get("executor") == "local" and job.get("pid"):
            try:
                os.kill(int(job["pid"]), 0)
                states[job["job_id"]] = "RUNNING"
            except ProcessLookupError:
                states[job["job_id"]] = "FINISHED"
            except PermissionError:
                states[job["job_id"]] = "RUNNING"
    return states


def last_error_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def non_finite_logs(run_dir: Path) -> bool:
    """Any NaN/inf loss in train.csv or score in eval.csv."""
    for row in read_csv(run_dir / rundir.TRAIN_LOG):
        if any(v not in ("", None) and not _finite(v) for k, v in row.items() if k not in ("step", "seconds")):
            return True
    return any(not _finite(r.get("normalized_score")) for r in read_csv(run_dir / rundir.EVAL_LOG))


def run_status(run_dir: Path, name: str | None = None, states: dict[str, str] | None = None) -> RunStatus:
    """The state of one run directory (see the module docstring); ``states`` from ``job_states``."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / rundir.CONFIG) or {}
    job = read_json(run_dir / rundir.JOB)
    train_rows, eval_rows = read_csv(run_dir / rundir.TRAIN_LOG), read_csv(run_dir / rundir.EVAL_LOG)
    step = max([int(float(r["step"])) for r in train_rows + eval_rows] or [0])
    score = float(eval_rows[-1]["normalized_score"]) if eval_rows else None
    steps = config.get("run", {}).get("steps") or (job or {}).get("steps")
    status = RunStatus(name or str(run_dir), run_dir, "pending", step, steps, score, (job or {}).get("job_id"))
    summary = read_json(run_dir / rundir.SUMMARY)
    error_path = run_dir / rundir.ERROR
    if summary is not None:
        final = summary.get("final") or {}
        status.step = summary.get("steps", step)
        status.state = "done" if _finite(final.get("normalized_score")) and not non_finite_logs(run_dir) else "diverged"
        return status
    holder = current_holder(run_dir)  # a finished run has no writer
    if holder is not None:
        status.writer = holder.describe()
    if error_path.exists():
        text = error_path.read_text()
        status.error = last_error_line(text)
        status.state = "diverged" if "FloatingPointError" in text or "non-finite" in text else "failed"
        return status
    if non_finite_logs(run_dir):
        status.state = "diverged"
        return status
    if holder is not None:
        status.state = "running"
        return status
    if job and states is None:
        states = job_states([job])
    status.job_state = (states or {}).get(status.job_id or "")
    if status.job_state is None or status.job_state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING"):
        status.state = "pending"
    elif status.job_state in SLURM_ACTIVE:
        # a job packing several runs runs them one after another: the ones not started yet wait
        status.state = "running" if config else "pending"
    elif job and job.get("executor") == "slurm":
        status.state = "failed"
        status.error = f"SLURM job {job['job_id']} ended {status.job_state} without finishing the run; " \
                       f"log: {job.get('stderr', job['folder'])}"
    return status


def collect_status(root: Path) -> list[RunStatus]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {root}")
    dirs = rundir.find_run_dirs(root)
    jobs = unfinished_jobs(dirs)
    states = job_states(jobs)
    runs = [run_status(d, str(d.relative_to(root)) if d != root else d.name, states) for d in dirs]
    if not runs:
        raise FileNotFoundError(f"no runs under {root}")
    return runs


def status_table(runs: list[RunStatus]) -> str:
    """A fixed-width table, one row per run, then a count per state and the errors of failed runs."""
    from tabulate import tabulate

    rows = [[r.name, r.state, r.progress, "" if r.score is None else f"{r.score:.1f}", r.job_id or "",
             r.job_state or "", r.writer or ""] for r in runs]
    text = tabulate(rows, headers=["run", "state", "step", "score", "job", "job state", "written by"],
                    disable_numparse=True)
    counts = ", ".join(f"{sum(r.state == s for r in runs)} {s}" for s in STATES if any(r.state == s for r in runs))
    text += f"\n\n{len(runs)} runs: {counts}"
    errors = [r for r in runs if r.error]
    if errors:
        text += "\n\nerrors:\n" + "\n".join(f"  {r.name}: {r.error}  ({r.run_dir / rundir.ERROR})"
                                            if (r.run_dir / rundir.ERROR).exists() else f"  {r.name}: {r.error}"
                                            for r in errors)
    return text
