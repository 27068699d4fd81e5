"""``flowbench demo``: every registered algorithm on small local datasets, then a table and a plot.

Runs use each algorithm's ``cpu`` profile and short schedules so the whole demo fits in 15 minutes on
two CPU cores. They run in parallel, one process per core with one torch thread each: on small
networks that gives more throughput than one run using every core, and several multi-threaded torch
processes on the same cores slow each other down badly. Finished runs are reused when the demo is
run again; half-done ones resume.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from algos import REGISTRY
from harness import datasets
from harness.plots import learning_curves
from harness.report import collect, score_table
from harness.run import RunSpec, atomic_write_text, train


@dataclass(frozen=True)
class DemoTask:
    dataset: str
    transitions: int
    steps: int
    eval_every: int
    eval_episodes: int


# Ten algorithms × two tasks in 15 minutes on two cores: short schedules, so the numbers show the
# methods' behaviour early in training (the learning checks and results/ use longer runs).
DEMO_TASKS = (
    DemoTask("toy/bimodal-v0", transitions=5_000, steps=3_000, eval_every=1_000, eval_episodes=100),
    DemoTask("local/pointmaze/umaze-v0", transitions=100_000, steps=6_000, eval_every=3_000, eval_episodes=20),
)


def run_demo(out: str | Path = "results/demo", runs_dir: str | Path = "runs/demo", scale: float = 1.0,
             algos: list[str] | None = None) -> Path:
    """Runs the demo grid; ``scale`` shrinks dataset sizes and step counts (tests use a small one)."""
    out, runs_dir = Path(out), Path(runs_dir)
    for task in DEMO_TASKS:
        if not datasets.is_local(task.dataset):
            print(f"building {task.dataset} ({int(task.transitions * scale)} transitions) ...", flush=True)
            datasets.build(task.dataset, max(int(task.transitions * scale), 1000))
    specs = []
    for algo in algos or sorted(REGISTRY):
        for task in DEMO_TASKS:
            every = max(int(task.eval_every * scale), 1)
            specs.append(RunSpec(algo=algo, dataset=task.dataset, seed=0, steps=max(int(task.steps * scale), 1),
                                 eval_every=every, eval_episodes=task.eval_episodes, profile="cpu",
                                 log_every=min(1000, every), out=str(runs_dir / algo / task.dataset.replace("/", "_"))))
    # Longest runs first (an update that integrates the flow costs a few times more), so the last
    # ones to finish are short and both workers end together.
    specs.sort(key=lambda s: -s.steps * (3 if REGISTRY[s.algo].samples_flow_in_training else 1))
    workers = max(1, min(os.cpu_count() or 1, len(specs)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_threaded) as pool:
        futures = [pool.submit(train, spec, False) for spec in specs]
        for future in tqdm(as_completed(futures), total=len(futures), desc="demo runs", unit="run"):
            summary = future.result()
            tqdm.write(f"{summary['algo']:14s} {summary['dataset']:28s} "
                       f"score {summary['final']['normalized_score']:7.1f}  ({summary['seconds']:.0f} s)")
    evals = collect(runs_dir)
    table = score_table(evals)
    out.mkdir(parents=True, exist_ok=True)
    markdown = ("Normalised score (0–100) at the last evaluation, seed 0, `cpu` profile; "
                "regenerate with `flowbench demo`.\n\n" + table.to_markdown() + "\n")
    atomic_write_text(out / "table.md", markdown)
    learning_curves(evals, out / "learning_curves.png")
    print(table.to_markdown())
    print(f"\nwrote {out / 'table.md'} and {out / 'learning_curves.png'}")
    return out


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)
