"""On the CPU: how much faster is each agent's compiled training step (harness/compiling.py) than the eager one,
and what does compiling cost, cold (empty cache) and warm (cache filled by an earlier process)?

For each algorithm, two fresh processes time ``flowbench timing``'s full update (``--profile cpu``: 2×256
networks where the profile says so, K = 10, batch 256, synthetic data). The first compiles with an empty cache
directory (cold compile time). The second, with the cache the first filled, builds the eager and the compiled
step side by side (warm compile time) and times them in alternating rounds of about ``--seconds`` each, so that
a busy spell of a shared machine hits both alike; a rate is the median over rounds. FQL also runs at 4 seeds
in that process (eager and compiled). Compile time is the wall time of the warm-up calls that record and
compile every code path, less the same number of steady-state calls. Rates are wall-clock updates/s and also
per second of this process's CPU time (``time.process_time``). Writes a markdown table.

    python tests/benchmarks/cpu_compile_check.py --out results/timing/cpu_compile.md [--algos fql,iql] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WARMUP = 30  # calls before timing: every code path's recording and compiling calls (QIPO's timing has 2 paths)


def timed_step(algo: str, compile_mode: str, seeds: int):
    import torch

    from harness.timing import TimingSpec, has_sampling_steps, timed_call, timing_agent

    spec = TimingSpec(algos=(algo,), profile="cpu", device="cpu", flow_steps=(10,), compile=(compile_mode,))
    device = torch.device("cpu")
    agent = timing_agent(algo, 10 if has_sampling_steps(algo) else 1, spec, device, seeds)
    return timed_call(agent, "full_update", spec, device, "off", compile_mode)


def warm_up(call) -> tuple[float, float]:
    """(warm-up seconds, steady seconds per call measured right after)."""
    start = time.perf_counter()
    for _ in range(WARMUP):
        call()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        call()
    return warm, (time.perf_counter() - start) / 10


def child(algo: str, sides: list[tuple[str, int]], rounds: int, seconds: float, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    calls, compile_s, counts = {}, {}, {}
    for mode, seeds in sides:
        key = f"{mode}/{seeds}"
        calls[key] = timed_step(algo, mode, seeds)
        warm, per_call = warm_up(calls[key])
        compile_s[key] = max(0.0, warm - WARMUP * per_call) if mode != "off" else 0.0
        counts[key] = max(5, int(seconds / per_call))
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(rounds):
        for key in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            n, start, start_cpu = counts[key], time.perf_counter(), time.process_time()
            for _ in range(n):
                calls[key]()
            wall[key].append(n / (time.perf_counter() - start))
            cpu[key].append(n / (time.process_time() - start_cpu))
    return {"algo": algo, "threads": torch.get_num_threads(), "rounds": rounds, "sides": {
        key: {"mode": calls[key].mode, "updates_per_s": statistics.median(wall[key]),
              "updates_per_cpu_s": statistics.median(cpu[key]), "compile_s": compile_s[key],
              "compiled_calls": calls[key].step_fn.compiled.compiled_calls if calls[key].step_fn.compiled else 0}
        for key in calls}}


def run_child(algo: str, sides: list[tuple[str, int]], rounds: int, seconds: float, threads: int,
              cache: Path) -> dict:
    env = {**os.environ, "FLOWBENCH_COMPILE_CACHE": str(cache)}
    done = subprocess.run([sys.executable, __file__, "--child", algo, json.dumps(sides), str(rounds), str(seconds),
                           str(threads)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"algo": algo, "error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        algo, sides, rounds, seconds, threads = sys.argv[2:7]
        sides = [tuple(side) for side in json.loads(sides)]
        print(json.dumps(child(algo, sides, int(rounds), float(seconds), int(threads))))
        return 0
    from algos import REGISTRY

    parser = argparse.ArgumentParser()
    parser.add_argument("--algos", default=",".join(sorted(REGISTRY)))
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per side (median kept)")
    parser.add_argument("--seconds", type=float, default=1.5, help="about this long per round and side")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="results/timing/cpu_compile.md")
    args = parser.parse_args()
    rows = []
    for algo in args.algos.split(","):
        with tempfile.TemporaryDirectory(prefix="flowbench-compile-") as cache:
            cold = run_child(algo, [("on", 1)], 1, 0.1, args.threads, Path(cache))
            sides = [("off", 1), ("on", 1)] + ([("off", 4), ("on", 4)] if algo == "fql" else [])
            paired = run_child(algo, sides, args.rounds, args.seconds, args.threads, Path(cache))
        rows.append((algo, cold, paired))
        print(json.dumps(rows[-1]), flush=True)
        write_table(rows, args)  # after each algorithm: a long run leaves what it measured so far
    return 0


def write_table(rows: list, args: argparse.Namespace) -> None:
    lines = [
        "# Compiled vs eager CPU training step",
        "",
        f"`python {' '.join(sys.argv)}` — full update, `--profile cpu`, K = 10, batch 256, synthetic data; "
        f"torch threads: {args.threads or 'default'}. Eager and compiled steps run in one process, in "
        f"{args.rounds} alternating rounds of about {args.seconds} s each; a rate is the median over rounds, wall "
        "clock and per CPU-second of the process. Compile: warm-up wall time (recording + compiling every code path) "
        "less the same number of steady calls; cold = empty cache directory, warm = a new process with the cache the "
        "cold one filled.",
        "",
        "| algorithm | seeds | mode | eager upd/s | compiled upd/s | speed-up | eager upd/CPU-s | compiled upd/CPU-s "
        "| speed-up (CPU) | seed-upd/s eager | seed-upd/s compiled | compile cold s | compile warm s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algo, cold, paired in rows:
        error = cold.get("error") or paired.get("error")
        if error:
            lines.append(f"| {algo} | | error: {error} | | | | | | | | | | |")
            continue
        sides = paired["sides"]
        for seeds in sorted({int(key.split("/")[1]) for key in sides}):
            eager, compiled = sides[f"off/{seeds}"], sides[f"on/{seeds}"]
            cold_s = cold["sides"]["on/1"]["compile_s"] if seeds == 1 else float("nan")
            lines.append(
                f"| {algo} | {seeds} | {compiled['mode']} | {eager['updates_per_s']:.1f} | "
                f"{compiled['updates_per_s']:.1f} | {compiled['updates_per_s'] / eager['updates_per_s']:.2f}× | "
                f"{eager['updates_per_cpu_s']:.1f} | {compiled['updates_per_cpu_s']:.1f} | "
                f"{compiled['updates_per_cpu_s'] / eager['updates_per_cpu_s']:.2f}× | "
                f"{seeds * eager['updates_per_s']:.1f} | {seeds * compiled['updates_per_s']:.1f} | "
                f"{cold_s:.1f} | {compiled['compile_s']:.1f} |".replace("| nan |", "| – |"))
    if any("fql" == row[0] for row in rows):
        lines += ["", "FQL at 4 seeds compiles only in the paired process (the cold one compiles one seed): its warm "
                  "figure is the 4-seed graph's cold compile."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
