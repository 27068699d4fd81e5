"""On a CUDA device: does every agent's training step capture as a CUDA graph, and does the graph train
exactly as the eager step does? (Not a pytest file: CI has no GPU; ``tests/benchmarks/gpu.sh`` runs it.)

For each algorithm, two agents start from the same seeds; one trains eagerly, the other replays its
captured graphs, on the same synthetic data, in full float32 (TF32 off, and bias + activation fused in
both, so both run the same kernels). After ``--updates`` updates their logged metrics and parameters must
agree. Paper-size networks and the graph warm-up make every code path (ReBRAC's actor steps, QIPO's phases
and renewals, Diffusion-QL's EMA copies and steps) run eagerly, be captured and be replayed within the
updates.

    python tests/benchmarks/gpu_graph_check.py --out results/timing/gpu/graph_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from algos import REGISTRY  # noqa: E402
from algos.kit.networks import bias_activation_fusion  # noqa: E402
from algos.kit.registry import make_seeded_agent, resolve_config  # noqa: E402
from harness.timing import synthetic_buffer  # noqa: E402
from harness.trainer import Trainer  # noqa: E402
from harness.training import configure_matmul_precision  # noqa: E402

# short phases, so that 60 updates pass through every code path several times
PATHS = {
    "qipo": {"bc_warmup_steps": 8, "critic_warmup_steps": 8, "renew_every": 8},
    "qipo_diff": {"bc_warmup_steps": 8, "critic_warmup_steps": 8, "renew_every": 8},
    "diffusion_ql": {"ema_start": 30},
}


def train(algo: str, mode: str, seeds: list[int], updates: int, device: torch.device):
    config = resolve_config(algo, PATHS.get(algo, {}))
    agent = make_seeded_agent(algo, 29, 8, config, seeds, device)
    buffer = synthetic_buffer(10_000, 29, 8, device, torch.Generator().manual_seed(0))
    step = Trainer(agent, buffer, seeds, config.batch_size, mode)
    logged = []
    # the eager steps fuse bias and activation as the graphed ones do, so that both run the same kernels
    with warnings.catch_warnings(record=True) as caught, bias_activation_fusion():
        warnings.simplefilter("always")
        for i in range(updates):
            step()
            if (i + 1) % 10 == 0:
                logged.append(step.read_means())
    params = {f"{m}.{k}": v.detach().float().cpu() for m, mod in agent.modules().items()
              for k, v in mod.state_dict().items()}
    return logged, params, step, [str(w.message) for w in caught]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--algos", default=",".join(sorted(REGISTRY)))
    parser.add_argument("--out", default="graph_check.json")
    args = parser.parse_args()
    device = torch.device("cuda")
    configure_matmul_precision(device, tf32=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {}
    for algo in args.algos.split(","):
        eager_logs, eager_params, _, _ = train(algo, "off", seeds, args.updates, device)
        graph_logs, graph_params, step, warned = train(algo, "auto", seeds, args.updates, device)
        metric_diff = max(abs(a[k] - b[k]) / max(1.0, abs(a[k])) for le, lg in zip(eager_logs, graph_logs)
                          for a, b in zip(le, lg) for k in a)
        param_diff = max(float((eager_params[k] - graph_params[k]).abs().max()) for k in eager_params)
        report[algo] = {"mode": step.mode, "code_paths": {repr(k): p.captured for k, p in step.step_fn.paths.items()},
                        "max_rel_metric_diff": metric_diff, "max_abs_param_diff": param_diff,
                        "equal": metric_diff < 1e-4 and param_diff < 1e-4, "warnings": warned}
        print(f"{algo:13s} {step.mode:20s} paths={report[algo]['code_paths']} metric diff {metric_diff:.2e} "
              f"param diff {param_diff:.2e} {'OK' if report[algo]['equal'] else 'DIFFERENT'} {warned or ''}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0 if all(r["equal"] and r["mode"] == "cuda-graph" for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
