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

import matplotlib.ticker
import pandas as pd
import seaborn as sns
import torch
from tqdm.auto import tqdm

from algos import REGISTRY
from algos.kit.agent import Agent, Batch
from algos.kit.config import ConfigError
from algos.kit.registry import get_agent_class, make_agent, resolve_config
from algos.kit.seeds import SeedRandom
from harness.compiling import AUTO_MIN_UPDATES, COMPILE_MODES
from harness.data import TransitionBuffer
from harness.files import atomic_write_text
from harness.provenance import git_commit
from harness.reporting.plots import algorithm_colors, display_name, figure_order, save_figure
from harness.trainer import Trainer
from harness.training import GRAPH_MODES, GraphedCall, configure_matmul_precision, resolve_device

PARTS = ("policy_update", "full_update", "act")
DEFAULT_FLOW_STEPS = (1, 2, 4, 8, 16, 32)
# What is timed of an algorithm without flow/diffusion steps (BC, IQL, ReBRAC): once, at the smallest K,
# for the speed of training itself (CUDA graphs, seeds per process); it has no curve against K.
STEPLESS_PARTS = ("full_update", "act")
# Every algorithm with a number of flow/diffusion steps (the default of ``flowbench timing``).
def has_sampling_steps(algo: str) -> bool:
    """Whether ``algo`` has a number K of flow/diffusion steps (a ``sampling_steps`` field) to time against."""
    return "sampling_steps" in get_agent_class(algo).config_class.field_names()


