"""Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022, arXiv 2110.06169).

In-sample value learning, never querying actions outside the dataset:
- value:  L_V = E[ |τ − 1(u < 0)| u² ],  u = min_i Q_φ̄ᵢ(s, a) − V_ψ(s)   (expectile τ)
- critic: L_Q = Σ_i E[ (r + γ m V_ψ(s′) − Q_φᵢ(s, a))² ]
- actor:  L_π = −E[ min(exp(β (min_i Q_φ̄ᵢ(s, a) − V_ψ(s))), 100) · log π(a|s) ]   (AWR)
Updates run in the paper code's order: value, then actor and critic with the new value; then
Polyak averaging of the target critic. Tensors carry the leading seed axis (``algos.seeds``):
batches ``[S, B, ...]``, Q ``[S, 2, B]``, V ``[S, B]``, every loss ``[S]`` (L_Q sums its two heads).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from algos.base import Agent, AgentConfig, Batch, register
from algos.networks import Critic, GaussianActor, soft_update
from algos.seeds import SeedRandom, seed_mean


@dataclass
class IQLConfig(AgentConfig):
    """IQL with the paper's D4RL defaults (locomotion: τ = 0.7, β = 3; antmaze preset: τ = 0.9, β = 10).

    The paper uses 2×256 ReLU MLPs without LayerNorm and a cosine decay of the actor learning rate
    over 1M steps; the FQL paper's IQL reruns use 4×512 GELU MLPs with LayerNorm critics (set
    ``hidden_dims``, ``activation`` and ``critic_layer_norm`` to match those). The decay horizon is
    a fixed field, not the run length, so a resumed or extended run follows the same schedule:
    after t completed updates the actor's learning rate is
    ``actor_lr · (1 + cos(π · min(t, T) / T)) / 2`` with T = ``actor_lr_decay_steps`` (it stays at
    zero after T; None keeps ``actor_lr`` constant).
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
    actor_lr_decay_steps: int | None = 1_000_000  # cosine decay horizon T; None = constant lr
    batch_size: int = 256


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """E[ |τ − 1(u < 0)| u² ] per seed: ``diff`` ``[S, ...]`` → ``[S]``."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return seed_mean(weight * diff**2)


def cosine_decay(lr: float, step: int, horizon: int | None) -> float:
    """``lr · (1 + cos(π · min(step, T) / T)) / 2`` (``lr`` itself for T = None)."""
    if not horizon:
        return lr
    return lr * (1.0 + math.cos(math.pi * min(step, horizon) / horizon)) / 2.0


class InSampleCritic(nn.Module):
    """IQL's in-sample critic as one module, for the agents that pair it with a generative policy
    (IFQL, FlowQ, QIPO): twin Q, its Polyak target and an expectile value, trained jointly on
    L_V + L_Q (the losses above), never querying an action outside the dataset. ``seeds`` is the
    leading seed axis S of every parameter; ``q``/``target_q`` return ``[S, 2, B]``, ``value`` ``[S, B]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], layer_norm: bool, activation: str,
                 expectile: float, discount: float, seeds: int = 1):
        super().__init__()
        self.expectile, self.discount = expectile, discount
        self.q = Critic(obs_dim, act_dim, hidden_dims, 2, layer_norm, activation, seeds=seeds)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.value = Critic(obs_dim, 0, hidden_dims, None, layer_norm, activation, seeds=seeds)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_V ``[S]``, L_Q ``[S]``, Q(s, a) of both heads ``[S, 2, B]``) on a seeded batch ``[S, B, ...]``."""
        with torch.no_grad():
            target_q = self.target_q(batch.obs, batch.actions).min(1).values
            td_target = batch.rewards + self.discount * batch.masks * self.value(batch.next_obs)
        value_loss = expectile_loss(target_q - self.value(batch.obs), self.expectile)
        q = self.q(batch.obs, batch.actions)
        return value_loss, ((q - td_target[:, None]) ** 2).mean(-1).sum(-1), q

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

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = Critic(obs_dim, act_dim, c.hidden_dims, 2, c.critic_layer_norm, c.activation,
                             seeds=s).to(self.device)
        self.target_critic = Critic(obs_dim, act_dim, c.hidden_dims, 2, c.critic_layer_norm, c.activation,
                                    seeds=s).to(self.device)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.value = Critic(obs_dim, 0, c.hidden_dims, None, c.critic_layer_norm, c.activation, seeds=s).to(self.device)
        self.actor = GaussianActor(obs_dim, act_dim, c.hidden_dims, c.activation, seeds=s).to(self.device)
        self.critic_opt = self.adam(self.critic.parameters(), c.critic_lr)
        self.value_opt = self.adam(self.value.parameters(), c.value_lr)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "target_critic": self.target_critic, "value": self.value, "actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "value": self.value_opt, "actor": self.actor_opt}

    def advance(self) -> None:
        super().advance()
        c = self.config
        if c.actor_lr_decay_steps:
            self.set_lr(self.actor_opt, cosine_decay(c.actor_lr, self.step, c.actor_lr_decay_steps))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            target_q = self.target_critic(batch.obs, batch.actions).min(1).values  # [S, B]

        value_loss = self.minimize(self.value_opt, expectile_loss(target_q - self.value(batch.obs), c.expectile))

        with torch.no_grad():
            v = self.value(batch.obs)
            next_v = self.value(batch.next_obs)
            weights = torch.exp(c.temperature * (target_q - v)).clamp(max=c.max_weight)
            td_target = batch.rewards + c.discount * batch.masks * next_v

        log_prob = self.actor(batch.obs).log_prob(batch.actions).sum(-1)
        actor_loss = self.minimize(self.actor_opt, -seed_mean(weights * log_prob))

        q = self.critic(batch.obs, batch.actions)  # [S, 2, B]
        critic_loss = self.minimize(self.critic_opt, ((q - td_target[:, None]) ** 2).mean(-1).sum(-1))
        soft_update(self.target_critic, self.critic, c.tau)

        return {
            "value_loss": value_loss,
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": seed_mean(q.detach()),
            "adv_weight_mean": seed_mean(weights),
        }

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        # IQL evaluates the mean action.
        return self.actor(obs).mean.clamp(-1.0, 1.0)
