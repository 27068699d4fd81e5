"""Behaviour cloning: maximum likelihood (or MSE) on the dataset's actions.

The baseline every offline-RL table starts from. ``policy`` picks the head:
- ``gmm`` (default): a mixture of Gaussians (robomimic's BC-GMM), sampled when acting, so BC
  reproduces multimodal behaviour data instead of averaging its modes into actions nobody took;
- ``gaussian``: a Gaussian with state-independent std (the D4RL/FQL-paper BC), acting with its mean;
- ``deterministic``: an MLP trained with MSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.base import Agent, AgentConfig, Batch, register
from algos.networks import MLP, GaussianActor, MixtureActor, sample_mixture


@dataclass
class BCConfig(AgentConfig):
    """Behaviour cloning. Network sizes follow the FQL paper's baselines (Park et al. 2025, Table 8)."""

    policy: str = "gmm"  # gmm | gaussian | deterministic
    components: int = 5  # mixture components for the gmm head (robomimic's default)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    activation: str = "gelu"
    lr: float = 3e-4
    batch_size: int = 256


@register
class BC(Agent):
    name = "bc"
    config_class = BCConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": {"hidden_dims": (256, 256)}}

    def __init__(self, obs_dim: int, act_dim: int, config: BCConfig, device: torch.device | str = "cpu"):
        super().__init__(obs_dim, act_dim, config, device)
        c = config
        if c.policy == "gmm":
            self.actor = MixtureActor(obs_dim, act_dim, c.hidden_dims, c.components, c.activation)
        elif c.policy == "gaussian":
            self.actor = GaussianActor(obs_dim, act_dim, c.hidden_dims, c.activation)
        elif c.policy == "deterministic":
            self.actor = MLP(obs_dim, c.hidden_dims, act_dim, c.activation)
        else:
            raise ValueError(f"unknown BC policy {c.policy!r}; valid: gmm, gaussian, deterministic")
        self.actor.to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt}

    def update(self, batch: Batch) -> dict[str, float]:
        if self.config.policy == "deterministic":
            loss = ((self.actor(batch.obs) - batch.actions) ** 2).mean()
        else:
            dist = self.actor(batch.obs)
            log_prob = dist.log_prob(batch.actions)
            loss = -(log_prob.sum(-1) if log_prob.dim() > 1 else log_prob).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        self.step += 1
        return {"actor_loss": loss.item()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.config.policy == "deterministic":
            actions = self.actor(obs)
        elif self.config.policy == "gaussian":
            actions = self.actor(obs).mean
        else:
            actions = sample_mixture(self.actor(obs), generator)
        return actions.clamp(-1.0, 1.0)
