"""A single training run: train an agent on a dataset, evaluate on a schedule, checkpoint, resume.

The run directory holds
- ``config.json``  the resolved config (agent hyperparameters, run settings, package versions, git commit);
- ``train.csv``    step, seconds, and the agent's losses averaged over each logging interval;
- ``eval.csv``     step, seconds, return_mean, return_std, normalized_score, success_rate, phase (offline or
                   online) and online_return (the mean return of the online episodes since the last row);
- ``checkpoint.pt`` the latest checkpoint (agent, sampler generator, logging state), checksummed;
  ``checkpoint.prev.pt`` the one before it, kept until the run finishes (``harness.files``);
- ``summary.json`` written when the run finishes.

Every file is written atomically, and one process at a time writes a run directory (its ``.lock``,
``harness.locks``). A run stops before it would evaluate or save a non-finite agent. Rerunning into
a directory with a checkpoint of the same config resumes and continues exactly (same batches, same
noise); CSV rows written after the checkpoint are dropped first, so no row is duplicated. A
different config is refused; a finished run is left as it is.

With ``online_steps`` (``flowbench run --online-steps N``) the run goes on after its offline updates with
N updates of offline-to-online fine-tuning, one environment step before each (``harness.online``); a
finished offline run continues where it stopped, and the checkpoints of the online phase resume exactly.

Several seeds of one configuration can train in one process as one batched model (``train_seeds``,
``flowbench run --seeds``): each seed still has its own directory with exactly these files, its own
checkpoint (a one-seed checkpoint, resumable alone), generators, minibatches and evaluation. The
training step itself (eager, or a CUDA graph per code path on a GPU) is ``harness.training``; the
metrics stay on the device between logging steps.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from algos import AgentConfig, resolve_config
from algos.base import make_seeded_agent, matching_presets
from algos.seeds import SeedRandom, seed_state
from harness import data as data_lib
from harness.evaluation import evaluate_seeds
from harness.files import (NO_SPACE, atomic_write_text, load_checkpoint, no_space_error, previous_checkpoint, read_csv,
                           remove_temporaries, save_checkpoint)
from harness.locks import run_dir_locks
from harness.online import OnlineEnvs, OnlineReplay, check_online
from harness.provenance import config_hash, git_commit, package_versions
from harness.training import GRAPH_MODES, TrainingStep, configure_matmul_precision

ERROR_FILE = "error.txt"  # the traceback of a failed attempt, or why the run diverged (`flowbench status` shows it)
# Files other than the run's own that may sit in a run directory before the run has started: the scheduler
# adds the job file it writes there (harness.cluster.jobs), so this layer need not know the scheduler.
FOREIGN_RUN_FILES: set[str] = {ERROR_FILE}
EVAL_COLUMNS = ["step", "seconds", "return_mean", "return_std", "normalized_score", "success_rate", "phase",
                "online_return"]


class RunConfigMismatch(RuntimeError):
    """The run directory holds a run of a different configuration."""


class RunInterrupted(Exception):
    """Training stopped early on request (``should_stop``), right after saving a checkpoint."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}, checkpoint saved")
        self.step = step


SINGLE_RUNS = "runs/single"  # where `flowbench run` puts a run without --out


@dataclass
class RunSpec:
    """What a run is. ``identity()`` is the part that must match to resume into a directory."""

    algo: str
    dataset: str
    seed: int = 0
    steps: int = 1_000_000
    online_steps: int = 0  # updates of online fine-tuning after the offline ``steps`` (harness.online)
    eval_every: int = 100_000
    eval_episodes: int = 50
    out: str | None = None
    label: str | None = None  # the suite's name for the algorithm entry; report's column (None: the algorithm)
    overrides: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    normalize_obs: bool = False
    log_every: int = 1000
    checkpoint_every: int | None = None  # default: at every evaluation
    device: str = "auto"
    cuda_graph: str = "auto"  # auto: the training step as a CUDA graph on CUDA (harness.training); off: eager
    tf32: bool = True  # on CUDA, float32 matmuls in TF32 as the JAX reference code runs them

    def default_out(self) -> Path:
        # runs/single, not runs/: a sweep's (and the demo's) runs go to runs/SUITE, so `report runs/single`
        # reads the single runs and `report runs/demo` the demo's, each without the other
        return Path(SINGLE_RUNS) / self.algo / self.dataset.replace("/", "_") / f"seed{self.seed}"

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.default_out()

    @property
    def total_steps(self) -> int:
        return self.steps + self.online_steps


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when there is one; asking for CUDA where there is none is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return resolved


