"""``flowbench sweep``: a suite's runs as submitit jobs (one SLURM job array, or local processes).

A sweep is idempotent. Each run of the suite is looked at first: a finished run is never redone,
a run whose job is still queued or running is left alone, a diverged run is left for a person to
look at, and everything else is submitted (half-done runs resume from their checkpoints). The
runs to do go into ONE submission: a SLURM job array (``executor.batch()``), ``runs_per_job`` runs
per array task (with ``seeds_per_job`` N, up to N seeds of one algorithm and dataset train together
as one batched model, and a task trains ``runs_per_job`` such batches), at most ``array_parallelism``
tasks at once. Each run directory gets a ``job.json``
naming the job, which ``flowbench status`` reads; the suite's results root gets ``suite.json``, its
reporting protocol (metric, final rule), which ``flowbench report``/``aggregate``/``plot`` read.

The executor is always named (submitit picks SLURM by itself whenever ``srun`` is on PATH):
- ``local``: one process per job on this machine, at most cores / cpus-per-job at once, each with
  ``cpus`` torch threads (several multi-threaded torch processes on the same cores slow each other
  down badly); the sweep waits for them with a progress bar.
- ``slurm``: sbatch, with the cluster profile's partition/account/qos/constraint, setup lines and
  extra sbatch parameters; returns once submitted (``--wait`` waits).
- ``debug``: in this process, one job after another (submitit's debug executor; pdb on error).
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import datasets, rundir
from harness.cluster.jobs import RunJob
from harness.cluster.status import SLURM_ACTIVE, job_states, run_status, unfinished_jobs
from harness.cluster.suites import (SHIPPED_DIR, Resources, Suite, SuiteError, as_mapping, check_fields,
                                    parse_resources, read_yaml_mapping, shipped_dir)
from harness.files import atomic_write_text, read_json
from harness.locks import RunDirLock
from harness.protocol import protocol_record
from harness.run import RunSpec, finished_summary, identity_diff, run_identity
from harness.training import resolve_device

PROFILES_DIR = SHIPPED_DIR / "profiles"
EXECUTORS = ("local", "slurm", "debug")
PROFILE_FIELDS = ("description", "partition", "account", "qos", "constraint", "exclude", "setup",
                  "additional_parameters", "signal_delay_s", "resources")


@dataclass(frozen=True)
class ClusterProfile:
    """Where and how a cluster runs jobs; ``resources`` override the suite's (e.g. smaller jobs on a test cluster)."""

    name: str = "default"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    setup: tuple[str, ...] = ()  # shell lines run in the sbatch script before the job (modules, venv)
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other sbatch option
    signal_delay_s: int | None = None  # SIGUSR2 this long before the time limit (submitit's default: 90)
    resources: dict[str, Any] = field(default_factory=dict)


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in shipped_dir(PROFILES_DIR).glob("*.yaml"))


def load_profile(name_or_path: str) -> ClusterProfile:
    """A cluster profile: a YAML path, or the name of one in ``slurm/profiles/``."""
    path = Path(name_or_path)
    if not path.is_file():
        path = shipped_dir(PROFILES_DIR) / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SuiteError(f"no cluster profile {name_or_path!r}; shipped profiles: {', '.join(shipped_profiles())}")
    raw = read_yaml_mapping(path, "cluster profile")
    where = f"cluster profile {path.name}"
    check_fields(raw, PROFILE_FIELDS, where)
    setup = raw.get("setup") or []
    if not isinstance(setup, list) or not all(isinstance(line, str) for line in setup):
        raise SuiteError(f"{where}: setup must be a list of shell lines")
    resources = as_mapping(raw.get("resources"), f"{where}: resources")
    parse_resources(resources, f"{where}: resources")  # checked here, applied over the suite's
    return ClusterProfile(
        name=path.stem, setup=tuple(setup), resources=resources,
        additional_parameters=as_mapping(raw.get("additional_parameters"), f"{where}: additional_parameters"),
        signal_delay_s=raw.get("signal_delay_s"),
        **{k: None if raw.get(k) is None else str(raw[k]) for k in ("partition", "account", "qos", "constraint", "exclude")},
    )


