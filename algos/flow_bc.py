"""Flow behaviour cloning: a conditional flow-matching policy (the FQL paper's BC flow, used alone).

Loss: L = mean ‖v_θ(s, x_t, t) − (a − x₀)‖², x_t = (1 − t) x₀ + t a, x₀ ~ N(0, I), t ~ U[0, 1].
Acting: K Euler steps from fresh noise, clipped to [-1, 1]; the policy reproduces the data's modes.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, the loss ``[S]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig
from algos.kit.flows import VelocityField, flow_matching_loss, flow_policy_actions
from algos.kit.networks import Activation
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom


@dataclass
class FlowBCConfig(AgentConfig):
    """Flow BC with the FQL paper's flow settings (Park, Li, Levine 2025, Table 5): 4×512 GELU MLP,
    no LayerNorm in the actor, K = 10 Euler steps, Adam 3e-4, batch 256."""

    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    activation: Activation = "gelu"
    actor_layer_norm: bool = False
    sampling_steps: int = 10  # K, Euler steps when acting
    actor_lr: float = 3e-4
    batch_size: int = 256


@register
class FlowBC(Agent):
    name = "flow_bc"
    config_class = FlowBCConfig
    policy_update_parts = ("flow",)
    profiles = {"cpu": {"actor_hidden_dims": (256, 256)}}

    def __init__(self, obs_dim: int, act_dim: int, config: FlowBCConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c = config
        self.flow = VelocityField(obs_dim, act_dim, c.actor_hidden_dims, c.activation, c.actor_layer_norm,
                                  seeds=num_seeds).to(self.device)
        self.flow_opt = self.adam(self.flow.parameters(), c.actor_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"flow": self.flow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"flow": self.flow_opt}

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.flow_opt, flow_matching_loss(self.flow, batch.obs, batch.actions, self.rng))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"flow_loss": self.policy_train_step(batch)}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return flow_policy_actions(self.flow, obs, self.config.sampling_steps, rng)
