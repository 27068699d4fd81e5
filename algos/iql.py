"""Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022, arXiv 2110.06169).

In-sample value learning, never querying actions outside the dataset:
- value:  L_V = E[ |τ − 1(u < 0)| u² ],  u = min_i Q_φ̄ᵢ(s, a) − V_ψ(s)   (expectile τ)
- critic: L_Q = Σ_i E[ (r + γ m V_ψ(s′) − Q_φᵢ(s, a))² ]
- actor:  L_π = −E[ min(exp(β (min_i Q_φ̄ᵢ(s, a) − V_ψ(s))), 100) · log π(a|s) ]   (AWR)
Updates run in the paper code's order: value, then actor and critic with the new value; then
Polyak averaging of the target critic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from algos.base import Agent, AgentConfig, Batch, register
from algos.networks import Critic, GaussianActor, soft_update


@dataclass
class IQLConfig(AgentConfig):
    """IQL with the paper's D4RL defaults (locomotion: τ = 0.7, β = 3; antmaze preset: τ = 0.9, β = 10).

    The paper uses 2×256 ReLU MLPs without LayerNorm and a cosine decay of the actor learning rate
    over 1M steps; the FQL paper's IQL reruns use 4×512 GELU MLPs with LayerNorm critics (set
    ``hidden_dims``, ``activation`` and ``critic_layer_norm`` to match those). The decay horizon is
    a fixed field, not the run length, so a resumed or extended run follows the same schedule.
    """

    expectile: float = 0.7
    temperature: float = 3.0  # β, the inverse temperature of the advantage weights
    max_weight: float = 100.0
    discount: float = 0.99
    tau: float = 0.005
    hidden_dims: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    critic_layer_norm: bool = False
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    actor_lr_decay_steps: int | None = 1_000_000  # cosine decay horizon; None = constant lr
    batch_size: int = 256


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff**2).mean()


class InSampleCritic(nn.Module):
    """IQL's in-sample critic as one module, for the agents that pair it with a generative policy
    (IFQL, FlowQ, QIPO): twin Q, its Polyak target and an expectile value, trained jointly on
    L_V + L_Q (the losses above), never querying an action outside the dataset."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], layer_norm: bool, activation: str,
                 expectile: float, discount: float):
        super().__init__()
        self.expectile, self.discount = expectile, discount
        self.q = Critic(obs_dim, act_dim, hidden_dims, 2, layer_norm, activation)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.value = Critic(obs_dim, 0, hidden_dims, None, layer_norm, activation)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_V, L_Q, Q(s, a) of both heads)."""
        with torch.no_grad():
            target_q = self.target_q(batch.obs, batch.actions).min(0).values
            td_target = batch.rewards + self.discount * batch.masks * self.value(batch.next_obs)
        value_loss = expectile_loss(target_q - self.value(batch.obs), self.expectile)
        q = self.q(batch.obs, batch.actions)
        return value_loss, ((q - td_target) ** 2).mean(1).sum(), q

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.q.parameters(), *self.value.parameters()]

    def update_target(self, tau: float) -> None:
        soft_update(self.target_q, self.q, tau)


@register
class IQL(Agent):
    name = "iql"
    config_class = IQLConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": {"hidden_dims": (256, 256), "actor_lr_decay_steps": None}}
    presets = (("D4RL/antmaze/*", {"expectile": 0.9, "temperature": 10.0}),)

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig, device: torch.device | str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        c = config
        self.critic = Critic(obs_dim, act_dim, c.hidden_dims, 2, c.critic_layer_norm, c.activation).to(self.device)
        self.target_critic = Critic(obs_dim, act_dim, c.hidden_dims, 2, c.critic_layer_norm, c.activation).to(self.device)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.value = Critic(obs_dim, 0, c.hidden_dims, None, c.critic_layer_norm, c.activation).to(self.device)
        self.actor = GaussianActor(obs_dim, act_dim, c.hidden_dims, c.activation).to(self.device)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=c.value_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.actor_sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, c.actor_lr_decay_steps)
            if c.actor_lr_decay_steps else None
        )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "target_critic": self.target_critic, "value": self.value, "actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "value": self.value_opt, "actor": self.actor_opt}

    def schedulers(self) -> dict:
        return {"actor": self.actor_sched} if self.actor_sched else {}

    def update(self, batch: Batch) -> dict[str, float]:
        c = self.config
        with torch.no_grad():
            target_q = self.target_critic(batch.obs, batch.actions).min(0).values

        value_loss = expectile_loss(target_q - self.value(batch.obs), c.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        with torch.no_grad():
            v = self.value(batch.obs)
            next_v = self.value(batch.next_obs)
            weights = torch.exp(c.temperature * (target_q - v)).clamp(max=c.max_weight)
            td_target = batch.rewards + c.discount * batch.masks * next_v

        log_prob = self.actor(batch.obs).log_prob(batch.actions).sum(-1)
        actor_loss = -(weights * log_prob).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        if self.actor_sched:
            self.actor_sched.step()

        q = self.critic(batch.obs, batch.actions)
        critic_loss = ((q - td_target) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        soft_update(self.target_critic, self.critic, c.tau)

        self.step += 1
        return {
            "value_loss": value_loss.item(),
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "q_mean": q.mean().item(),
            "adv_weight_mean": weights.mean().item(),
        }

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # IQL evaluates the mean action.
        return self.actor(obs).mean.clamp(-1.0, 1.0)
