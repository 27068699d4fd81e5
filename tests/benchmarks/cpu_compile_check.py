"""On the CPU: how much faster is each agent's compiled training step (harness/compiling.py) than the eager one,
and what does compiling cost, cold (empty cache) and warm (cache filled by an earlier process)?

For each algorithm, three fresh processes time ``flowbench timing``'s full update (``--profile cpu``: 2×256
networks where the profile says so, K = 10, batch 256, synthetic data): eager; compiled with an empty cache
directory (cold); compiled again with the cache that run filled (warm). FQL also runs at 4 seeds in one
process. Compile time is the wall time of the warm-up calls that record and compile every code path, less
the same number of steady-state calls. Rates are wall-clock updates/s and, because other work may share
the cores, also per second of this process's CPU time (``time.process_time``; equal to wall time on idle
cores with one thread). Writes a markdown table.

    python tests/benchmarks/cpu_compile_check.py --out results/timing/cpu_compile.md [--algos fql,iql] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WARMUP = 30  # calls before timing: every code path's recording and compiling calls (QIPO's timing has 2 paths)


def child(algo: str, compile_mode: str, seeds: int, updates: int, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from harness.timing import TimingSpec, has_sampling_steps, timed_call, timing_agent

    spec = TimingSpec(algos=(algo,), profile="cpu", device="cpu", flow_steps=(10,), compile=(compile_mode,))
    device = torch.device("cpu")
    agent = timing_agent(algo, 10 if has_sampling_steps(algo) else 1, spec, device, seeds)
    call = timed_call(agent, "full_update", spec, device, "off", compile_mode)
    start = time.perf_counter()
    for _ in range(WARMUP):
        call()
    warm = time.perf_counter() - start
    rounds = []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(updates):
            call()
        rounds.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall_rate = max(updates / w for w, _ in rounds)
    cpu_rate = max(updates / c for _, c in rounds)
    return {"algo": algo, "compile": compile_mode, "seeds": seeds, "threads": torch.get_num_threads(),
            "mode": call.mode, "updates_per_s": wall_rate, "updates_per_cpu_s": cpu_rate,
            "compile_s": max(0.0, warm - WARMUP / wall_rate) if compile_mode != "off" else 0.0,
            "compiled_calls": call.step_fn.compiled.compiled_calls if call.step_fn.compiled else 0}


def run_child(algo: str, compile_mode: str, seeds: int, updates: int, threads: int, cache: Path) -> dict:
    env = {**os.environ, "FLOWBENCH_COMPILE_CACHE": str(cache)}
    done = subprocess.run([sys.executable, __file__, "--child", algo, compile_mode, str(seeds), str(updates),
                           str(threads)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"algo": algo, "compile": compile_mode, "seeds": seeds, "error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        algo, mode, seeds, updates, threads = sys.argv[2:7]
        print(json.dumps(child(algo, mode, int(seeds), int(updates), int(threads))))
        return 0
    from algos import REGISTRY

    parser = argparse.ArgumentParser()
    parser.add_argument("--algos", default=",".join(sorted(REGISTRY)))
    parser.add_argument("--updates", type=int, default=100, help="timed updates per round (3 rounds, best kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="results/timing/cpu_compile.md")
    args = parser.parse_args()
    rows = []
    for algo in args.algos.split(","):
        with tempfile.TemporaryDirectory(prefix="flowbench-compile-") as cache:
            eager = run_child(algo, "off", 1, args.updates, args.threads, Path(cache))
            cold = run_child(algo, "on", 1, args.updates, args.threads, Path(cache))
            warm = run_child(algo, "on", 1, args.updates, args.threads, Path(cache))
            rows.append((algo, 1, eager, cold, warm))
            if algo == "fql":
                eager4 = run_child(algo, "off", 4, args.updates, args.threads, Path(cache))
                cold4 = run_child(algo, "on", 4, args.updates, args.threads, Path(cache))
                warm4 = run_child(algo, "on", 4, args.updates, args.threads, Path(cache))
                rows.append((algo, 4, eager4, cold4, warm4))
        print(json.dumps(rows[-1]), flush=True)
        write_table(rows, args)  # after each algorithm: a long run leaves what it measured so far
    return 0


def write_table(rows: list, args: argparse.Namespace) -> None:
    lines = [
        "# Compiled vs eager CPU training step",
        "",
        f"`python {' '.join(sys.argv)}` — full update, `--profile cpu`, K = 10, batch 256, synthetic data; "
        f"torch threads: {args.threads or 'default'}. Rates: best of 3 rounds of {args.updates} updates, wall clock "
        "and per CPU-second of the process (other work may share the cores: the CPU-time rate is the steadier one). "
        "Compile: warm-up wall time (recording + compiling every code path) less the same number of steady calls; "
        "cold = empty cache directory, warm = a new process with the cache the cold one filled.",
        "",
        "| algorithm | seeds | mode | eager upd/s | compiled upd/s | speed-up | eager upd/CPU-s | compiled upd/CPU-s "
        "| speed-up (CPU) | seed-upd/s compiled | compile cold s | compile warm s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algo, seeds, eager, cold, warm in rows:
        if "error" in eager or "error" in warm or "error" in cold:
            lines.append(f"| {algo} | {seeds} | error: {eager.get('error') or cold.get('error') or warm.get('error')} "
                         "| | | | | | | | | |")
            continue
        lines.append(
            f"| {algo} | {seeds} | {warm['mode']} | {eager['updates_per_s']:.1f} | {warm['updates_per_s']:.1f} | "
            f"{warm['updates_per_s'] / eager['updates_per_s']:.2f}× | {eager['updates_per_cpu_s']:.1f} | "
            f"{warm['updates_per_cpu_s']:.1f} | {warm['updates_per_cpu_s'] / eager['updates_per_cpu_s']:.2f}× | "
            f"{seeds * warm['updates_per_s']:.1f} | {cold['compile_s']:.1f} | {warm['compile_s']:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
