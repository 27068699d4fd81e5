"""``flowbench demo``: every registered algorithm on small local datasets, then its table, aggregates and plots.

Runs use each algorithm's ``cpu`` profile and short schedules, aiming at 15 minutes on two CPU cores
(README: what was measured). They run in parallel, one process per core with one torch thread each: on small
networks that gives more throughput than one run using every core, and several multi-threaded torch
processes on the same cores slow each other down badly. Finished runs (of the same config) are reused
when the demo is run again, so it then only rewrites its results; half-done ones resume.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from algos import REGISTRY
from harness import datasets, rundir
from harness.reporting.aggregate import aggregate, write_aggregates
from harness.reporting.plots import plot_results
from harness.reporting.report import load_results, render_latex, render_markdown, score_table
from harness.files import atomic_write_text
from harness.run import RunSpec, finished_summary, train


@dataclass(frozen=True)
class DemoTask:
    dataset: str
    transitions: int
    steps: int
    eval_every: int
    eval_episodes: int


# Every algorithm × two tasks, aiming at 15 minutes on two cores: short schedules, so the numbers show the
# methods' behaviour early in training (the learning checks and results/ use longer runs).
DEMO_TASKS = (
    DemoTask("toy/bimodal-v0", transitions=5_000, steps=1_000, eval_every=500, eval_episodes=100),
    DemoTask("local/pointmaze/umaze-v0", transitions=100_000, steps=1_000, eval_every=500, eval_episodes=10),
)


def run_demo(out: str | Path | None = None, runs_dir: str | Path = "runs/demo", scale: float = 1.0,
             algos: list[str] | None = None) -> Path:
    """Runs the demo grid, then writes its results (``write_results``) into ``out`` (default ``runs_dir/report``,
    where ``flowbench plot runs_dir`` writes; outside the checkout's tracked files, so a demo leaves the
    commit that later runs record clean; ``--out results/demo`` regenerates the shipped copy). ``scale``
    shrinks dataset sizes, step counts and evaluation episodes (tests use a small one)."""
    runs_dir = Path(runs_dir)
    out = Path(out) if out is not None else runs_dir / "report"
    for task in DEMO_TASKS:
        if not datasets.is_local(task.dataset):
            print(f"building {task.dataset} ({int(task.transitions * scale)} transitions) ...", flush=True)
            datasets.build(task.dataset, max(int(task.transitions * scale), 1000))
    specs = []
    for algo in algos or sorted(REGISTRY):
        for task in DEMO_TASKS:
            every = max(int(task.eval_every * scale), 1)
            specs.append(RunSpec(algo=algo, dataset=task.dataset, seed=0, steps=max(int(task.steps * scale), 1),
                                 eval_every=every, eval_episodes=max(1, int(task.eval_episodes * scale)), profile="cpu",
                                 log_every=min(500, every), out=str(rundir.run_path(runs_dir, algo, task.dataset, 0))))
    # Longest runs first, so that the last ones to finish are short and both workers end together.
    specs.sort(key=lambda s: -s.steps)
    todo = [spec for spec in specs if finished_summary(spec) is None]  # finished with this config: reused as is
    if len(todo) < len(specs):
        print(f"reusing {len(specs) - len(todo)} finished runs under {runs_dir}", flush=True)
    if todo:
        workers = max(1, min(os.cpu_count() or 1, len(todo)))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_single_threaded) as pool:
            # each run prints one line per evaluation (progress within runs; the bar counts finished runs)
            futures = [pool.submit(train, spec, "lines") for spec in todo]
            for future in tqdm(as_completed(futures), total=len(futures), desc="demo runs", unit="run"):
                summary = future.result()
                tqdm.write(f"{summary['algo']:14s} {summary['dataset']:28s} "
                           f"score {summary['final']['normalized_score']:7.1f}  ({summary['seconds']:.0f} s)")
    write_results(runs_dir, out)
    return out


def write_results(runs_dir: Path, out: Path) -> list[Path]:
    """What ``flowbench collect``, ``report`` (markdown and LaTeX), ``aggregate`` and ``plot`` write, into ``out``.

    The demo has one seed: the table shows ``± n/a`` (no spread) and the aggregates no intervals.
    """
    evals, final = load_results(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = score_table(final)
    note = "One seed (0), `cpu` profile, short schedules; regenerate with `flowbench demo --out results/demo`.\n\n"
    files = {"evals.csv": evals.to_csv(index=False), "table.md": note + render_markdown(table),
             "table.tex": render_latex(table)}
    for name, text in files.items():
        atomic_write_text(out / name, text)
    result = aggregate(final)
    paths = [out / name for name in files] + write_aggregates(result, out) + plot_results(evals, result, out)
    print(render_markdown(table))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return paths


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)
