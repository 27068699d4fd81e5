"""Implicit Flow Q-Learning (IFQL): the flow variant of IDQL, a baseline of the FQL paper.

IQL's in-sample critic next to a BC flow policy; the policy is improved only at acting time:
- value:  L_V = E[ |τ − 1(u < 0)| u² ],  u = min_i Q_φ̄ᵢ(s, a) − V_ψ(s)
- critic: L_Q = E[ Σ_i (r + γ m V_ψ(s′) − Q_φᵢ(s, a))² ]
- flow:   L_flow = mean ‖v_θ(s, x_t, t) − (a − x₀)‖²
One optimiser step on L_V + L_Q + L_flow per update (as the official code). Acting samples N flow
actions per state (K Euler steps each) and takes the one with the highest min_i Q_φᵢ.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, losses ``[S]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.kit.agent import Batch
from algos.kit.flow_agents import InSampleFlowAgent
from algos.kit.flows import best_of_n_flow_actions, flow_matching_loss
from algos.kit.presets import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, FQLCodeConfig, cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean


@dataclass
class IFQLConfig(FQLCodeConfig):
    """IFQL with the official defaults (seohongpark/fql agents/ifql.py): expectile 0.9, N = 32
    samples, K = 10 flow steps, 4×512 GELU MLPs, LayerNorm critics, Adam 3e-4, batch 256."""

    expectile: float = 0.9
    num_candidates: int = 32  # N flow samples per state when acting, the best by min Q taken
    sampling_steps: int = 10  # K, Euler steps per flow sample
    actor_layer_norm: bool = False
    value_lr: float = 3e-4


@register
class IFQL(InSampleFlowAgent):
    name = "ifql"
    config_class = IFQLConfig
    policy_update_parts = ("flow",)
    profiles = {"cpu": cpu_networks()}
    # the FQL code's conventions (its get_config() defaults above; the README's IFQL example: N = 32)
    presets = (
        *FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS,
        # Chosen here on local/pointmaze/umaze-v0 (10k updates): the best of 32 by Q picks the critic's
        # ranking errors and drives into the U's wall; the best of 8 does not (results/pointmaze/umaze.md).
        ("local/pointmaze/*", {"num_candidates": 8}),
    )

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.opt, flow_matching_loss(self.flow, batch.obs, batch.actions, self.rng))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        value_loss, critic_loss, q = self.critic.losses(batch)
        flow_loss = flow_matching_loss(self.flow, batch.obs, batch.actions, self.rng)
        self.critic.update_target(self.config.tau)  # toward the pre-step critic, as the FQL code
        self.minimize(self.opt, value_loss + critic_loss + flow_loss)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "flow_loss": flow_loss.detach(), "q_mean": seed_mean(q).detach()}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return best_of_n_flow_actions(self.flow, lambda o, a: self.critic.q(o, a).min(1).values, obs,
                                      self.config.num_candidates, self.config.sampling_steps, rng)
