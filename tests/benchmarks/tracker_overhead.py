"""What a tracker costs a run, as ratios against ``--tracker none`` measured in one process (not a pytest file).

Two measurements, each visiting the trackers in alternating order per round so that a busy spell of a shared
machine hits all of them alike; a figure is the median over rounds:

- per logged row: ``Tracker.log`` of a train row as ``RunTrainer`` passes it (5 numeric columns), with a
  checkpoint's calls (``before_checkpoint``/``after_checkpoint``) every ``--rows-per-checkpoint`` rows — the
  tracker's whole cost per row; and separately its start and finish (``open_tracker`` to ``close``), paid once
  per run attempt;
- a whole run: ``bc`` on ``toy/bimodal-v0`` (``--profile cpu``) for ``--steps`` updates with a train row every
  ``--log-every`` updates, wall time from start to summary, tracker start and finish included.

    python tests/benchmarks/tracker_overhead.py --out results/tracking/overhead.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.files import atomic_write_text  # noqa: E402
from harness.run import RunSpec, train  # noqa: E402
from harness.tracking import TrackerSettings, open_tracker  # noqa: E402

TRACKERS = {"none": TrackerSettings(), "tensorboard": TrackerSettings(kind="tensorboard"),
            "wandb offline": TrackerSettings(kind="wandb", mode="offline")}


def per_row_seconds(settings: TrackerSettings, rows: int, rows_per_checkpoint: int, workdir: Path
                    ) -> tuple[float, float]:
    """Seconds per logged row, and seconds of start + finish."""
    out = Path(tempfile.mkdtemp(dir=workdir))
    opened = time.perf_counter()
    tracker = open_tracker(settings, out, {"run": {"algo": "bc", "dataset": "toy/bimodal-v0", "seed": 0}}, None)
    start_seconds = time.perf_counter() - opened
    row = {"step": 0, "seconds": "1.23456", "actor_loss": "-0.123457", "critic_loss": "0.654321",
           "q_mean": "12.3457", "grad_norm": "0.0123457"}
    start = time.perf_counter()
    for i in range(1, rows + 1):
        tracker.log("train", i, {**row, "step": i})
        if i % rows_per_checkpoint == 0:
            tracker.before_checkpoint(i)
            tracker.after_checkpoint(i)
    elapsed = time.perf_counter() - start
    finishing = time.perf_counter()
    tracker.finish({"steps": rows})
    tracker.close()
    return elapsed / rows, start_seconds + time.perf_counter() - finishing


def run_seconds(settings: TrackerSettings, steps: int, log_every: int, workdir: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=workdir))
    spec = RunSpec(algo="bc", dataset="toy/bimodal-v0", profile="cpu", steps=steps, eval_every=steps // 4,
                   eval_episodes=5, log_every=log_every, out=str(out / "run"), tracker=settings)
    start = time.perf_counter()
    train(spec, progress="off")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2000, help="rows logged per tracker and round (per-row figure)")
    parser.add_argument("--rows-per-checkpoint", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000, help="updates of the whole run")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--out", help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    per_row: dict[str, list[float]] = {name: [] for name in TRACKERS}
    start_finish: dict[str, list[float]] = {name: [] for name in TRACKERS}
    whole: dict[str, list[float]] = {name: [] for name in TRACKERS}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for r in range(args.rounds):
            order = list(TRACKERS) if r % 2 == 0 else list(reversed(TRACKERS))
            for name in order:
                row, once = per_row_seconds(TRACKERS[name], args.rows, args.rows_per_checkpoint, workdir)
                per_row[name].append(row)
                start_finish[name].append(once)
                whole[name].append(run_seconds(TRACKERS[name], args.steps, args.log_every, workdir))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    run_none = statistics.median(whole["none"])
    none_per_update = run_none / args.steps
    rows = args.steps // args.log_every
    lines = [f"Tracker overhead, median of {args.rounds} rounds in one process "
             f"(`python tests/benchmarks/tracker_overhead.py {' '.join(argv or sys.argv[1:])}`).",
             "",
             f"| tracker | per logged row (µs) | per row / time of 1000 updates without a tracker | start + finish (s) "
             f"| bc run of {args.steps} updates, {rows} train rows (s) | run time / none (min–max over rounds) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in TRACKERS:
        row, once, run = (statistics.median(x[name]) for x in (per_row, start_finish, whole))
        ratios = [w / n for w, n in zip(whole[name], whole["none"])]
        lines.append(f"| {name} | {row * 1e6:.1f} | {row / (1000 * none_per_update):.2e} | {once:.2f} | {run:.2f} "
                     f"| {run / run_none:.3f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