TIMED_ALGOS = tuple(sorted(name for name in REGISTRY if has_sampling_steps(name)))
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
    "fbrac": "the Q term's action comes through all K Euler steps with backpropagation (K forward + K backward "
             "passes); the full update adds K forward passes for the critic's next actions",
    "fawac": "nothing in the policy update (one weighted flow-matching pass; the weights read the critic and V); "
             "the full update adds K forward passes for the critic's next actions",
    "idql": "nothing in the update (DDPM BC + IQL critic); acting samples N = 64 candidates of K reverse steps "
            "from the EMA model",
    "cac": "the Q term's action comes through all K consistency steps with backpropagation, next to the two "
           "passes of the consistency loss; the full update adds K forward passes for the critic's next actions",
}
# Dimensions of D4RL antmaze (29-D observations, 8-D actions): a typical task of these papers.
OBS_DIM, ACT_DIM = 29, 8
CSV_NAME, PLOT_NAME, SUMMARY_NAME = "timing.csv", "timing.png", "summary.md"
# Untimed calls before a graphed cell is timed: every code path (ReBRAC's two, Diffusion-QL's EMA steps
# every 5th) must have run its eager warm-up and been captured.
GRAPH_WARMUP_CALLS = 30


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
    seeds: tuple[int, ...] = (1,)  # seeds per agent (one batched model): each count is its own cell
    cuda_graph: tuple[str, ...] = ("auto",)  # each mode is its own cell; auto is eager off CUDA
    compile: tuple[str, ...] = ("off",)  # full updates compiled for the CPU (harness.compiling); each its own cell
    tf32: bool = True  # on CUDA, float32 matmuls in TF32, as training runs them
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        unknown = [a for a in self.algos if a not in REGISTRY]
        if unknown:
            raise ConfigError(f"unknown algorithm(s) {', '.join(unknown)}; timed algorithms: {', '.join(TIMED_ALGOS)}")
        stepless = [a for a in self.algos if not has_sampling_steps(a)]
        if stepless and not set(self.parts) & set(STEPLESS_PARTS):
            raise ConfigError(f"{', '.join(stepless)} ha{'s' if len(stepless) == 1 else 've'} no flow/diffusion steps "
                              f"and no separate policy update: time their {' or '.join(STEPLESS_PARTS)}")
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
        if not self.seeds or any(n < 1 for n in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds must be distinct positive integers (seeds per process), got {list(self.seeds)}")
        bad_modes = [m for m in self.cuda_graph if m not in GRAPH_MODES]
        if not self.cuda_graph or bad_modes or len(set(self.cuda_graph)) != len(self.cuda_graph):
            raise ConfigError(f"--cuda-graph takes distinct values among {', '.join(GRAPH_MODES)}, "
                              f"got {list(self.cuda_graph)}")
        bad_compile = [m for m in self.compile if m not in COMPILE_MODES]
        if not self.compile or bad_compile or len(set(self.compile)) != len(self.compile):
            raise ConfigError(f"--compile takes distinct values among {', '.join(COMPILE_MODES)}, "
                              f"got {list(self.compile)}")


def synthetic_batch(batch_size: int, obs_dim: int, act_dim: int, device: torch.device, generator: torch.Generator,
                    seeds: int | None = None) -> Batch:
    """A batch of random transitions shaped like a real one (actions in [-1, 1], masks 0/1): ``[B, ...]``,
    or ``[S, B, ...]`` with ``seeds=S``."""
    lead = (batch_size,) if seeds is None else (seeds, batch_size)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn((*lead, *shape), generator=generator).to(device=device, dtype=torch.get_default_dtype())

    actions = rand(act_dim).clamp(-1.0, 1.0)
    return Batch(obs=rand(obs_dim), actions=actions, rewards=rand(), next_obs=rand(obs_dim),
                 masks=(rand() > -2.0).to(actions.dtype), next_actions=rand(act_dim).clamp(-1.0, 1.0))


def synthetic_buffer(size: int, obs_dim: int, act_dim: int, device: torch.device, generator: torch.Generator
                     ) -> TransitionBuffer:
    """A ``TransitionBuffer`` of random transitions (timing does not depend on the data's values), so a
    timed full update samples its minibatches on the device as training does."""
    return TransitionBuffer(synthetic_batch(size, obs_dim, act_dim, device, generator))


def timing_agent(algo: str, steps: int, spec: TimingSpec, device: torch.device, seeds: int = 1) -> Agent:
    """``algo`` with K = ``steps`` (``sampling_steps``), its default networks or ``spec.profile``, and
    ``seeds`` seeds as one batched model."""
    overrides = {**TIMING_OVERRIDES.get(algo, {}), **spec.overrides.get(algo, {})}
    if has_sampling_steps(algo):
        overrides["sampling_steps"] = steps
    agent = make_agent(algo, spec.obs_dim, spec.act_dim, resolve_config(algo, overrides, spec.profile), device, seeds)
    for i, g in enumerate(agent.generators):
        g.manual_seed(spec.seed + i)
    return agent


def timed_call(agent: Agent, part: str, spec: TimingSpec, device: torch.device, cuda_graph: str = "off",
               compile: str = "off") -> Callable[[], Any]:
    """The call that ``part`` times, on synthetic data for each of the agent's seeds:
    - ``full_update``: a ``Trainer`` (minibatch drawn on the device, update, metric sums), as a
      training run makes it — a CUDA graph per code path with ``cuda_graph="auto"`` on CUDA, compiled per code
      path with ``compile`` on (auto: where the agent's compiled step pays off; timing ignores run length);
    - ``policy_update``: ``agent.policy_train_step`` on a fixed batch; ``act``: ``agent.act`` on fixed
      observations — each captured as a CUDA graph with ``cuda_graph="auto"`` on CUDA."""
    generator = torch.Generator().manual_seed(spec.seed)
    seeds = agent.num_seeds
    if part == "full_update":
        buffer = synthetic_buffer(max(10_000, spec.batch_size), spec.obs_dim, spec.act_dim, device, generator)
        # a timed call is steady-state throughput: auto judges the agent and device, not a run's length
        return Trainer(agent, buffer, [spec.seed + i for i in range(seeds)], spec.batch_size, cuda_graph,
                       compile=compile, updates=AUTO_MIN_UPDATES)
    if part == "act":
        obs = synthetic_batch(spec.act_batch, spec.obs_dim, spec.act_dim, device, generator, seeds).obs
        act_rng = SeedRandom([torch.Generator(device=device).manual_seed(spec.seed + i) for i in range(seeds)], device)

        def call() -> torch.Tensor:
            with torch.no_grad():
                return agent.select_actions(obs, act_rng)
        generators = act_rng.generators
    else:
        batch = synthetic_batch(spec.batch_size, spec.obs_dim, spec.act_dim, device, generator, seeds)

        def call() -> torch.Tensor:
            return agent.policy_train_step(batch)
        generators = agent.generators
    if cuda_graph == "auto" and device.type == "cuda":
        return GraphedCall(call, device, generators, name=f"{agent.name} {part}")
    return call


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
    """Times every (algorithm, K, seeds, CUDA graph mode, part) cell; one tidy row per cell."""
    spec.validate()
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    configure_matmul_precision(device, spec.tf32)
    cells = []
    for algo in spec.algos:
        for steps in spec.flow_steps if has_sampling_steps(algo) else [min(spec.flow_steps)]:
            for seeds in spec.seeds:
                for mode in spec.cuda_graph:
                    for compile_mode in spec.compile:
                        agent = timing_agent(algo, steps, spec, device, seeds)
                        for part in [p for p in spec.parts if has_sampling_steps(algo) or p in STEPLESS_PARTS]:
                            # compiling is the full update's (a policy update or act is not a training step)
                            if compile_mode != "off" and part != "full_update":
                                continue
                            cells.append({"algorithm": algo, "K": steps, "seeds": seeds, "mode": mode, "part": part,
                                          "compile": compile_mode, "round_times": [],
                                          "call": timed_call(agent, part, spec, device, mode, compile_mode)})
    per_round = max(1, math.ceil(spec.updates / spec.rounds))
    bar = tqdm(total=len(cells) * (spec.rounds + 1), desc="timing", unit="cell", disable=not progress)
    for cell in cells:
        # warm-up: first calls allocate buffers (on a GPU, load kernels, and capture the CUDA graphs of
        # every code path); the last one sizes the rounds
        graphed = cell["mode"] == "auto" and device.type == "cuda"
        compiled = cell["compile"] != "off"  # each code path: a recording call, then the compiling one
        for _ in range(max(spec.warmup, GRAPH_WARMUP_CALLS) if graphed or compiled else spec.warmup):
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
            "algorithm": cell["algorithm"], "K": cell["K"], "part": cell["part"], "seeds": cell["seeds"],
            "cuda_graph": graph_mode_used(cell["call"], device),
            "seconds_per_1e4": 1e4 * times.median(), "seconds_per_1e4_min": 1e4 * times.min(),
            "calls_per_second": 1.0 / times.median(), "seed_calls_per_second": cell["seeds"] / times.median(),
            "calls": cell["calls_per_round"] * spec.rounds, "rounds": spec.rounds,
            "batch_size": spec.act_batch if cell["part"] == "act" else spec.batch_size,
            "policy_parts": "+".join(cls.policy_update_parts), "profile": spec.profile or "default",
            "obs_dim": spec.obs_dim, "act_dim": spec.act_dim, **info,
        })
    return pd.DataFrame(rows)


