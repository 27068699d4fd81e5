"""pytest-benchmark: the policy update, the full update and acting against the number of flow steps K.

Every algorithm with flow/diffusion steps × K ∈ {1, 2, 4, 8, 16, 32} × part, at batch 256 with the
paper's network sizes (harness/timing.py says what each part calls). These are benchmarks, not
pass/fail timing tests. To time them (several minutes on a CPU):

    python -m pytest tests/benchmarks --benchmark-enable --benchmark-json timing.json
    flowbench timing --from-benchmark timing.json --out results/timing/benchmark

In the ordinary test run benchmarks are disabled: each cell then runs once, on the small ``cpu``
networks, and checks that the call does what it should (finite losses, actions in the box).
"""

from __future__ import annotations

import math

import pytest
import torch

from algos.kit.agent import Agent
from harness.timing import (DEFAULT_FLOW_STEPS, PARTS, TIMED_ALGOS, TimingSpec, environment_info, timed_call,
                            timing_agent)
from harness.training import resolve_device


@pytest.fixture(scope="module")
def spec(request: pytest.FixtureRequest) -> TimingSpec:
    # pytest-benchmark's own rule: --benchmark-enable overrides the --benchmark-disable of addopts
    timed = request.config.getoption("benchmark_enable") or not request.config.getoption("benchmark_disable")
    return TimingSpec(profile=None if timed else "cpu", device="auto")


@pytest.fixture(scope="module")
def device(spec: TimingSpec) -> torch.device:
    return resolve_device(spec.device)


@pytest.fixture(scope="module")
def info(device: torch.device) -> dict:
    return environment_info(device)


@pytest.fixture(scope="module")
def agents(spec: TimingSpec, device: torch.device):
    cache: dict[tuple[str, int], Agent] = {}

    def get(algo: str, steps: int) -> Agent:
        if (algo, steps) not in cache:
            cache.clear()  # one agent alive at a time keeps memory flat
            cache[algo, steps] = timing_agent(algo, steps, spec, device)
        return cache[algo, steps]

    return get


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("steps", DEFAULT_FLOW_STEPS, ids=lambda k: f"K{k}")
@pytest.mark.parametrize("algo", TIMED_ALGOS)
def test_cost_against_flow_steps(benchmark, agents, spec: TimingSpec, device: torch.device, info: dict, algo: str,
                                 steps: int, part: str) -> None:
    agent = agents(algo, steps)
    call = timed_call(agent, part, spec, device, spec.cuda_graph[0])
    benchmark.extra_info.update(
        algorithm=algo, K=steps, part=part, batch_size=spec.act_batch if part == "act" else spec.batch_size,
        policy_parts="+".join(agent.policy_update_parts), profile=spec.profile or "default", obs_dim=spec.obs_dim,
        act_dim=spec.act_dim, device=info["device"], threads=info["threads"], torch=info["torch"])
    result = benchmark(call)
    if part == "act":
        assert result.shape == (1, spec.act_batch, spec.act_dim)  # [seeds, batch, action]
        assert torch.isfinite(result).all() and result.abs().max() <= 1.0
    elif part == "policy_update":
        assert result.shape == (1,) and torch.isfinite(result).all()
    else:  # a Trainer: its metric sums since the last read, per seed
        means = call.read_means()
        assert means[0] and all(math.isfinite(v) for v in means[0].values())
