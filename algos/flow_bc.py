"""Flow behaviour cloning: a conditional flow-matching policy (the FQL paper's BC flow, used alone).

Loss: L = mean ‖v_θ(s, x_t, t) − (a − x₀)‖², x_t = (1 − t) x₀ + t a, x₀ ~ N(0, I), t ~ U[0, 1].
Acting: K Euler steps from fresh noise, clipped to [-1, 1]; the policy reproduces the data's modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.base import Agent, AgentConfig, Batch, register
from algos.flows import VelocityField, euler_sample, flow_matching_loss


@dataclass
class FlowBCConfig(AgentConfig):
    """Flow BC with the FQL paper's flow settings (Park, Li, Levine 2025, Table 5): 4×512 GELU MLP,
    no LayerNorm in the actor, K = 10 Euler steps, Adam 3e-4, batch 256."""

    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    activation: str = "gelu"
    layer_norm: bool = False
    flow_steps: int = 10
    lr: float = 3e-4
    batch_size: int = 256


@register
class FlowBC(Agent):
    name = "flow_bc"
    config_class = FlowBCConfig
    steps_field = "flow_steps"
    policy_update_parts = ("flow",)
    profiles = {"cpu": {"hidden_dims": (256, 256)}}

    def __init__(self, obs_dim: int, act_dim: int, config: FlowBCConfig, device: torch.device | str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        c = config
        self.flow = VelocityField(obs_dim, act_dim, c.hidden_dims, c.activation, c.layer_norm).to(self.device)
        self.flow_opt = torch.optim.Adam(self.flow.parameters(), lr=c.lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"flow": self.flow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"flow": self.flow_opt}

    def policy_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.flow_opt, flow_matching_loss(self.flow, batch.obs, batch.actions, self.generator))

    def update(self, batch: Batch) -> dict[str, float]:
        loss = self.policy_step(batch)
        self.step += 1
        return {"flow_loss": loss.item()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn((obs.shape[0], self.act_dim), generator=generator, device=obs.device)
        return euler_sample(self.flow, obs, noise, self.config.flow_steps)
