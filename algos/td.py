"""The TD critic of the Q-learning agents whose next actions come from their own policy (FQL, FBRAC, FAWAC),
and the agent shape FBRAC and FAWAC share: that critic next to a flow policy, trained by one Adam.

y = r + γ m agg_i Q_φ̄ᵢ(s′, a′), agg = mean or min over the target ensemble; L_Q = mean_i (Q_φᵢ(s, a) − y)²,
averaged over the heads as the FQL code does. ``next_actions`` are drawn by the caller without gradient.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from algos.base import Agent, Batch
from algos.flows import VelocityField
from algos.networks import Critic
from algos.seeds import seed_mean

QAggregation = Literal["mean", "min"]


def aggregate(qs: torch.Tensor, q_agg: QAggregation) -> torch.Tensor:
    """agg_i over the heads axis of ``[S, E, B]`` → ``[S, B]``."""
    return qs.min(1).values if q_agg == "min" else qs.mean(1)


def td_critic_loss(critic: Critic, target_critic: Critic, batch: Batch, next_actions: torch.Tensor, discount: float,
                   q_agg: QAggregation = "mean", std_penalty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_Q ``[S]``, Q(s, a) ``[S, E, B]``) for a batch ``[S, B, ...]`` and next actions ``[S, B, act]``;
    ``std_penalty`` ρ > 0 subtracts ρ times the heads' (population) std from the aggregate."""
    with torch.no_grad():
        next_qs = target_critic(batch.next_obs, next_actions)
        next_q = aggregate(next_qs, q_agg)
        if std_penalty > 0:
            next_q = next_q - std_penalty * next_qs.std(1, unbiased=False)
        target = batch.rewards + discount * batch.masks * next_q
    q = critic(batch.obs, batch.actions)
    return seed_mean((q - target[:, None]) ** 2), q


class FlowTDAgent(Agent):
    """A TD critic ``critic`` (twin, or ``num_qs`` heads where the config has that field) with its Polyak
    ``target_critic`` and a flow policy ``flow``, all trained by one Adam (the FQL code's single optimiser),
    the critic at ``critic_lr`` and the flow at ``actor_lr``. The config has ``value_hidden_dims``,
    ``actor_hidden_dims``, ``critic_layer_norm``, ``actor_layer_norm``, ``activation``, ``actor_lr`` and
    ``critic_lr``."""

    def __init__(self, obs_dim: int, act_dim: int, config: Any, device: torch.device | str = "cpu", num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = Critic(obs_dim, act_dim, c.value_hidden_dims, getattr(c, "num_qs", 2), c.critic_layer_norm,
                             c.activation, seeds=s).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.flow = VelocityField(obs_dim, act_dim, c.actor_hidden_dims, c.activation, c.actor_layer_norm,
                                  seeds=s).to(self.device)
        self.opt = self.adam([(self.critic.parameters(), c.critic_lr), (self.flow.parameters(), c.actor_lr)])

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "target_critic": self.target_critic, "flow": self.flow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"all": self.opt}