@dataclass
class PlannedRun:
    """A run of the suite, what state it is in, and what the sweep does with it."""

    name: str
    label: str  # the suite's name for the algorithm entry (an algorithm may appear with several configs)
    spec: RunSpec
    state: str
    step: int
    action: str  # start | resume | skip
    why: str
    job_id: str | None = None

    @property
    def submit(self) -> bool:
        return self.action != "skip"


def plan(suite: Suite) -> list[PlannedRun]:
    """Looks at every run directory of the suite; raises if one holds a run of another config."""
    runs = []
    mismatched = []
    dirs = [Path(r.spec.out_dir()) for r in suite.runs]
    states = job_states(unfinished_jobs(dirs))
    for run, out in zip(suite.runs, dirs):
        spec = run.spec
        identity = run_identity(spec)
        config = read_json(out / rundir.CONFIG)
        if config is not None and config.get("identity") != identity:
            mismatched.append(f"  {out}: {identity_diff(config['identity'], identity)}")
            continue
        status = run_status(out, run.name, states)
        step = status.step
        if finished_summary(spec) is not None:
            action, why = "skip", "finished"
        elif status.state == "diverged":
            action, why = "skip", "diverged; delete the run directory to run it again"
        elif status.writer:
            action, why = "skip", f"being written by {status.writer}"
        elif status.job_state in SLURM_ACTIVE:
            action, why = "skip", f"job {status.job_id} is {status.job_state.lower()}"
        elif (out / rundir.CHECKPOINT).exists():
            action = "resume"
            why = f"from its checkpoint (logs reach step {step})" + (" after an error" if status.state == "failed" else "")
        else:
            action, why = "start", "after an error" if status.state == "failed" else "new"
        runs.append(PlannedRun(run.name, run.label, spec, status.state, step, action, why, status.job_id))
    if mismatched:
        raise SuiteError("these run directories hold runs of a different config (use another --results, or delete "
                         "them to start over):\n" + "\n".join(mismatched))
    return runs


def plan_table(planned: list[PlannedRun]) -> str:
    from tabulate import tabulate

    rows = [[p.name, p.state, p.step, p.job_id or "", p.action, p.why] for p in planned]
    return tabulate(rows, headers=["run", "state", "step", "job", "action", ""], disable_numparse=True)


def job_groups(planned: list[PlannedRun], runs_per_job: int, seeds_per_job: int = 1) -> list[list[list[PlannedRun]]]:
    """The runs to submit, as jobs of ``runs_per_job`` units; a unit is up to ``seeds_per_job`` seeds of
    one suite entry on one dataset (same config but the seed), trained together as one batched model."""
    units: list[list[PlannedRun]] = []
    for p in (p for p in planned if p.submit):
        last = units[-1] if units else None
        if last and len(last) < seeds_per_job and (last[0].label, last[0].spec.dataset) == (p.label, p.spec.dataset):
            last.append(p)
        else:
            units.append([p])
    return [units[i:i + runs_per_job] for i in range(0, len(units), runs_per_job)]


def make_executor(kind: str, folder: Path, suite_name: str, resources: Resources, profile: ClusterProfile):
    """A submitit ``AutoExecutor`` for ``kind``, named explicitly (submitit would pick SLURM whenever srun is on PATH)."""
    import submitit

    if kind not in EXECUTORS:
        raise SuiteError(f"unknown executor {kind!r}; valid choices: {', '.join(EXECUTORS)}")
    executor = submitit.AutoExecutor(folder=folder, cluster=kind, slurm_max_num_timeout=resources.max_timeouts,
                                     slurm_python=f"{shlex.quote(sys.executable)} -u -m harness.cluster.preemption")
    params: dict[str, Any] = dict(name=f"flowbench-{suite_name}", timeout_min=resources.time_min, mem_gb=resources.mem_gb,
                                  cpus_per_task=resources.cpus, gpus_per_node=resources.gpus)
    if kind == "slurm":
        params.update(slurm_array_parallelism=resources.array_parallelism, slurm_partition=profile.partition,
                      slurm_account=profile.account, slurm_qos=profile.qos, slurm_constraint=profile.constraint,
                      slurm_exclude=profile.exclude, slurm_setup=list(profile.setup) or None,
                      slurm_additional_parameters=dict(profile.additional_parameters) or None,
                      slurm_signal_delay_s=profile.signal_delay_s)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def record_job(job: Any, units: list[list[PlannedRun]], kind: str, folder: Path, suite: Suite) -> None:
    """Writes ``job.json`` in each run directory of the job (the sweep is its only writer)."""
    group = [p for unit in units for p in unit]
    record = {
        "job_id": str(job.job_id),
        "executor": kind,
        "folder": str(folder),
        "suite": suite.name,
        "runs_in_job": [p.name for p in group],
        "seeds_together": [[p.name for p in unit] for unit in units if len(unit) > 1],
        "submitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
    }
    if kind == "local":
        record["pid"] = int(job.job_id)
    for p in group:
        out = Path(p.spec.out_dir())
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / rundir.JOB, json.dumps({**record, "run": p.name, "label": p.label,
                                                      "steps": p.spec.steps}, indent=2))