class CsvLog:
    """Append-only CSV whose header is fixed by its first row; rows are flushed as written."""

    def __init__(self, path: Path, columns: list[str] | None = None, defaults: dict[str, str] | None = None):
        """``columns`` fixes a new file's header; an existing file written before some of them existed gets
        them (filled from ``defaults``) so later rows lose nothing."""
        self.path = path
        self.columns = columns
        if path.exists() and path.stat().st_size:
            with path.open(newline="") as f:
                existing = next(csv.reader(f))
            if columns and set(existing) < set(columns):
                rows = [{**(defaults or {}), **r} for r in read_csv(path)]
                self._rewrite(rows)
            else:
                self.columns = existing

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, text.getvalue())

    def truncate_after(self, step: int) -> None:
        """Drops rows past ``step`` (written after the checkpoint a resumed run starts from)."""
        rows = [r for r in read_csv(self.path) if _complete_row_step(r) <= step]
        if self.columns is None:
            return
        self._rewrite(rows)

    def write(self, row: dict[str, Any]) -> None:
        """Appends one row; a row that cannot be written whole (disk full) is cut off again, so the file
        always ends with a complete row."""
        if self.columns is None:
            self.columns = list(row)
        size = self.path.stat().st_size if self.path.exists() else 0
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        if size == 0:
            writer.writeheader()
        writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
        data = text.getvalue().encode()
        with self.path.open("ab", buffering=0) as f:
            try:
                while data:
                    data = data[f.write(data):]
            except OSError as e:
                os.ftruncate(f.fileno(), size)
                if e.errno in NO_SPACE:
                    raise no_space_error(self.path) from e
                raise


def _complete_row_step(row: dict[str, str | None]) -> float:
    """A row's step, or inf for a row cut short (by a kill in the middle of its write): dropped on resume."""
    try:
        return float(row["step"]) if None not in row.values() and None not in row else math.inf
    except (TypeError, ValueError):
        return math.inf


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def run_identity(spec: RunSpec, agent_config: AgentConfig | None = None) -> dict[str, Any]:
    """What must match for a run directory to be resumed: ``config.json``'s ``identity``."""
    if agent_config is None:
        agent_config = resolve_config(spec.algo, spec.overrides, spec.profile, spec.dataset)
    return {
        "algo": spec.algo,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "normalize_obs": spec.normalize_obs,
        "agent": agent_config.to_dict(),
    }


def finished_summary(spec: RunSpec) -> dict[str, Any] | None:
    """The summary of ``spec``'s run if its directory holds this config's run, finished to ``spec.steps``."""
    path = spec.out_dir() / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if summary.get("config_hash") != config_hash(run_identity(spec)) or summary.get("steps", 0) < spec.total_steps:
        return None
    return summary


