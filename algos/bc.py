"""Behaviour cloning: maximum likelihood (or MSE) on the dataset's actions.

The baseline every offline-RL table starts from. ``policy`` picks the head:
- ``gmm`` (default): a mixture of Gaussians (robomimic's BC-GMM), sampled when acting, so BC
  reproduces multimodal behaviour data instead of averaging its modes into actions nobody took;
- ``gaussian``: a Gaussian with state-independent std, acting with its mean; in the FQL paper's
  benchmarks it is the FQL code's ``Actor`` (linear mean, std fixed at 1, output layer variance scale
  0.01; ``FQL_CODE_BC``) — the FQL code ships no BC agent, so that class, the one its IQL uses, is
  flowbench's reading of the FQL paper's BC column;
- ``deterministic``: an MLP trained with MSE.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, the loss ``[S]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig
from algos.kit.networks import MLP, Activation, GaussianActor, MixtureActor, sample_mixture
from algos.kit.presets import FQL_PAPER_BENCHMARKS
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean


@dataclass
class BCConfig(AgentConfig):
    """Behaviour cloning. Network sizes follow the FQL paper's baselines (Park et al. 2025, Table 8)."""

    policy: Literal["gmm", "gaussian", "deterministic"] = "gmm"
    components: int = 5  # mixture components for the gmm head (robomimic's default)
    actor_tanh_mean: bool = True  # gaussian head: tanh on the mean
    actor_const_std: bool = False  # gaussian head: std fixed at 1 instead of a learned log-std
    actor_final_init_scale: float = 1.0  # variance scale of the output layer
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    activation: Activation = "gelu"
    actor_lr: float = 3e-4
    batch_size: int = 256


# BC in the FQL paper's benchmarks: the FQL code's Gaussian ``Actor`` (utils/networks.py: const_std, no tanh,
# final_fc_init_scale 0.01) with 4×512 GELU, evaluated at its mean (main.py eval_temperature 0).
FQL_CODE_BC = {"policy": "gaussian", "actor_tanh_mean": False, "actor_const_std": True, "actor_final_init_scale": 0.01}


@register
class BC(Agent):
    name = "bc"
    config_class = BCConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": {"actor_hidden_dims": (256, 256)}}
    presets = tuple((pattern, FQL_CODE_BC) for pattern in FQL_PAPER_BENCHMARKS)

    def __init__(self, obs_dim: int, act_dim: int, config: BCConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        if c.policy == "gmm":
            self.actor = MixtureActor(obs_dim, act_dim, c.actor_hidden_dims, c.components, c.activation, seeds=s)
        elif c.policy == "gaussian":
            self.actor = GaussianActor(obs_dim, act_dim, c.actor_hidden_dims, c.activation, seeds=s,
                                       tanh_mean=c.actor_tanh_mean, const_std=c.actor_const_std, final_init_scale=c.actor_final_init_scale)
        elif c.policy == "deterministic":
            self.actor = MLP(obs_dim, c.actor_hidden_dims, act_dim, c.activation, seeds=s,
                             final_init_scale=c.actor_final_init_scale)
        else:
            raise ValueError(f"unknown BC policy {c.policy!r}; valid: gmm, gaussian, deterministic")
        self.actor.to(self.device)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt}

    def actor_loss(self, batch: Batch) -> torch.Tensor:
        """MSE (deterministic) or the negative log-likelihood of the data's actions, ``[S]``."""
        if self.config.policy == "deterministic":
            return seed_mean((self.actor(batch.obs) - batch.actions) ** 2)
        log_prob = self.actor(batch.obs).log_prob(batch.actions)  # gaussian: per dimension [S, B, act]
        return -seed_mean(log_prob.sum(-1) if self.config.policy == "gaussian" else log_prob)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"actor_loss": self.minimize(self.actor_opt, self.actor_loss(batch))}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        if self.config.policy == "deterministic":
            actions = self.actor(obs)
        elif self.config.policy == "gaussian":
            actions = self.actor(obs).mean
        else:
            actions = sample_mixture(self.actor(obs), rng)
        return actions.clamp(-1.0, 1.0)
