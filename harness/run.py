"""A single training run: train an agent on a dataset, evaluate on a schedule, checkpoint, resume.

The run directory holds
- ``config.json``  the resolved config (agent hyperparameters, run settings, package versions, git commit);
- ``train.csv``    step, seconds, and the agent's losses averaged over each logging interval;
- ``eval.csv``     step, seconds, return_mean, return_std, normalized_score, success_rate;
- ``checkpoint.pt`` the latest checkpoint (agent, sampler generator, logging state);
- ``summary.json`` written when the run finishes.

Every file is written atomically. Rerunning into a directory with a checkpoint of the same
config resumes and continues exactly (same batches, same noise); CSV rows written after the
checkpoint are dropped first, so no row is duplicated. A different config is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from algos import AgentConfig, make_agent, resolve_config
from algos.base import matching_presets
from harness import data as data_lib
from harness.evaluation import evaluate

# Files a scheduler keeps in a run directory next to the run's own: the job it was submitted in, and
# the traceback of a failed attempt (harness.sweep / harness.jobs).
JOB_FILE = "job.json"
ERROR_FILE = "error.txt"
EVAL_COLUMNS = ["step", "seconds", "return_mean", "return_std", "normalized_score", "success_rate"]
VERSIONED_PACKAGES = ("flowbench", "torch", "numpy", "minari", "gymnasium", "gymnasium-robotics", "mujoco")


class RunConfigMismatch(RuntimeError):
    """The run directory holds a run of a different configuration."""


class RunInterrupted(Exception):
    """Training stopped early on request (``should_stop``), right after saving a checkpoint."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}, checkpoint saved")
        self.step = step


