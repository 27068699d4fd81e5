"""``flowbench demo``: the flow methods and the baselines that frame them, 3 seeds, on two small local datasets;
then their table, aggregates, learning curves, the toy's actions and the cost against K.

By default the demo trains FlowQ, FQL and QIPO, the methods this harness hosts, next to BC, IQL and Diffusion-QL
(``DEMO_ALGOS``); ``--all`` trains every registered algorithm on the same tasks. Each (algorithm, task) trains its
3 seeds as one batched model in one process (``harness.run.train_seeds``). The processes run in parallel, one per
core with one torch thread each: on small networks that gives more throughput than one run using every core,
and several multi-threaded torch processes on the same cores slow each other down badly. Finished runs (of the
same config) are reused when the demo is run again, so it then only rewrites its results; half-done ones resume.

What the demo writes (``write_results``): ``README.md`` (the figures with their captions, and what each
schedule can and cannot show), ``table.md``/``table.tex`` (mean ± std over seeds), rliable's aggregates with
their intervals, learning curves (at most ``MAX_LINES`` algorithms a panel, 95% bands over seeds), the toy's
action scatter (``toy_actions.png``, seed 0 of each algorithm) and the cost against K (``timing/``).
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from algos import REGISTRY
from harness import datasets, rundir
from harness.data import load
from harness.files import atomic_write_text
from harness.reporting.aggregate import aggregate, write_aggregates
from harness.reporting.plots import display_name, plot_results
from harness.reporting.report import load_results, render_latex, render_markdown, score_table
from harness.run import RunSpec, finished_summary, load_run_agent, train_seeds
from harness.timing import TimingSpec, has_sampling_steps, measure, write_outputs
from harness.toy_figure import FLOWQ_TOY_FIELD, TOY_DATASET, TOY_TITLE, action_summary, agent_actions, data_actions, scatter_actions

# The seeds' methods and the baselines that frame them: imitation (BC), in-sample Q-learning (IQL), and the
# diffusion policy with a Q-gradient (Diffusion-QL).
DEMO_ALGOS = ("bc", "iql", "diffusion_ql", "fql", "flowq", "qipo")
DEMO_SEEDS = (0, 1, 2)
DEMO_LOG_EVERY = 100  # updates per train.csv row
TOY_SAMPLES = 1000  # actions per panel of the toy's scatter
# The cost against K: every demo algorithm that has flow/diffusion steps, at these K (the policy update and acting).
TIMING_FLOW_STEPS = (1, 4, 16)


@dataclass(frozen=True)
class DemoTask:
    dataset: str
    transitions: int
    steps: int
    eval_every: int
    eval_episodes: int
    # what this schedule shows and what it cannot (the README's caption of the task)
    caption: str = ""
    # per-algorithm settings on this task, over the algorithm's presets
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def scaled(self, scale: float) -> "DemoTask":
        """The task with its dataset size, steps, evaluation interval and episodes shrunk by ``scale`` (tests)."""
        return replace(self, transitions=max(int(self.transitions * scale), 1000), steps=max(int(self.steps * scale), 1),
                       eval_every=max(int(self.eval_every * scale), 1),
                       eval_episodes=max(1, int(self.eval_episodes * scale)))


DEMO_TASKS = (
    # FlowQ's velocity field is the toy figure's 3×256 (FLOWQ_TOY_FIELD): the cpu profile's 2×128 is too smooth
    # across the gap between the modes (results/toy/tuning.md); at 2500 updates here, 3 seeds: 2×128 scored
    # 52 / 52 / 56, 3×256 80 / 68 / 78.
    DemoTask("toy/bimodal-v0", transitions=5_000, steps=3_000, eval_every=500, eval_episodes=100,
             overrides={"flowq": FLOWQ_TOY_FIELD},
             caption="The data's two action modes are equally likely; the upper one pays 1.0 and the lower 0.5, so "
                     "imitating the data scores about 50 and putting every action in the upper mode 100. By 3000 "
                     "updates each method that learns a critic has moved its actions into the upper mode, and BC "
                     "still imitates both (`toy_actions.png` shows where each method's actions land). FQL peaks "
                     "early and drifts down, as the official FQL code does on this toy (79 ± 10 at 3000 updates, 3 "
                     "seeds, run with that code). QIPO clones the data for its first 1000 updates "
                     "and trains only its critic for the next 500 (the `cpu` profile's warm-ups), so its curve starts "
                     "rising at 1500."),
    # PointMaze gets what the 15-minute budget leaves after the toy: too few updates to rank anything, and the
    # caption says so.
    DemoTask("local/pointmaze/umaze-v0", transitions=100_000, steps=1_000, eval_every=200, eval_episodes=10,
             caption="1000 updates are what the demo's 15 minutes leave after the toy, and they show only the start "
                     "of training: BC is still learning to imitate the data's controller, the methods that also "
                     "learn a critic are at or below it, and QIPO has only cloned the data so far (its warm-up). This "
                     "row ranks nothing. The Q-learning methods pass BC after 5–10k updates: at 10k, 3 seeds, every "
                     "one of them scores above BC by more than the seeds' spread "
                     "(`results/pointmaze/umaze.md`)."),
)


def demo_algos(all_algos: bool = False) -> list[str]:
    return sorted(REGISTRY) if all_algos else list(DEMO_ALGOS)


def demo_runs(runs_dir: Path, algos: list[str], scale: float = 1.0) -> list[list[RunSpec]]:
    """The demo's runs: per (algorithm, task) its seeds, which train together as one batched model."""
    groups = []
    for algo in algos:
        for task in (t.scaled(scale) for t in DEMO_TASKS):
            groups.append([RunSpec(algo=algo, dataset=task.dataset, seed=seed, steps=task.steps,
                                   eval_every=task.eval_every, eval_episodes=task.eval_episodes, profile="cpu",
                                   overrides=dict(task.overrides.get(algo, {})), log_every=DEMO_LOG_EVERY,
                                   out=str(rundir.run_path(runs_dir, algo, task.dataset, seed)))
                           for seed in DEMO_SEEDS])
    return groups