def graph_mode_used(call: Any, device: torch.device) -> str:
    """What a timed call really ran as: ``cuda-graph``, ``eager``, or ``cuda-graph (partly)``."""
    if isinstance(call, Trainer):
        return call.mode
    if isinstance(call, GraphedCall):
        return "cuda-graph" if call.captured else "eager"
    return "eager"


def environment_info(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": f"{device.type}: {name}", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "flowbench_commit": git_commit() or "unknown"}


def with_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``setting`` (seeds per process and how the call ran, e.g. ``8 seeds, cuda-graph``); a table
    from an older run or a pytest-benchmark JSON is one seed, eager."""
    frame = frame.copy()
    if "seeds" not in frame:
        frame["seeds"] = 1
    if "cuda_graph" not in frame:
        frame["cuda_graph"] = "eager"
    if "seed_calls_per_second" not in frame:
        frame["calls_per_second"] = 1e4 / frame["seconds_per_1e4"]
        frame["seed_calls_per_second"] = frame["seeds"] * frame["calls_per_second"]
    frame["setting"] = [f"{int(n)} seed{'s' if n > 1 else ''}, {mode}" for n, mode in zip(frame.seeds, frame.cuda_graph)]
    return frame


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm, part and setting: time at the largest K over time at the smallest K (the same run)."""
    rows = []
    for (algo, part, setting), group in with_settings(frame).groupby(["algorithm", "part", "setting"], sort=True):
        if group.K.nunique() < 2:
            continue  # timed at one K only (an algorithm without flow steps): no curve
        group = group.sort_values("K")
        first, last = group.iloc[0], group.iloc[-1]
        rows.append({"algorithm": algo, "part": part, "setting": setting, "K_min": int(first["K"]),
                     "K_max": int(last["K"]), "seconds_per_1e4_at_K_min": first["seconds_per_1e4"],
                     "seconds_per_1e4_at_K_max": last["seconds_per_1e4"],
                     "ratio": last["seconds_per_1e4"] / first["seconds_per_1e4"]})
    return pd.DataFrame(rows)


def ratio_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Algorithms (× settings, when there are several) × parts, cells time(K_max)/time(K_min)."""
    table = ratios(frame)
    if table.empty:
        return pd.DataFrame()
    index = "algorithm" if table.setting.nunique() == 1 else ["algorithm", "setting"]
    table = table.pivot_table(index=index, columns="part", values="ratio")
    return table[[p for p in PARTS if p in table.columns]]


def speedup_table(frame: pd.DataFrame, part: str = "full_update") -> pd.DataFrame:
    """Per algorithm and K: seed-updates per second of ``part`` in each setting, and each setting's rate
    over the one-seed eager rate of the same run (the graph's and the batched seeds' speed-ups)."""
    frame = with_settings(frame)
    frame = frame[frame.part == part]
    if frame.empty:
        return pd.DataFrame()
    rates = frame.pivot_table(index=["algorithm", "K"], columns="setting", values="seed_calls_per_second")
    baseline = "1 seed, eager"
    if baseline in rates.columns:
        for setting in [c for c in rates.columns if c != baseline]:
            rates[f"{setting} / {baseline}"] = rates[setting] / rates[baseline]
    return rates


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
    sns.set_theme(style="whitegrid", context="paper")
    algos = list(frame["algorithm"].unique())
    frame = with_settings(frame).assign(algorithm=frame["algorithm"].map(display_name))
    parts = [p for p in PARTS if p in set(frame["part"])]
    style = "setting" if frame.setting.nunique() > 1 else "algorithm"
    grid = sns.relplot(data=frame, x="K", y="seconds_per_1e4", hue="algorithm", palette=algorithm_colors(algos),
                       hue_order=figure_order(algos), style=style, col="part",
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
    frame = with_settings(frame)
    several = frame.setting.nunique() > 1
    seconds = frame.pivot_table(index=["algorithm", "part", *(["setting"] if several else [])], columns="K",
                                values="seconds_per_1e4")
    scaling = "".join(f"- `{algo}`: {WHAT_SCALES[algo]}\n" for algo in sorted(set(frame.algorithm)) if algo in WHAT_SCALES)
    speedups = speedup_table(frame)
    throughput = (f"## Full updates: seed-updates per second, and speed-ups over one seed eager (same run)\n\n"
                  f"{speedups.to_markdown(floatfmt='.2f')}\n\n") if several and not speedups.empty else ""
    return (
        f"# Cost against the number of flow steps K\n\n"
        f"Device: {first['device']} ({first['threads']} threads), torch {first['torch']}, flowbench "
        f"{first['flowbench_commit']}; {settings}; networks: {first['profile']}.\n\nRegenerate: `{command}`\n\n"
        f"## time(K = {int(frame.K.max())}) / time(K = {int(frame.K.min())}), same run\n\n"
        f"{ratio_table(frame).to_markdown(floatfmt='.2f')}\n\n"
        f"{throughput}"
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