@dataclass
class RunSpec:
    """What a run is. ``identity()`` is the part that must match to resume into a directory."""

    algo: str
    dataset: str
    seed: int = 0
    steps: int = 1_000_000
    eval_every: int = 100_000
    eval_episodes: int = 50
    out: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    normalize_obs: bool = False
    log_every: int = 1000
    checkpoint_every: int | None = None  # default: at every evaluation
    device: str = "auto"

    def default_out(self) -> Path:
        return Path("runs") / self.algo / self.dataset.replace("/", "_") / f"seed{self.seed}"

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.default_out()


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when there is one; asking for CUDA where there is none is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return resolved


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    """The commit of the flowbench checkout in use (``+dirty`` with local changes), if it is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class CsvLog:
    """Append-only CSV whose header is fixed by its first row; rows are flushed as written."""

    def __init__(self, path: Path, columns: list[str] | None = None):
        self.path = path
        self.columns = columns
        if path.exists() and path.stat().st_size:
            with path.open(newline="") as f:
                self.columns = next(csv.reader(f))

    def truncate_after(self, step: int) -> None:
        """Drops rows past ``step`` (written after the checkpoint a resumed run starts from)."""
        rows = [r for r in read_csv(self.path) if int(float(r["step"])) <= step]
        if self.columns is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        if self.columns is None:
            self.columns = list(row)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})


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
    if summary.get("config_hash") != config_hash(run_identity(spec)) or summary.get("steps", 0) < spec.steps:
        return None
    return summary


def prepare(spec: RunSpec) -> tuple[dict[str, Any], data_lib.OfflineData, AgentConfig]:
    """Validates everything (algorithm, config keys, dataset) before anything is written."""
    domain = data_lib.dataset_domain(spec.dataset)
    agent_config = resolve_config(spec.algo, spec.overrides, spec.profile, spec.dataset)
    for name in ("steps", "eval_every", "eval_episodes", "log_every"):
        if getattr(spec, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(spec, name)}")
    data = data_lib.load(spec.dataset, normalize_obs=spec.normalize_obs)
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
        foreign = [p for p in out.iterdir() if p.name not in (JOB_FILE, ERROR_FILE) and not p.name.startswith(".")] \
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


def train(spec: RunSpec, progress: bool | None = None,
          on_checkpoint: Callable[[int], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Runs (or resumes) ``spec`` to ``spec.steps`` and returns the summary.

    ``should_stop`` is asked after every update; when it says yes, the run saves a checkpoint at that
    step boundary and raises ``RunInterrupted`` (a preempted cluster job stops this way, so its
    requeued continuation resumes from exactly where it stopped).
    """
    resolved, data, agent_config = prepare(spec)
    out = spec.out_dir()
    resume = check_resumable(out, resolved)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(spec.device)

    torch.manual_seed(spec.seed)
    agent = make_agent(spec.algo, data.obs_dim, data.act_dim, agent_config, device)
    agent.generator.manual_seed(spec.seed + 1)
    buffer = data_lib.TransitionBuffer(data, device)
    sampler = torch.Generator(device="cpu").manual_seed(spec.seed)

    if not resume:  # a fresh start: logs of an earlier attempt that never checkpointed are stale
        for f in ("train.csv", "eval.csv", "summary.json"):
            (out / f).unlink(missing_ok=True)
    train_log, eval_log = CsvLog(out / "train.csv"), CsvLog(out / "eval.csv", EVAL_COLUMNS)
    seconds_before = 0.0
    sums: dict[str, float] = {}
    count = 0
    if resume:
        ckpt = torch.load(out / "checkpoint.pt", map_location=device, weights_only=False)
        agent.load_state_dict(ckpt["agent"])
        sampler.set_state(ckpt["sampler"])
        seconds_before, sums, count = ckpt["seconds"], ckpt["log_sums"], ckpt["log_count"]
        train_log.truncate_after(agent.step)
        eval_log.truncate_after(agent.step)
    resolved["resumed_from_step"] = agent.step
    atomic_write_text(out / "config.json", json.dumps(resolved, indent=2, default=str))

    checkpoint_every = spec.checkpoint_every or spec.eval_every
    start_time = time.perf_counter()
    elapsed = lambda: seconds_before + time.perf_counter() - start_time  # noqa: E731

    def save_checkpoint() -> None:
        atomic_torch_save({"agent": agent.state_dict(), "sampler": sampler.get_state(), "seconds": elapsed(),
                           "log_sums": sums, "log_count": count, "config_hash": resolved["config_hash"]},
                          out / "checkpoint.pt")
        if on_checkpoint:
            on_checkpoint(agent.step)

    last_eval = _last_eval(out)
    bar = tqdm(total=spec.steps, initial=min(agent.step, spec.steps), desc=f"{spec.algo} {spec.dataset} s{spec.seed}",
               disable=(not sys.stderr.isatty()) if progress is None else not progress, dynamic_ncols=True)
    while agent.step < spec.steps:
        metrics = agent.update(buffer.sample(agent_config.batch_size, sampler))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        step = agent.step
        bar.update(1)
        if step % spec.log_every == 0 or step == spec.steps:
            train_log.write({"step": step, "seconds": elapsed(), **{k: v / count for k, v in sums.items()}})
            if any(not math.isfinite(v) for v in sums.values()):
                bar.close()
                raise FloatingPointError(f"non-finite loss at step {step}: {sums}; see {out / 'train.csv'}")
            sums, count = {}, 0
        if step % spec.eval_every == 0 or step == spec.steps:
            result = evaluate(agent, data, spec.eval_episodes, seed=spec.seed * 1000 + 10**6)
            last_eval = {"step": step, "seconds": elapsed(), **result.row()}
            eval_log.write(last_eval)
            bar.set_postfix(score=f"{result.normalized_score:.1f}", ret=f"{result.return_mean:.3g}")
        saved = step % checkpoint_every == 0 or step == spec.steps
        if saved:
            save_checkpoint()
        if should_stop is not None and step < spec.steps and should_stop():
            if not saved:
                save_checkpoint()
            bar.close()
            raise RunInterrupted(step)
    bar.close()
    summary = {
        "algo": spec.algo,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "steps": agent.step,
        "seconds": elapsed(),
        "config_hash": resolved["config_hash"],
        "final": last_eval,
        "reference_source": None if data.reference is None else data.reference.source,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _last_eval(out: Path) -> dict[str, Any] | None:
    rows = read_csv(out / "eval.csv")
    return {k: float(v) for k, v in rows[-1].items()} if rows else None
