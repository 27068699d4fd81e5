"""How the cost of a policy update, a full update and acting grows with the number of flow steps K.

The comparison FlowQ is argued on (its Figure 3a): FlowQ's policy update never integrates the flow, so
its cost should not depend on K; FQL's distillation target integrates the BC flow for K steps
(forward only); QIPO samples its support set (M actions per state) from a policy snapshot with K
steps (forward only); Diffusion-QL backpropagates through all K reverse steps. Acting integrates the
flow for every method that has one.

Measured per (algorithm, K, part) on synthetic batches (timing does not depend on the data's values)
with each algorithm's default (paper-size) networks unless a profile is asked for:
- ``policy_update``: ``agent.policy_step(batch)``, one gradient step on the losses that form the
  policy update (``Agent.policy_update_parts``), critic untouched;
- ``full_update``: ``agent.update(batch)``, critic included;
- ``act``: ``agent.act(obs)`` for a batch of observations.
After a warm-up, the timed calls are split into rounds; every round visits every cell (in
alternating order, so a slow spell of the shared machine hits all K alike), and a cell's time is the
median over rounds of its mean time per call. The GPU is synchronised around each timed block.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from algos import REGISTRY
from algos.base import Agent, Batch, ConfigError, get_agent_class, make_agent, resolve_config
from harness.run import atomic_write_text, git_commit, resolve_device

PARTS = ("policy_update", "full_update", "act")
DEFAULT_FLOW_STEPS = (1, 2, 4, 8, 16, 32)
# Every algorithm with a number of flow/diffusion steps.
TIMED_ALGOS = tuple(sorted(name for name, cls in REGISTRY.items() if cls.steps_field))
# QIPO's timed updates are improvement-phase updates (support set sampled, critic learning), not
# the warm-up phases, which skip the part that scales with K.
TIMING_OVERRIDES: dict[str, dict[str, Any]] = {
    "qipo": {"bc_warmup_steps": 0, "critic_warmup_steps": 0},
    "qipo_diff": {"bc_warmup_steps": 0, "critic_warmup_steps": 0},
}
# What in each policy update scales with K (the pass counts are pinned by tests/test_timing.py).
WHAT_SCALES = {
    "flowq": "nothing: one velocity-field pass (its output also gives the endpoint estimate) and two critic "
             "passes for the guidance direction, whatever K",
    "flow_bc": "nothing: one flow-matching pass",
    "ifql": "nothing in the update (flow BC + IQL critic); acting samples N = 32 flows of K steps each",
    "fql": "the distillation target: K Euler steps of the BC flow, forward only (no backward through them), "
           "next to K-independent losses — so the cost grows linearly in K with a slope of one forward pass",
    "qipo": "the support set: the snapshot samples M actions per state with K Euler steps (K forward passes "
            "over B·M rows, no backward); the weighted loss over B·(M + 1) rows is K-independent",
    "qipo_diff": "the support set, as QIPO, with K DDPM steps",
    "diffusion_ql": "the Q term's action comes through all K reverse steps with backpropagation (K forward + K "
                    "backward passes); the full update adds K forward passes of the EMA policy for the critic",
}
# Dimensions of D4RL antmaze (29-D observations, 8-D actions): a typical task of these papers.
OBS_DIM, ACT_DIM = 29, 8
CSV_NAME, PLOT_NAME, SUMMARY_NAME = "timing.csv", "timing.png", "summary.md"


@dataclass
class TimingSpec:
    algos: tuple[str, ...] = TIMED_ALGOS
    flow_steps: tuple[int, ...] = DEFAULT_FLOW_STEPS
    parts: tuple[str, ...] = PARTS
    updates: int = 10  # timed calls per cell, split over ``rounds``
    rounds: int = 5
    warmup: int = 2
    min_round_seconds: float = 0.2  # a cheap cell makes more calls per round, so its time is not one tick
    batch_size: int = 256
    act_batch: int = 256
    obs_dim: int = OBS_DIM
    act_dim: int = ACT_DIM
    profile: str | None = None
    device: str = "auto"
    seed: int = 0
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        unknown = [a for a in self.algos if a not in REGISTRY]
        if unknown:
            raise ConfigError(f"unknown algorithm(s) {', '.join(unknown)}; timed algorithms: {', '.join(TIMED_ALGOS)}")
        stepless = [a for a in self.algos if not REGISTRY[a].steps_field]
        if stepless:
            raise ConfigError(f"{', '.join(stepless)} ha{'s' if len(stepless) == 1 else 've'} no flow/diffusion steps "
                              f"to vary; timed algorithms: {', '.join(TIMED_ALGOS)}")
        if not self.flow_steps or any(k < 1 for k in self.flow_steps):
            raise ConfigError(f"--flow-steps must be positive integers, got {list(self.flow_steps)}")
        bad_parts = [p for p in self.parts if p not in PARTS]
        if bad_parts:
            raise ConfigError(f"unknown part(s) {', '.join(bad_parts)}; valid: {', '.join(PARTS)}")
        if self.updates < 1 or self.rounds < 1 or self.warmup < 0 or self.min_round_seconds < 0:
            raise ConfigError("--updates and --rounds must be at least 1, --warmup and --min-round-seconds at least 0")
        lacking = [a for a in self.algos if self.profile and self.profile not in REGISTRY[a].profiles]
        if lacking:
            raise ConfigError(f"profile {self.profile!r} is not defined for {', '.join(lacking)}; "
                              f"leave --profile out for the paper's network sizes")
        if self.batch_size < 1 or self.act_batch < 1:
            raise ConfigError("--batch-size and --act-batch must be at least 1")


def synthetic_batch(batch_size: int, obs_dim: int, act_dim: int, device: torch.device, generator: torch.Generator) -> Batch:
    """A batch of random transitions shaped like a real one (actions in [-1, 1], masks 0/1)."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device)

    actions = rand(batch_size, act_dim).clamp(-1.0, 1.0)
    return Batch(obs=rand(batch_size, obs_dim), actions=actions, rewards=rand(batch_size),
                 next_obs=rand(batch_size, obs_dim), masks=(rand(batch_size) > -2.0).float(),
                 next_actions=rand(batch_size, act_dim).clamp(-1.0, 1.0))


