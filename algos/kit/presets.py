"""Presets and defaults shared by several algorithms: the FQL code's conventions, applied to every agent
compared under them, and the benchmarks of the FQL paper's tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from algos.kit.config import AgentConfig
from algos.kit.networks import Activation

# Conventions of the FQL code (seohongpark/fql), shared by every agent it runs (FQL, IQL, ReBRAC, IFQL) and
# applied here to the agents compared under them: D4RL antmaze rewards r − 1 (envs/d4rl_utils.py) and the
# per-task discounts of its README command lines (OGBench antmaze-giant, humanoidmaze, antsoccer: 0.995).
FQL_CODE_ANTMAZE_REWARDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("D4RL/antmaze/*", {"reward_transform": "minus_one"}),
)
FQL_CODE_OGBENCH_DISCOUNTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ogbench/antmaze-giant-*", {"discount": 0.995}),
    ("ogbench/humanoidmaze-*", {"discount": 0.995}),
    ("ogbench/antsoccer-*", {"discount": 0.995}),
)
# The benchmarks of the FQL paper's tables (Minari's D4RL ports, OGBench, flowbench's OGBench-style builds).
FQL_PAPER_BENCHMARKS = ("D4RL/antmaze/*", "D4RL/pen/*", "D4RL/door/*", "D4RL/hammer/*", "D4RL/relocate/*",
                        "ogbench/*", "local/ogbench/*")


@dataclass
class FQLCodeConfig(AgentConfig):
    """The network and optimiser defaults of the FQL code (seohongpark/fql, each agent's ``get_config``), shared by
    the agents it runs (FQL, ReBRAC, IFQL) and those compared under them (FlowQ, QIPO, FBRAC, FAWAC): 4×512 GELU
    MLPs, LayerNorm in the critic, Adam at 3e-4, batch 256, γ = 0.99, τ = 0.005."""

    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    critic_layer_norm: bool = True
    activation: Activation = "gelu"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    batch_size: int = 256


def cpu_networks(width: int = 256) -> dict[str, Any]:
    """The ``cpu`` profile's networks: two hidden layers of ``width`` for the policy side and the critic (the
    small size for tests, CPU demos and laptops; 2×256 is the size the CPU timing targets are measured at)."""
    return {"actor_hidden_dims": (width, width), "value_hidden_dims": (width, width)}
