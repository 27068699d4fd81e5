"""Where the GPU time of one training step goes: CUDA kernel time per operator for S seeds of one
algorithm, eager (``torch.profiler``; a graph replays exactly these kernels without the launches).

    python tests/benchmarks/gpu_kernel_profile.py --algo fql --seeds 1,8 --out profile.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from algos.kit.registry import make_agent, resolve_config  # noqa: E402
from harness.timing import synthetic_buffer  # noqa: E402
from harness.trainer import Trainer  # noqa: E402
from harness.training import configure_matmul_precision  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", default="fql")
    parser.add_argument("--seeds", default="1,8")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--out", default="profile.txt")
    args = parser.parse_args()
    device = torch.device("cuda")
    configure_matmul_precision(device, True)
    report = []
    for seeds in (int(s) for s in args.seeds.split(",")):
        config = resolve_config(args.algo)
        agent = make_agent(args.algo, 29, 8, config, device, seeds)
        buffer = synthetic_buffer(10_000, 29, 8, device, torch.Generator().manual_seed(0))
        step = Trainer(agent, buffer, list(range(seeds)), config.batch_size, "off")
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        events = prof.key_averages()
        device_time = lambda e: getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)  # noqa: E731
        total = sum(device_time(e) for e in events) / args.steps
        kernels = sum(e.count for e in events if device_time(e) > 0) / args.steps
        report.append(f"## {args.algo}, {seeds} seed(s): {total / 1000:.3f} ms of kernel time per step, "
                      f"{kernels:.0f} kernels per step\n")
        try:
            report.append(events.table(sort_by="self_device_time_total", row_limit=args.rows))
        except (AttributeError, KeyError, ValueError):  # older torch names it after CUDA
            report.append(events.table(sort_by="self_cuda_time_total", row_limit=args.rows))
    text = "\n".join(report)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