def record_protocol(suite: Suite) -> None:
    """Writes the suite's reporting protocol at its results root, so that the tables of these runs are read
    as the suite says without the suite file at hand (results are often reported on another machine)."""
    suite.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(suite.root / rundir.PROTOCOL, json.dumps(protocol_record(suite.name, suite.path, suite.protocol,
                                                                                     suite.selection),
                                                              indent=2))


@dataclass
class SweepResult:
    planned: list[PlannedRun]
    job_ids: list[str]
    failed: list[str] = field(default_factory=list)  # "run: error line" of runs that failed or diverged


def sweep(suite: Suite, executor: str = "local", profile: ClusterProfile | None = None, dry_run: bool = False,
          wait: bool | None = None, echo: Callable[[str], None] = print) -> SweepResult:
    """Plans the suite, prints the plan, and submits what is left to do (nothing with ``dry_run``)."""
    if executor not in EXECUTORS:
        raise SuiteError(f"unknown executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    profile = profile or ClusterProfile()
    resources = parse_resources(profile.resources, f"cluster profile {profile.name}: resources", base=suite.resources)
    check_devices(suite, executor, resources)
    # one sweep of a suite at a time: two whose planning overlapped would both submit the same runs
    with RunDirLock(suite.root, advice="another flowbench sweep of this suite is planning or running it; wait for "
                                       "it, or see `flowbench status`"):
        return _sweep(suite, executor, profile, resources, dry_run, wait, echo)


def check_devices(suite: Suite, executor: str, resources: Resources) -> None:
    """A run's device must exist where its job runs: here for local and debug jobs; on SLURM, a CUDA run
    needs a job that asks for GPUs (this machine, often a login node, may have none)."""
    for device in sorted({run.spec.device for run in suite.runs}):
        if executor == "slurm":
            if device.startswith("cuda") and resources.gpus < 1:
                raise SuiteError(f"suite {suite.name}: device {device!r} needs resources.gpus >= 1 (jobs ask for "
                                 f"{resources.gpus} GPUs)")
            continue
        try:
            resolve_device(device)
        except ValueError as e:
            raise SuiteError(f"suite {suite.name}: {e} (the {executor} executor runs jobs on this machine)") from None


def _sweep(suite: Suite, executor: str, profile: ClusterProfile, resources: Resources, dry_run: bool,
           wait: bool | None, echo: Callable[[str], None]) -> SweepResult:
    planned = plan(suite)
    echo(f"suite {suite.name}: {len(planned)} runs under {suite.root}")
    for line in suite.grids:  # each grid's expansion, before the runs it makes
        echo(f"grid {line}")
    echo(plan_table(planned))
    groups = job_groups(planned, resources.runs_per_job, resources.seeds_per_job)
    runs_to_submit = sum(len(unit) for g in groups for unit in g)
    if not dry_run:  # also with nothing to submit: sweeping again records it for results swept before it existed
        record_protocol(suite)
    if dry_run or not groups:
        echo(f"\n{'dry run: ' if dry_run else ''}{runs_to_submit} runs to submit in {len(groups)} jobs"
             + ("" if dry_run else "; nothing submitted"))
        return SweepResult(planned, [])

    for dataset_id, transitions in suite.datasets_to_build().items():
        if not datasets.is_local(dataset_id):  # built once here, not by several jobs at once
            echo(f"building {dataset_id} ...")
            datasets.build(dataset_id, transitions)
    for group in groups:
        for p in (p for unit in group for p in unit):
            (Path(p.spec.out_dir()) / rundir.ERROR).unlink(missing_ok=True)  # this attempt replaces it

    folder = suite.root / ".submitit"
    ex = make_executor(executor, folder, suite.name, resources, profile)
    callables = [RunJob([[p.spec for p in unit] for unit in group], threads=resources.cpus) for group in groups]
    if executor == "local":
        parallel = max(1, min(resources.array_parallelism, (os.cpu_count() or 1) // max(1, resources.cpus)))
        jobs = _run_local(ex, callables, groups, parallel, folder, suite, echo)
    else:
        try:
            with ex.batch():
                pending = [ex.submit(c) for c in callables]
        except FileNotFoundError as e:
            raise SuiteError(f"cannot submit to SLURM ({e}); is SLURM installed and SLURM_CONF set?") from None
        jobs = list(pending)
        for job, group in zip(jobs, groups):
            record_job(job, group, executor, folder, suite)
        if executor == "slurm":
            array_ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
            echo(f"\nsubmitted job array {', '.join(array_ids)}: {len(jobs)} jobs, "
                 f"{runs_to_submit} runs; `flowbench status {suite.root}` shows them")
            if wait:
                _wait(jobs, echo)
        else:  # debug: runs here, now
            for job in jobs:
                _result_or_error(job, echo)
    result = SweepResult(planned, [str(j.job_id) for j in jobs])
    if executor != "slurm" or wait:  # every job has ended: say which runs failed, and why
        submitted = [p for g in groups for unit in g for p in unit]
        ended = [run_status(p.spec.out_dir(), p.name) for p in submitted]
        result.failed = [f"{s.name}: {s.state}: {s.error or 'no summary'}" for s in ended if s.state in ("failed", "diverged")]
        if result.failed:
            echo(f"\n{len(result.failed)} of {len(submitted)} runs did not finish:\n  " + "\n  ".join(result.failed))
    return result


def _run_local(ex: Any, callables: list[RunJob], groups: list[list[list[PlannedRun]]], parallel: int, folder: Path,
               suite: Suite, echo: Callable[[str], None]) -> list[Any]:
    """Local processes, at most ``parallel`` at once; waits for all with a progress bar."""
    from tqdm.auto import tqdm

    queue = list(zip(callables, groups))
    running: list[Any] = []
    jobs: list[Any] = []
    echo(f"\nrunning {len(queue)} jobs locally, {parallel} at a time")
    with tqdm(total=len(queue), desc=f"{suite.name} jobs", unit="job") as bar:
        while queue or running:
            while queue and len(running) < parallel:
                fn, group = queue.pop(0)
                job = ex.submit(fn)
                record_job(job, group, "local", folder, suite)
                running.append(job)
                jobs.append(job)
            for job in [j for j in running if j.done()]:
                running.remove(job)
                bar.update(1)
                _result_or_error(job, echo, write=bar.write)
            time.sleep(0.5)
    return jobs


def _wait(jobs: list[Any], echo: Callable[[str], None]) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="jobs", unit="job") as bar:
        left = list(jobs)
        while left:
            for job in [j for j in left if j.done()]:
                left.remove(job)
                bar.update(1)
                _result_or_error(job, echo, write=bar.write)
            time.sleep(2)


def _result_or_error(job: Any, echo: Callable[[str], None], write: Callable[[str], None] | None = None) -> None:
    write = write or echo
    try:
        summaries = job.result()
        for s in summaries:
            final = s.get("final") or {}
            write(f"  job {job.job_id}: {s['algo']} {s['dataset']} seed {s['seed']}: "
                  f"score {final.get('normalized_score', float('nan')):.1f} at step {s['steps']}")
    except Exception as e:  # noqa: BLE001 — a failed job is reported, the sweep goes on
        write(f"  job {job.job_id} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}")
