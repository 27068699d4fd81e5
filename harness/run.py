"""What a run is: its spec and identity, the check that everything is valid before anything is written,
locking, resume, and the grouping of seeds trained together.

A run writes one run directory (its files: ``harness.rundir``). Every file is written atomically, and one
process at a time writes a run directory (its lock, ``harness.locks``). Rerunning into a directory with a
checkpoint of the same config resumes and continues exactly (same batches, same noise); CSV rows written
after the checkpoint are dropped first, so no row is duplicated. A different config is refused; a finished
run is left as it is.

With ``online_steps`` (``flowbench run --online-steps N``) the run goes on after its offline updates with
N updates of offline-to-online fine-tuning, one environment step before each (``harness.online``); a
finished offline run continues where it stopped, and the checkpoints of the online phase resume exactly.

Several seeds of one configuration can train in one process as one batched model (``train_seeds``,
``flowbench run --seeds``): each seed still has its own directory with exactly these files, its own
checkpoint (a one-seed checkpoint, resumable alone), generators, minibatches and evaluation. The loop that
trains them — logs, evaluations, checkpoints, the online phase — is ``harness.trainer.RunTrainer``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from algos import AgentConfig, resolve_config
from algos.kit.agent import Agent
from algos.kit.registry import get_agent_class, make_agent, matching_presets
from harness import data as data_lib
from harness import rundir
from harness.files import load_checkpoint, remove_temporaries
from harness.locks import run_dir_locks
from harness.online import check_online
from harness.provenance import config_hash, git_commit, package_versions
from harness.tracking import TrackerSettings
from harness.trainer import Progress, RunDiverged, RunInterrupted, RunTrainer
from harness.training import GRAPH_MODES, resolve_device, step_compiles

__all__ = ["RunConfigMismatch", "RunDiverged", "RunInterrupted", "RunSpec", "finished_summary", "identity_diff",
           "load_run_agent", "prepare", "run_identity", "train", "train_seeds"]


class RunConfigMismatch(RuntimeError):
    """The run directory holds a run of a different configuration."""


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
    compile: str = "auto"  # on the CPU: the training step compiled (harness.compiling); auto: where it pays off
    tf32: bool = True  # on CUDA, float32 matmuls in TF32 as the JAX reference code runs them
    tracker: TrackerSettings = TrackerSettings()  # where the run is mirrored (harness.tracking); not its identity

    def default_out(self) -> Path:
        # runs/single, not runs/: a sweep's (and the demo's) runs go to runs/SUITE, so `report runs/single`
        # reads the single runs and `report runs/demo` the demo's, each without the other
        return rundir.run_path(rundir.SINGLE_RUNS, self.algo, self.dataset, self.seed)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.default_out()

    @property
    def total_steps(self) -> int:
        return self.steps + self.online_steps


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
    path = spec.out_dir() / rundir.SUMMARY
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
    device = resolve_device(spec.device)
    compiles = step_compiles(spec.compile, spec.cuda_graph, spec.algo, device, spec.total_steps)
    spec.tracker.check()  # a tracker whose package is missing is an error now, not after training
    data = data or data_lib.load(spec.dataset, normalize_obs=spec.normalize_obs)
    identity = run_identity(spec, agent_config)
    resolved = {
        "identity": identity,
        "config_hash": config_hash(identity),
        "run": asdict(spec),
        "training_compile": "on" if compiles else "off",
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
    config_path = out / rundir.CONFIG
    if not config_path.exists():
        # a scheduler's files (and their hidden temporaries, being written right now) are no run
        foreign = [p for p in out.iterdir() if p.name not in rundir.FILES_BEFORE_START and not p.name.startswith(".")] \
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
    return (out / rundir.CHECKPOINT).exists()


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


def load_run_agent(run_dir: Path | str, data: data_lib.OfflineData | None = None, device: str = "cpu") -> Agent:
    """The one-seed agent of a run directory at its latest checkpoint, as its ``config.json`` configured it
    (``data``: the run's dataset, when already loaded). It acts on the observations the run trained on: a run
    with ``normalize_obs`` expects them normalised."""
    run_dir = Path(run_dir)
    identity = json.loads((run_dir / rundir.CONFIG).read_text())["identity"]
    config = get_agent_class(identity["algo"]).config_class.from_dict(identity["agent"])
    data = data or data_lib.load(identity["dataset"])
    agent = make_agent(identity["algo"], data.obs_dim, data.act_dim, config, device)
    agent.load_state_dict(load_checkpoint(run_dir / rundir.CHECKPOINT)["agent"])
    return agent


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
    model (``algos.kit.seeds``); each seed has its own generators, batches, evaluation and ordinary run
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
            (specs[i].out_dir() / rundir.ERROR).unlink(missing_ok=True)  # this attempt replaces the last one's
        resumable = {i: check_resumable(specs[i].out_dir(), runs[i]) for i in todo}
        device = resolve_device(specs[0].device)
        checkpoints = {i: load_checkpoint(specs[i].out_dir() / rundir.CHECKPOINT) if resumable[i] else None
                       for i in todo}
        groups: dict[int, list[int]] = {}
        for i, ckpt in checkpoints.items():
            groups.setdefault(0 if ckpt is None else int(ckpt["agent"]["step"]), []).append(i)
        for members in groups.values():  # each group of equal step as one batched agent
            trainer = RunTrainer(specs[members[0]], [specs[i].seed for i in members],
                                 [specs[i].out_dir() for i in members], [runs[i] for i in members],
                                 [checkpoints[i] for i in members], data, agent_config, device, progress,
                                 on_checkpoint, should_stop)
            for i, summary in zip(members, trainer.run()):
                summaries[i] = summary
    return summaries
