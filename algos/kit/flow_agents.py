"""Agents of a flow policy beside a critic, all trained by one Adam (the FQL code's single optimiser): the
network set and optimiser several algorithms share, so that each algorithm file holds only its losses.

- ``FlowTDAgent``: a TD critic and its Polyak target (FBRAC, FAWAC);
- ``InSampleFlowAgent``: IQL's in-sample critic (FlowQ, IFQL).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from algos.kit.agent import Agent
from algos.kit.critics import InSampleCritic
from algos.kit.flows import VelocityField
from algos.kit.networks import Critic


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


class InSampleFlowAgent(Agent):
    """IQL's ``InSampleCritic`` ``critic`` (twin Q, its target, an expectile V) with a flow policy ``flow``, trained
    by one Adam: Q at ``critic_lr``, V at ``value_lr``, the flow at ``actor_lr``. The config has
    ``value_hidden_dims``, ``actor_hidden_dims``, ``critic_layer_norm``, ``actor_layer_norm``, ``activation``,
    ``expectile``, ``discount`` and the three learning rates."""

    def __init__(self, obs_dim: int, act_dim: int, config: Any, device: torch.device | str = "cpu", num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = InSampleCritic(obs_dim, act_dim, c.value_hidden_dims, c.critic_layer_norm, c.activation,
                                     c.expectile, c.discount, seeds=s).to(self.device)
        self.flow = VelocityField(obs_dim, act_dim, c.actor_hidden_dims, c.activation, c.actor_layer_norm,
                                  seeds=s).to(self.device)
        self.opt = self.adam([*self.critic.param_groups(c.critic_lr, c.value_lr),
                              (self.flow.parameters(), c.actor_lr)])

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "flow": self.flow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"all": self.opt}