def run_demo(out: str | Path | None = None, runs_dir: str | Path = "runs/demo", scale: float = 1.0,
             all_algos: bool = False) -> Path:
    """Runs the demo grid and the timing, then writes the results (``write_results``) into ``out`` (default
    ``runs_dir/report``, where ``flowbench plot runs_dir`` writes; outside the checkout's tracked files, so a demo
    leaves the commit that later runs record clean; ``--out results/demo`` regenerates the shipped copy).
    ``scale`` shrinks dataset sizes, step counts, evaluation episodes and timed calls (tests use a small one)."""
    runs_dir = Path(runs_dir)
    out = Path(out) if out is not None else runs_dir / "report"
    for task in (t.scaled(scale) for t in DEMO_TASKS):
        if not datasets.is_local(task.dataset):
            print(f"building {task.dataset} ({task.transitions} transitions) ...", flush=True)
            datasets.build(task.dataset, task.transitions)
    algos = demo_algos(all_algos)
    groups = demo_runs(runs_dir, algos, scale)
    # Longest first, so that the last jobs to finish are short and both workers end together.
    groups.sort(key=lambda g: -g[0].steps)
    todo = [g for g in groups if any(finished_summary(spec) is None for spec in g)]  # finished: reused as is
    if len(todo) < len(groups):
        print(f"reusing {len(groups) - len(todo)} finished (algorithm, task) runs under {runs_dir}", flush=True)
    timed = [a for a in algos if has_sampling_steps(a)]
    workers = max(1, min(os.cpu_count() or 1, len(todo) + 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_threaded) as pool:
        # each run prints one line per evaluation (progress within runs; the bar counts finished jobs)
        futures = {pool.submit(train_seeds, group, "lines"): group for group in todo}
        timing = pool.submit(measure, timing_spec(timed, scale), False) if timed else None
        for future in tqdm(as_completed(futures), total=len(futures), desc="demo runs", unit="job"):
            summaries = future.result()
            scores = " / ".join(f"{s['final']['normalized_score']:.1f}" for s in summaries)
            tqdm.write(f"{summaries[0]['algo']:14s} {summaries[0]['dataset']:28s} seeds {scores}  "
                       f"({max(s['seconds'] for s in summaries):.0f} s)")
        timing_frame = timing.result() if timing else None
    write_results(runs_dir, out, timing_frame, scale)
    return out


def timing_spec(algos: list[str], scale: float = 1.0) -> TimingSpec:
    """The demo's cost against K: the policy update and acting, ``cpu`` profile, one seed, on the CPU."""
    return TimingSpec(algos=tuple(algos), flow_steps=TIMING_FLOW_STEPS, parts=("policy_update", "act"),
                      updates=max(1, int(10 * scale)), rounds=max(1, round(5 * min(scale, 1.0))),
                      min_round_seconds=0.2 * min(scale, 1.0), profile="cpu", device="cpu")


def write_results(runs_dir: Path, out: Path, timing: pd.DataFrame | None = None, scale: float = 1.0) -> list[Path]:
    """What ``flowbench collect``, ``report`` (markdown and LaTeX), ``aggregate`` and ``plot`` write, the toy's
    action scatter, the timing (when measured) and the README that captions them (schedules at ``scale``), into
    ``out``."""
    evals, final = load_results(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = score_table(final)
    note = (f"Seeds {', '.join(map(str, sorted(final['seed'].unique())))}, `cpu` profile, the demo's schedules "
            "(README.md says what each can show); regenerate with `flowbench demo --out results/demo`.\n\n")
    files = {"evals.csv": evals.to_csv(index=False), "table.md": note + render_markdown(table),
             "table.tex": render_latex(table)}
    for name, text in files.items():
        atomic_write_text(out / name, text)
    result = aggregate(final)
    paths = [out / name for name in files] + write_aggregates(result, out) + plot_results(evals, result, out)
    toy = toy_scatter(runs_dir, out, sorted(final.loc[final["dataset"] == TOY_DATASET, "algo"].unique()))
    paths += [toy, out / "toy_actions.md"] if toy else []
    if timing is not None:
        command = "flowbench timing " + " ".join(shlex.quote(a) for a in timing_arguments(timing))
        paths += list(write_outputs(timing, out / "timing", command).values())
    paths.append(write_readme(out, render_markdown(table), scale, has_toy=toy is not None,
                              has_timing=(out / "timing" / "timing.png").exists()))
    print(render_markdown(table))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return paths


def timing_arguments(frame: pd.DataFrame) -> list[str]:
    """The ``flowbench timing`` arguments that measure what the demo measured."""
    ks = ",".join(str(k) for k in sorted(frame["K"].unique()))
    algos = ",".join(sorted(frame["algorithm"].unique()))
    parts = ",".join(sorted(frame["part"].unique()))
    return ["--algos", algos, "--flow-steps", ks, "--parts", parts, "--profile", "cpu", "--device", "cpu"]


def toy_scatter(runs_dir: Path, out: Path, algos: list[str]) -> Path | None:
    """``toy_actions.png``: the data's actions and ``TOY_SAMPLES`` actions of each algorithm's seed-0 toy run
    (its final checkpoint), beside the share of actions in each mode (``toy_actions.md``)."""
    seed = DEMO_SEEDS[0]
    runs = {algo: rundir.run_path(runs_dir, algo, TOY_DATASET, seed) for algo in algos}
    runs = {algo: path for algo, path in runs.items() if rundir.is_finished(path)}
    if not runs:
        return None
    data = load(TOY_DATASET)
    frames = [data_actions(data, TOY_SAMPLES, seed)]
    for algo, path in runs.items():
        frames.append(agent_actions(load_run_agent(path, data), display_name(algo), TOY_SAMPLES, seed))
    table = pd.concat(frames, ignore_index=True)
    atomic_write_text(out / "toy_actions.md", (
        f"`{TOY_DATASET}`: {TOY_SAMPLES} actions of seed {seed} of each algorithm at the end of its demo run, at "
        "uniform states; the share of actions in the upper mode (pays 1.0), the lower one (0.5) and off the "
        "support (0).\n\n" + action_summary(table, data).to_markdown(floatfmt=".3f") + "\n"))
    return scatter_actions(table, out / "toy_actions.png", TOY_TITLE, col_wrap=min(4, len(frames)))


def write_readme(out: Path, table_text: str, scale: float, has_toy: bool, has_timing: bool) -> Path:
    """``README.md``: the demo's figures, each with its caption, and what each task's schedule can show."""
    tasks = "\n".join(f"- **{t.dataset}**: {t.steps} updates, {t.eval_episodes} evaluation episodes every "
                      f"{t.eval_every}. {t.caption}" for t in (task.scaled(scale) for task in DEMO_TASKS))
    sections = [
        "# flowbench demo\n\n"
        f"3 seeds ({', '.join(map(str, DEMO_SEEDS))}) per algorithm and task, `cpu` profile (small networks), each "
        "algorithm's presets; regenerate with `flowbench demo --out results/demo`.\n\n"
        f"{tasks}\n",
        f"## Final scores\n\n{table_text}\n",
        "## Learning curves\n\nNormalised score at each evaluation: the mean over seeds, and its 95% bootstrap "
        "band.\n\n![learning curves](learning_curves.png)\n",
        "## Aggregates\n\nrliable's IQM, mean, median and optimality gap over both tasks, with 95% stratified "
        "bootstrap intervals (`aggregates.md`). With two tasks of different kinds these summarise the table; "
        "they rank nothing beyond it.\n\n![aggregate intervals](aggregate_intervals.png)\n",
    ]
    if has_toy:
        sections.append("## The toy's actions\n\nWhere each algorithm's policy puts its actions (seed 0, end of "
                        "training, `toy_actions.md` counts them): a method that uses its critic puts them in the "
                        "upper, green mode; imitation reproduces both.\n\n![toy actions](toy_actions.png)\n")
    if has_timing:
        sections.append("## Cost against the number of flow steps K\n\nSeconds per 10⁴ policy updates and per 10⁴ "
                        "acting calls against K, on this machine's CPU (one seed, one torch thread; `timing/summary.md`). FlowQ's policy update does not integrate the flow, so "
                        "its cost stays flat in K; FQL's, QIPO's and Diffusion-QL's grow with it. FQL acts with its "
                        "one-step policy, so its acting cost is the one that stays flat.\n\n![timing](timing/timing.png)\n")
    atomic_write_text(out / "README.md", "\n".join(sections))
    return out / "README.md"


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)