def prepare(spec: RunSpec, data: data_lib.OfflineData | None = None, agent_config: AgentConfig | None = None
            ) -> tuple[dict[str, Any], data_lib.OfflineData, AgentConfig]:
    """Validates everything (algorithm, config keys, dataset) before anything is written; ``data`` and
    ``agent_config`` already loaded for another seed of the same run are reused."""
    domain = data_lib.dataset_domain(spec.dataset)
    agent_config = agent_config or resolve_config(spec.algo, spec.overrides, spec.profile, spec.dataset)
    for name in ("steps", "eval_every", "eval_episodes", "log_every", "checkpoint_every"):
        if getattr(spec, name) is not None and getattr(spec, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(spec, name)}")
    if spec.online_steps < 0:
        raise ValueError(f"--online-steps must be 0 or positive, got {spec.online_steps}")
    check_online(spec.algo, agent_config, spec.steps, spec.online_steps)
    data_lib.check_reward_transform(agent_config.reward_transform)
    if spec.cuda_graph not in GRAPH_MODES:
        raise ValueError(f"--cuda-graph must be one of {', '.join(GRAPH_MODES)}, got {spec.cuda_graph!r}")
    resolve_device(spec.device)
    data = data or data_lib.load(spec.dataset, normalize_obs=spec.normalize_obs)
    identity = run_identity(spec, agent_config)
    resolved = {
        "identity": identity,
        "config_hash": config_hash(identity),
        "run": asdict(spec),
        "domain": domain,
        "presets_applied": [pattern for pattern, _ in matching_presets(spec.algo, spec.dataset)],
        "reference_scores": None if data.reference is None else asdict(data.reference),
        "dataset_info": {"transitions": len(data), "episodes": data.num_episodes},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
    }
    return resolved, data, agent_config


def check_resumable(out: Path, resolved: dict[str, Any]) -> bool:
    """True if ``out`` holds a checkpoint of this config; raises if it holds another run."""
    config_path = out / "config.json"
    if not config_path.exists():
        # a scheduler's files (and their hidden temporaries, being written right now) are no run
        foreign = [p for p in out.iterdir() if p.name not in FOREIGN_RUN_FILES and not p.name.startswith(".")] \
            if out.exists() else []
        if foreign:
            raise RunConfigMismatch(f"{out} is not empty and holds no flowbench run; choose another --out")
        return False
    previous = json.loads(config_path.read_text())
    if previous["identity"] != resolved["identity"]:
        diff = identity_diff(previous["identity"], resolved["identity"])
        raise RunConfigMismatch(
            f"{out} holds a run with a different config ({diff}); use another --out, or delete it to start over"
        )
    return (out / "checkpoint.pt").exists()


def identity_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = identity_diff(a, b, f"{prefix}{k}.")
            if inner:
                parts.append(inner)
        elif a != b:
            parts.append(f"{prefix}{k}: {a!r} → {b!r}")
    return "; ".join(parts)


# How a run shows its progress: "bar" (tqdm), "lines" (one line per evaluation on stderr, for logs and
# cluster jobs), "off", or "auto" (a bar on a terminal, lines otherwise).
Progress = Literal["auto", "bar", "lines", "off"]