def timing_agent(algo: str, steps: int, spec: TimingSpec, device: torch.device) -> Agent:
    """``algo`` with K = ``steps`` (its ``steps_field``), its default networks or ``spec.profile``."""
    cls = get_agent_class(algo)
    overrides = {**TIMING_OVERRIDES.get(algo, {}), **spec.overrides.get(algo, {}), cls.steps_field: steps}
    agent = make_agent(algo, spec.obs_dim, spec.act_dim, resolve_config(algo, overrides, spec.profile), device)
    agent.generator.manual_seed(spec.seed)
    return agent


def timed_call(agent: Agent, part: str, spec: TimingSpec, device: torch.device) -> Callable[[], Any]:
    """The call that ``part`` times, on a fixed synthetic batch."""
    generator = torch.Generator().manual_seed(spec.seed)
    if part == "act":
        obs = synthetic_batch(spec.act_batch, spec.obs_dim, spec.act_dim, device, generator).obs
        act_generator = torch.Generator(device=device).manual_seed(spec.seed)
        return lambda: agent.act(obs, act_generator)
    batch = synthetic_batch(spec.batch_size, spec.obs_dim, spec.act_dim, device, generator)
    if part == "policy_update":
        return lambda: agent.policy_step(batch)
    return lambda: agent.update(batch)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(call: Callable[[], Any], n: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        call()
    synchronize(device)
    return (time.perf_counter() - start) / n


def measure(spec: TimingSpec, progress: bool = True) -> pd.DataFrame:
    """Times every (algorithm, K, part) cell; one tidy row per cell (seconds per 10⁴ calls)."""
    spec.validate()
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    cells = []
    for algo in spec.algos:
        for steps in spec.flow_steps:
            agent = timing_agent(algo, steps, spec, device)
            for part in spec.parts:
                cells.append({"algorithm": algo, "K": steps, "part": part, "call": timed_call(agent, part, spec, device),
                              "round_times": []})
    per_round = max(1, math.ceil(spec.updates / spec.rounds))
    bar = tqdm(total=len(cells) * (spec.rounds + 1), desc="timing", unit="cell", disable=not progress)
    for cell in cells:
        # warm-up: first calls allocate buffers (on a GPU, load kernels); the last one sizes the rounds
        for _ in range(spec.warmup):
            cell["call"]()
        estimate = seconds_per_call(cell["call"], 1, device)
        cell["calls_per_round"] = max(per_round, math.ceil(spec.min_round_seconds / max(estimate, 1e-9)))
        bar.update()
    for r in range(spec.rounds):
        for cell in (cells if r % 2 == 0 else reversed(cells)):
            cell["round_times"].append(seconds_per_call(cell["call"], cell["calls_per_round"], device))
            bar.update()
    bar.close()

    info = environment_info(device)
    rows = []
    for cell in cells:
        times = pd.Series(cell["round_times"])
        cls = REGISTRY[cell["algorithm"]]
        rows.append({
            "algorithm": cell["algorithm"], "K": cell["K"], "part": cell["part"],
            "seconds_per_1e4": 1e4 * times.median(), "seconds_per_1e4_min": 1e4 * times.min(),
            "calls": cell["calls_per_round"] * spec.rounds, "rounds": spec.rounds,
            "batch_size": spec.act_batch if cell["part"] == "act" else spec.batch_size,
            "policy_parts": "+".join(cls.policy_update_parts), "profile": spec.profile or "default",
            "obs_dim": spec.obs_dim, "act_dim": spec.act_dim, **info,
        })
    return pd.DataFrame(rows)


def environment_info(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": f"{device.type}: {name}", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "flowbench_commit": git_commit() or "unknown"}


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm and part: time at the largest K over time at the smallest K (the same run)."""
    rows = []
    for (algo, part), group in frame.groupby(["algorithm", "part"], sort=True):
        group = group.sort_values("K")
        first, last = group.iloc[0], group.iloc[-1]
        rows.append({"algorithm": algo, "part": part, "K_min": int(first["K"]), "K_max": int(last["K"]),
                     "seconds_per_1e4_at_K_min": first["seconds_per_1e4"], "seconds_per_1e4_at_K_max": last["seconds_per_1e4"],
                     "ratio": last["seconds_per_1e4"] / first["seconds_per_1e4"]})
    return pd.DataFrame(rows)


def ratio_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Algorithms × parts, cells time(K_max)/time(K_min)."""
    table = ratios(frame).pivot(index="algorithm", columns="part", values="ratio")
    return table[[p for p in PARTS if p in table.columns]]


def from_benchmark_json(path: Path) -> pd.DataFrame:
    """The tidy timing table from a saved pytest-benchmark JSON (``--benchmark-json``) of
    tests/benchmarks/test_flow_steps.py, whose benchmarks carry algorithm, K and part in extra_info."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read pytest-benchmark JSON {path}: {e}") from None
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {}).get("id", "unknown")
    rows = []
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info", {})
        if not {"algorithm", "K", "part"} <= set(extra):
            continue
        stats = bench["stats"]
        rows.append({"algorithm": extra["algorithm"], "K": int(extra["K"]), "part": extra["part"],
                     "seconds_per_1e4": 1e4 * stats["median"], "seconds_per_1e4_min": 1e4 * stats["min"],
                     "calls": stats["rounds"] * stats.get("iterations", 1), "rounds": stats["rounds"],
                     "batch_size": extra.get("batch_size"), "policy_parts": extra.get("policy_parts", ""),
                     "profile": extra.get("profile", "default"), "obs_dim": extra.get("obs_dim"),
                     "act_dim": extra.get("act_dim"), "device": extra.get("device", machine.get("cpu", {}).get("brand_raw", "")),
                     "threads": extra.get("threads"), "torch": extra.get("torch", ""),
                     "python": machine.get("python_version", ""), "flowbench_commit": commit})
    if not rows:
        raise ValueError(f"{path} holds no flowbench timing benchmarks (run pytest tests/benchmarks "
                         f"--benchmark-enable --benchmark-json FILE)")
    return pd.DataFrame(rows)


def plot_timing(frame: pd.DataFrame, path: Path) -> Path:
    """Seconds per 10⁴ calls against K (log–log), a line per algorithm, a panel per part."""
    import matplotlib.ticker
    import seaborn as sns

    from harness.plots import save_figure

    sns.set_theme(style="whitegrid", context="paper")
    parts = [p for p in PARTS if p in set(frame["part"])]
    grid = sns.relplot(data=frame, x="K", y="seconds_per_1e4", hue="algorithm", style="algorithm", col="part",
                       col_order=parts, kind="line", markers=True, dashes=False, height=3.2, aspect=1.1,
                       facet_kws={"sharey": False})
    titles = {"policy_update": "policy update", "full_update": "full update (critic included)",
              "act": "acting (batch of observations)"}
    ks = sorted(frame["K"].unique())
    for part, ax in zip(parts, grid.axes.flat):
        ax.set_title(titles[part])
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        # log y spanning at least a decade: a flat line must look flat, not fill the panel with noise
        ax.set_yscale("log")
        low, high = frame.loc[frame.part == part, "seconds_per_1e4"].agg(["min", "max"])
        centre, half = math.sqrt(low * high), max(math.sqrt(high / low), math.sqrt(10.0)) * 1.15
        ax.set_ylim(centre / half, centre * half)
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    grid.set_axis_labels("flow / diffusion steps K", "seconds per 10⁴ calls")
    device = ", ".join(sorted(frame["device"].astype(str).unique()))
    grid.figure.suptitle(f"Cost against the number of flow steps ({device})", y=1.04)
    return save_figure(grid.figure, path, dpi=150)


def summary_markdown(frame: pd.DataFrame, command: str) -> str:
    """The ratios, what grows with K, and every time, with the settings and the command that made them."""
    first = frame.iloc[0]
    batches = frame.groupby(frame.part.eq("act").map({True: "acting batch", False: "update batch"})).batch_size.max()
    settings = ", ".join(f"{name} {int(size)}" for name, size in batches.items())
    seconds = frame.pivot_table(index=["algorithm", "part"], columns="K", values="seconds_per_1e4")
    scaling = "".join(f"- `{algo}`: {WHAT_SCALES[algo]}\n" for algo in sorted(set(frame.algorithm)) if algo in WHAT_SCALES)
    return (
        f"# Cost against the number of flow steps K\n\n"
        f"Device: {first['device']} ({first['threads']} threads), torch {first['torch']}, flowbench "
        f"{first['flowbench_commit']}; {settings}; networks: {first['profile']}.\n\nRegenerate: `{command}`\n\n"
        f"## time(K = {int(frame.K.max())}) / time(K = {int(frame.K.min())}), same run\n\n"
        f"{ratio_table(frame).to_markdown(floatfmt='.2f')}\n\n"
        f"## What grows with K in the policy update\n\n{scaling}\n"
        f"## Seconds per 10⁴ calls (median over rounds)\n\n{seconds.to_markdown(floatfmt='.1f')}\n"
    )


def write_outputs(frame: pd.DataFrame, out: Path, command: str) -> dict[str, Path]:
    """``timing.csv`` (tidy), ``timing.png`` and ``summary.md`` (ratios and times) under ``out``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / CSV_NAME, "plot": out / PLOT_NAME, "summary": out / SUMMARY_NAME}
    atomic_write_text(paths["csv"], frame.to_csv(index=False, float_format="%.6g"))
    plot_timing(frame, paths["plot"])
    atomic_write_text(paths["summary"], summary_markdown(frame, command))
    return paths
