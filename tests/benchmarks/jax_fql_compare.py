"""flowbench's FQL update, eager and compiled, against the official JAX FQL update, in alternating rounds of one run.

Both train FQL on ``toy/bimodal-v0`` (its obs and action dims, 2 and 2, and its transitions) as a run with
``--profile cpu`` does: actor and critic MLPs 2×256, α = 0.3 (the ``toy/*`` preset), K = 10, batch 256,
float32, each framework's default CPU threads. flowbench's side is the ``full_update`` of ``flowbench timing``
(a ``harness.trainer.Trainer``: minibatch drawn from the dataset's buffer, then ``agent.update``, eager);
the JAX side is ``jax_fql_reference.py`` (the unmodified ``agents/fql.py``, jitted ``agent.update``), run as a
child process of the JAX venv that serves one round per request, so its compilation happens once and the
rounds interleave: every round times both, in alternating order, so a busy spell of a shared machine hits
both alike. A figure is the median over rounds; the ratio is JAX's updates/s over flowbench's.

Setup of the JAX venv and of the official code: see ``jax_fql_reference.py``'s docstring. Then, from the
repository root with flowbench's venv:

    python tests/benchmarks/jax_fql_compare.py --jax-python JAXVENV/bin/python --fql-dir FQL \\
        --rounds 7 --updates 400 [--jax-batch sampled] [--json-out results.json]

Measure on quiet cores: other processes on them change both numbers, and not alike — on a busy 2-core machine
flowbench's eager update (torch's OpenMP threads, one per core, wait for each other at every op) fell from
~78 to ~3-25 updates/s between rounds while JAX's went from ~108 to ~40-86, so a ratio from shared cores
overstates JAX's lead. The JAX side's threads: XLA's default, all cores (set ``XLA_FLAGS`` in the environment to
change them; the child inherits it); flowbench's: ``--torch-threads``.
``--seeds 1 4`` also times 4 seeds in one process on each side (flowbench's seed axis; JAX's update vmapped over 4
stacked agents, ``jax_fql_reference.py --seeds``), in the same alternating rounds, with ``--updates / N`` updates
per round; every rate is then in seed-updates/s, and the summary gives each side's N-seed rate over its 1-seed rate.
Prints one JSON line per side per round, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from algos.kit.registry import make_seeded_agent, resolve_config  # noqa: E402
from harness import data as data_lib  # noqa: E402
from harness.trainer import Trainer  # noqa: E402

DATASET = "toy/bimodal-v0"
REFERENCE = Path(__file__).with_name("jax_fql_reference.py")


class JaxRounds:
    """The JAX reference as a child process: ``__call__(n)`` runs one round of ``n`` updates there."""

    def __init__(self, python: str, args: list[str]):
        self.proc = subprocess.Popen([python, str(REFERENCE), "--serve", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.setup = self.read()

    def read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the JAX reference exited (code {self.proc.wait()}); its stderr is above")
        return json.loads(line)

    def __call__(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        return self.read()["updates_per_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def flowbench_trainer(data: data_lib.OfflineData, flow_steps: int, batch_size: int, seeds: list[int],
                      compile: str = "off") -> Trainer:
    """FQL as a ``--profile cpu`` run on ``data`` builds it (the dataset's presets), ``seeds`` in one process,
    eager or with its step compiled (``compile="on"``, harness.compiling)."""
    config = resolve_config("fql", {"sampling_steps": flow_steps, "batch_size": batch_size}, "cpu", data.dataset_id)
    agent = make_seeded_agent("fql", data.obs_dim, data.act_dim, config, seeds, "cpu")
    buffer = data_lib.TransitionBuffer(data, "cpu", reward_transform=config.reward_transform)
    return Trainer(agent, buffer, seeds, config.batch_size, cuda_graph="off", compile=compile)


def flowbench_round(trainer: Trainer, n: int) -> float:
    """Seed-updates per second over ``n`` updates."""
    start = time.perf_counter()
    trainer.train(n)
    return n * len(trainer.samplers) / (time.perf_counter() - start)


def side_name(side: str, seeds: int) -> str:
    return side if seeds == 1 else f"{side}_{seeds}seeds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jax-python", required=True, help="the JAX venv's python")
    parser.add_argument("--fql-dir", required=True, help="a copy of seohongpark/fql (agents/, utils/)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=400, help="timed updates per round and side")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates per side before the rounds")
    parser.add_argument("--flow-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--jax-batch", choices=("fixed", "sampled"), default="fixed",
                        help="JAX: one device batch reused, or a numpy batch sampled per update as main.py does")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="flowbench's intra-op threads (default: torch's, one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="seeds per process to time, each on every side (default: 1)")
    parser.add_argument("--no-compiled", action="store_true",
                        help="time flowbench eager only (default: also its compiled step, as a third side)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the rounds and summary here")
    args = parser.parse_args(argv)

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    data = data_lib.load(DATASET, download=False)
    seed_counts = sorted(set(args.seeds))
    config = resolve_config("fql", {"sampling_steps": args.flow_steps, "batch_size": args.batch_size}, "cpu",
                            data.dataset_id)
    if config.value_hidden_dims != config.actor_hidden_dims:
        raise SystemExit("the JAX reference takes one width list for actor and critic")
    sides: dict[str, Callable[[], float]] = {}  # name -> one round, in seed-updates/s
    children: list[JaxRounds] = []
    trainers: list[Trainer] = []
    with tempfile.TemporaryDirectory() as tmp:
        transitions = Path(tmp) / "toy.npz"
        np.savez(transitions, observations=data.observations, actions=data.actions, rewards=data.rewards,
                 next_observations=data.next_observations, masks=data.masks)
        for count in seed_counts:
            n = max(1, args.updates // count)
            child_start = time.perf_counter()
            jax_rounds = JaxRounds(args.jax_python, [
                "--fql-dir", args.fql_dir, "--data", str(transitions), "--batch", args.jax_batch,
                "--batch-size", str(args.batch_size), "--hidden", *map(str, config.actor_hidden_dims),
                "--alpha", str(config.alpha), "--flow-steps", str(args.flow_steps),
                "--warmup", str(args.warmup), "--seed", str(args.seed), "--seeds", str(count)])
            # jax_ready_s: the child's start to its first answer (imports, data, compile, warm-up)
            jax_rounds.setup["jax_ready_s"] = time.perf_counter() - child_start
            children.append(jax_rounds)
            sides[side_name("jax", count)] = lambda rounds=jax_rounds, n=n, count=count: rounds(n) * count
            seeds = list(range(args.seed, args.seed + count))
            modes = {"flowbench": "off"} if args.no_compiled else {"flowbench": "off", "flowbench_compiled": "on"}
            for side, mode in modes.items():
                trainer = flowbench_trainer(data, args.flow_steps, args.batch_size, seeds, compile=mode)
                trainers.append(trainer)
                sides[side_name(side, count)] = lambda trainer=trainer, n=n: flowbench_round(trainer, n)
    setup = {"jax": [child.setup for child in children], "torch": torch.__version__,
             "torch_threads": torch.get_num_threads(), "dataset": DATASET, "seeds": seed_counts,
             "flowbench_config": repr(config)}
    print(json.dumps(setup), flush=True)
    for t in trainers:  # the compiled sides' warm-up compiles their code paths
        t.train(args.warmup)

    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            rate = sides[name]()
            rates[name].append(rate)
            print(json.dumps({"event": "round", "round": r, "side": name, "seed_updates_per_s": rate}), flush=True)
    for child in children:
        child.close()

    medians = {name: statistics.median(values) for name, values in rates.items()}
    summary: dict[str, Any] = {"event": "summary", "rounds": args.rounds, "updates": args.updates,
                               "jax_batch": args.jax_batch, "seed_updates_per_s": medians}
    for count in seed_counts:
        jax, eager, compiled = (side_name(side, count) for side in ("jax", "flowbench", "flowbench_compiled"))
        ratios = {"jax_over_flowbench": medians[jax] / medians[eager],
                  "jax_over_flowbench_per_round": [j / f for j, f in zip(rates[jax], rates[eager])]}
        if compiled in medians:
            ratios.update(compiled_over_eager=medians[compiled] / medians[eager],
                          jax_over_compiled=medians[jax] / medians[compiled],
                          jax_over_compiled_per_round=[j / c for j, c in zip(rates[jax], rates[compiled])])
        summary[side_name("ratios", count)] = ratios
        if count != 1 and 1 in seed_counts:  # batching's gain: N seeds' seed-updates/s over one seed's
            summary[side_name("ratios", count)]["over_one_seed"] = {
                side: medians[side_name(side, count)] / medians[side]
                for side in ("jax", "flowbench", "flowbench_compiled") if side in medians}
    print(json.dumps(summary), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"setup": setup, "rates": rates, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