def train(spec: RunSpec, progress: Progress = "auto",
          on_checkpoint: Callable[[int], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Runs (or resumes) ``spec`` to ``spec.steps`` and returns the summary (``train_seeds`` of one)."""
    return train_seeds([spec], progress, on_checkpoint, should_stop)[0]


def check_seed_group(specs: Sequence[RunSpec]) -> None:
    """Runs trained in one process as one batched model differ in their seed and directory only."""
    if not specs:
        raise ValueError("no runs to train")
    seeds = [s.seed for s in specs]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds repeat: {', '.join(map(str, repeated))}; give each seed once")
    negative = [seed for seed in seeds if seed < 0]
    if negative:
        raise ValueError(f"seeds must be non-negative integers, got {', '.join(map(str, negative))}")
    for spec in specs:
        if spec.out_dir().exists() and not spec.out_dir().is_dir():
            raise ValueError(f"run directory {spec.out_dir()} is a file; give --out a directory path (new or a run's)")
    dirs = [str(s.out_dir().resolve()) for s in specs]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"several seeds would write to the same run directory ({', '.join(sorted(set(dirs)))}); "
                         f"with several seeds, --out must contain {{seed}}")
    shared = {k: v for k, v in asdict(specs[0]).items() if k not in ("seed", "out")}
    for other in specs[1:]:
        differs = [k for k, v in asdict(other).items() if k not in ("seed", "out") and shared[k] != v]
        if differs:
            raise ValueError(f"seeds trained together must share everything but seed and directory; "
                             f"seed {other.seed} differs in {', '.join(differs)}")


def train_seeds(specs: Sequence[RunSpec], progress: Progress = "auto",
                on_checkpoint: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """Runs (or resumes) the seeds of one (algorithm, dataset, config) in this process as one batched
    model (``algos.seeds``); each seed has its own generators, batches, evaluation and ordinary run
    directory, the same files as a run of that seed alone. Returns the summaries, in ``specs``' order.

    Everything (config, dataset, every seed's directory) is checked before anything is written. Each run
    directory is locked while it trains (``harness.locks``: a second writer gets ``RunLocked``); a run
    already finished to ``spec.steps`` is returned as it is, its files untouched.
    Seeds whose checkpoints are at different steps are trained in groups of equal step, one after another.
    ``should_stop`` is asked after every update; when it says yes, every seed saves a checkpoint at that
    step boundary and ``RunInterrupted`` is raised (a preempted cluster job stops this way, so its
    requeued continuation resumes from exactly where it stopped).
    """
    specs = list(specs)
    check_seed_group(specs)
    first, data, agent_config = prepare(specs[0])
    runs = [first] + [prepare(spec, data, agent_config)[0] for spec in specs[1:]]
    summaries: list[dict[str, Any]] = [finished_summary(spec) or {} for spec in specs]
    todo = [i for i, summary in enumerate(summaries) if not summary]  # a finished run is left byte for byte alone
    with run_dir_locks([specs[i].out_dir() for i in todo]):
        for i in todo:
            remove_temporaries(specs[i].out_dir())  # of a writer killed (or out of space) mid-write
            (specs[i].out_dir() / ERROR_FILE).unlink(missing_ok=True)  # this attempt replaces the last one's
        resumable = {i: check_resumable(specs[i].out_dir(), runs[i]) for i in todo}
        device = resolve_device(specs[0].device)
        checkpoints = {i: load_checkpoint(specs[i].out_dir() / "checkpoint.pt") if resumable[i] else None
                       for i in todo}
        groups: dict[int, list[int]] = {}
        for i, ckpt in checkpoints.items():
            groups.setdefault(0 if ckpt is None else int(ckpt["agent"]["step"]), []).append(i)
        for members in groups.values():
            results = _train_group([specs[i] for i in members], [runs[i] for i in members],
                                   [checkpoints[i] for i in members], data, agent_config, device, progress,
                                   on_checkpoint, should_stop)
            for i, summary in zip(members, results):
                summaries[i] = summary
    return summaries


def _train_group(specs: list[RunSpec], runs: list[dict[str, Any]], checkpoints: list[dict[str, Any] | None],
                 data: data_lib.OfflineData, agent_config: AgentConfig, device: torch.device,
                 progress: Progress, on_checkpoint: Callable[[int], None] | None,
                 should_stop: Callable[[], bool] | None) -> list[dict[str, Any]]:
    """Seeds at the same step (all fresh, or all resumed from checkpoints of one step), as one agent."""
    spec = specs[0]
    seeds = [s.seed for s in specs]
    outs = [s.out_dir() for s in specs]
    configure_matmul_precision(device, spec.tf32)
    agent = make_seeded_agent(spec.algo, data.obs_dim, data.act_dim, agent_config, seeds, device)
    agent.horizon = spec.steps  # schedules that decay over the run
    buffer = data_lib.TransitionBuffer(data, device, reward_transform=agent_config.reward_transform)
    samplers = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    step_fn = TrainingStep(agent, buffer, agent_config.batch_size, SeedRandom(samplers, device), spec.cuda_graph)

    resume = checkpoints[0] is not None
    seconds_before = [0.0] * len(specs)
    for out, resolved in zip(outs, runs):
        out.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh start: logs of an earlier attempt that never checkpointed are stale
            for f in ("train.csv", "eval.csv", "summary.json"):
                (out / f).unlink(missing_ok=True)
    train_logs = [CsvLog(out / "train.csv") for out in outs]
    eval_logs = [CsvLog(out / "eval.csv", EVAL_COLUMNS, {"phase": "offline"}) for out in outs]
    if resume:
        agent.load_seed_state_dicts([ckpt["agent"] for ckpt in checkpoints])
        for sampler, ckpt in zip(samplers, checkpoints):
            sampler.set_state(ckpt["sampler"].cpu())
        seconds_before = [ckpt["seconds"] for ckpt in checkpoints]
        step_fn.load_state([ckpt["log_sums"] for ckpt in checkpoints], checkpoints[0]["log_count"])
        for log in (*train_logs, *eval_logs):
            log.truncate_after(agent.step)
        for out in outs:  # rewritten when this attempt finishes; until then the run is not finished
            (out / "summary.json").unlink(missing_ok=True)
    for out, resolved in zip(outs, runs):
        resolved["resumed_from_step"] = agent.step
        resolved["trained_with_seeds"] = seeds  # the seeds batched in this process (not part of the identity)
        atomic_write_text(out / "config.json", json.dumps(resolved, indent=2, default=str))

    checkpoint_every = spec.checkpoint_every or spec.eval_every
    total = spec.total_steps
    online: OnlineEnvs | None = None

    def start_online() -> None:
        """From the offline step on: the replay (dataset + each seed's transitions), the envs and a training
        step that samples from the replay; a checkpoint of the online phase restores all three."""
        nonlocal online, step_fn
        replay = OnlineReplay(buffer, len(seeds), spec.online_steps)
        online = OnlineEnvs(data, seeds, replay, agent_config.reward_transform, device)
        states = [ckpt.get("online") if ckpt else None for ckpt in checkpoints]
        if resume and states[0] is not None and agent.step > spec.steps:
            replay.load_seed_states([st["replay"] for st in states])
            online.restore([st["envs"] for st in states])
        else:
            online.start()
        sums, count = step_fn.state()
        step_fn = TrainingStep(agent, replay, agent_config.batch_size, step_fn.sampler, spec.cuda_graph)
        step_fn.load_state(sums, count)

    start_time = time.perf_counter()

    def elapsed(i: int) -> float:
        return seconds_before[i] + time.perf_counter() - start_time

    def save_checkpoints() -> None:
        state = agent.state_dict()
        sums, count = step_fn.state()
        for i, out in enumerate(outs):
            save_checkpoint({"agent": seed_state(state, i), "sampler": samplers[i].get_state(),
                             "seconds": elapsed(i), "log_sums": sums[i], "log_count": count,
                             "config_hash": runs[i]["config_hash"],
                             "online": None if online is None else {"replay": online.replay.seed_state(i),
                                                                     "envs": online.seed_state(i)}},
                            out / "checkpoint.pt")
        if on_checkpoint:
            on_checkpoint(agent.step)

    last_evals = [_last_eval(out) for out in outs]
    label = f"s{seeds[0]}" if len(seeds) == 1 else "seeds " + ",".join(map(str, seeds))
    if progress == "auto":  # without a terminal (a log file, SLURM, a script): lines instead of a bar
        progress = "bar" if sys.stderr.isatty() else "lines"
    bar = tqdm(total=total, initial=min(agent.step, total), desc=f"{spec.algo} {spec.dataset} {label}",
               disable=progress != "bar", dynamic_ncols=True)
    progress_lines = progress == "lines"
    start_step = agent.step
    try:  # the bar and the online envs are closed however the loop ends (finished, stopped, diverged)
        while agent.step < total:
            if agent.step >= spec.steps and online is None:
                start_online()
            if online is not None:
                online.step(agent)
            step_fn()
            step = agent.step
            bar.update(1)
            last_offline = step == spec.steps
            logging = step % spec.log_every == 0 or step == total or last_offline
            evaluating = step % spec.eval_every == 0 or step == total or last_offline
            saved = step % checkpoint_every == 0 or step == total or last_offline
            if logging or evaluating or saved:  # never log, evaluate or save a diverged agent
                check_finite(step_fn, step, outs, seeds, bar)
            if logging:
                means = step_fn.read_means()  # the only read back to the host between evaluations
                for i, row in enumerate(means):
                    train_logs[i].write({"step": step, "seconds": elapsed(i), **row})
            if evaluating:
                results = evaluate_seeds(agent, data, spec.eval_episodes, [s * 1000 + 10**6 for s in seeds])
                online_returns = online.read_returns() if online is not None else [None] * len(seeds)
                for i, result in enumerate(results):
                    last_evals[i] = {"step": step, "seconds": elapsed(i), **result.row(),
                                     "phase": "online" if step > spec.steps else "offline",
                                     "online_return": "" if online_returns[i] is None else online_returns[i]}
                    eval_logs[i].write(last_evals[i])
                bar.set_postfix(score=" ".join(f"{r.normalized_score:.1f}" for r in results))
                if progress_lines:
                    print(progress_line(f"{spec.algo} {spec.dataset} {label}", step, total, results,
                                        (step - start_step) / (time.perf_counter() - start_time)),
                          file=sys.stderr, flush=True)
            if saved:
                save_checkpoints()
            if should_stop is not None and step < total and should_stop():
                if not saved:
                    check_finite(step_fn, step, outs, seeds, bar)
                    save_checkpoints()
                raise RunInterrupted(step)
    finally:
        bar.close()
        if online is not None:
            online.close()
    summaries = []
    for i, out in enumerate(outs):
        summary = {
            "algo": spec.algo,
            "dataset": spec.dataset,
            "seed": seeds[i],
            "steps": agent.step,
            "online_steps": spec.online_steps,
            "seconds": elapsed(i),
            "config_hash": runs[i]["config_hash"],
            "final": last_evals[i],
            "reference_source": None if data.reference is None else data.reference.source,
            "training_step": step_fn.mode,
        }
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
        previous_checkpoint(out / "checkpoint.pt").unlink(missing_ok=True)  # the final one is verified
        summaries.append(summary)
    return summaries


def progress_line(name: str, step: int, steps: int, results: Sequence[Any], updates_per_second: float) -> str:
    """``NAME: step 2500/10000 (25%), score 41.2, 38.5 updates/s, ETA 03:15`` (one score per seed)."""
    scores = " ".join(f"{r.normalized_score:.1f}" for r in results)
    eta = (steps - step) / updates_per_second if updates_per_second > 0 else float("inf")
    return (f"{name}: step {step}/{steps} ({100 * step / steps:.0f}%), score {scores}, "
            f"{updates_per_second:.1f} updates/s, ETA {tqdm.format_interval(eta) if math.isfinite(eta) else '?'}")


class RunDiverged(FloatingPointError):
    """A loss or a parameter became NaN or infinite; the run stopped before evaluating or saving it."""


def check_finite(step_fn: TrainingStep, step: int, outs: list[Path], seeds: list[int], bar: tqdm) -> None:
    """Stops the run (``RunDiverged``, an ``error.txt`` per diverged seed) if any seed's losses since the last
    read, or its parameters, are not finite."""
    diverged = step_fn.non_finite_seeds()
    if not diverged:
        return
    bar.close()
    message = (f"diverged: non-finite loss or parameters by step {step} in seed(s) "
               f"{', '.join(str(seeds[i]) for i in diverged)}; the last checkpoint (finite) is kept; lower the "
               f"learning rate or check the data (see {outs[diverged[0]] / 'train.csv'})")
    for i in diverged:
        atomic_write_text(outs[i] / ERROR_FILE, f"RunDiverged: {message}\n")
    raise RunDiverged(message)


def _last_eval(out: Path) -> dict[str, Any] | None:
    rows = read_csv(out / "eval.csv")
    return {k: _number_or_text(v) for k, v in rows[-1].items()} if rows else None


def _number_or_text(value: str | None) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
