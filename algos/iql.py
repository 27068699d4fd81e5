"""Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022, arXiv 2110.06169).

In-sample value learning, never querying actions outside the dataset:
- value:  L_V = E[ |τ − 1(u < 0)| u² ],  u = min_i Q_φ̄ᵢ(s, a) − V_ψ(s)   (expectile τ)
- critic: L_Q = Σ_i E[ (r + γ m V_ψ(s′) − Q_φᵢ(s, a))² ]
- actor:  L_π = −E[ min(exp(β (min_i Q(s, a) − V_ψ(s))), 100) · log π(a|s) ]   (AWR)
Two update orders (``update_order``):
- ``sequential`` (the paper's code, ikostrikov/implicit_q_learning): value step, then the actor with
  the new value and the *target* critic, then the critic with the new value; then Polyak averaging
  of the target critic toward the new critic;
- ``joint`` (the FQL code's agents/iql.py, whose reruns are the FQL paper's IQL column): all three
  losses from the parameters before the step, the advantage from the *online* critic, the target
  moved toward the pre-step critic.
The value and twin Q are ``InSampleCritic``, the module IFQL, FlowQ and QIPO share.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, Q ``[S, 2, B]``, V
``[S, B]``, every loss ``[S]`` (L_Q sums its two heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig
from algos.kit.critics import InSampleCritic
from algos.kit.networks import Activation, GaussianActor
from algos.kit.presets import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, FQL_PAPER_BENCHMARKS, cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean


@dataclass
class IQLConfig(AgentConfig):
    """IQL with the paper's D4RL defaults (locomotion: τ = 0.7, β = 3, rewards scaled by
    1000 / (max − min episode return); antmaze: τ = 0.9, β = 10, r − 1): 2×256 ReLU MLPs without
    LayerNorm, a tanh-mean Gaussian actor with a learned log-std, and a cosine decay of the actor's
    learning rate over the run, ``actor_lr · (1 + cos(π · min(t, T) / T)) / 2`` after t updates, staying
    at 0 after T (optax's ``cosine_decay_schedule``; torch's ``CosineAnnealingLR`` would rise again).
    T = ``actor_lr_decay_steps``, or the run's length when 0. The FQL paper's reruns use the FQL
    code's settings instead (``FQL_CODE_IQL``, applied by the presets of its benchmarks)."""

    expectile: float = 0.7
    awr_temperature: float = 3.0  # β, the inverse temperature of the advantage weights exp(β A)
    max_weight: float = 100.0
    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (256, 256)
    value_hidden_dims: tuple[int, ...] = (256, 256)
    activation: Activation = "relu"
    critic_layer_norm: bool = False
    actor_tanh_mean: bool = True  # tanh on the Gaussian's mean (the FQL code: none)
    actor_const_std: bool = False  # std fixed at 1 (the FQL code's const_std) instead of a learned log-std
    actor_final_init_scale: float = 1.0  # variance scale of the actor's mean layer (the FQL code: 0.01)
    update_order: Literal["sequential", "joint"] = "sequential"  # paper code | FQL code
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    actor_lr_schedule: Literal["cosine", "constant"] = "cosine"
    actor_lr_decay_steps: int = 0  # T of the cosine decay; 0 = the run's length
    batch_size: int = 256


# The FQL code's IQL (seohongpark/fql agents/iql.py get_config): 4×512 GELU, LayerNorm critics, expectile
# 0.9, AWR α = 10, constant-std Gaussian actor without tanh, final layer variance scale 0.01 (utils/
# networks.py Actor), one Adam at 3e-4 without decay, the joint update.
FQL_CODE_IQL = {
    "actor_hidden_dims": (512, 512, 512, 512), "value_hidden_dims": (512, 512, 512, 512), "activation": "gelu",
    "critic_layer_norm": True, "expectile": 0.9, "awr_temperature": 10.0, "actor_tanh_mean": False,
    "actor_const_std": True, "actor_final_init_scale": 0.01,
    "update_order": "joint", "actor_lr_schedule": "constant",
}


@register
class IQL(Agent):
    name = "iql"
    config_class = IQLConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": {**cpu_networks(),
                        "actor_lr_schedule": "constant"}}
    presets = (
        # IQL paper, Appendix B (and its code's train_offline.py): locomotion rewards × 1000 / return range
        ("mujoco/*", {"reward_transform": "iql_locomotion"}),
        # The FQL paper's benchmarks: IQL as the FQL code runs it (get_config; antmaze τ = 0.9, β = 10, r − 1
        # as in the IQL paper), with its per-task discounts; README example: humanoidmaze α = 10.
        *((pattern, FQL_CODE_IQL) for pattern in FQL_PAPER_BENCHMARKS),
        *FQL_CODE_ANTMAZE_REWARDS,
        *FQL_CODE_OGBENCH_DISCOUNTS,
    )

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = InSampleCritic(obs_dim, act_dim, c.value_hidden_dims, c.critic_layer_norm, c.activation,
                                     c.expectile, c.discount, seeds=s).to(self.device)
        self.actor = GaussianActor(obs_dim, act_dim, c.actor_hidden_dims, c.activation, seeds=s,
                                   tanh_mean=c.actor_tanh_mean, const_std=c.actor_const_std,
                                   final_init_scale=c.actor_final_init_scale).to(self.device)
        self.critic_opt = self.adam(self.critic.q.parameters(), c.critic_lr)
        self.value_opt = self.adam(self.critic.value.parameters(), c.value_lr)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "value": self.value_opt, "actor": self.actor_opt}

    def advance(self) -> None:
        super().advance()
        c = self.config
        self.schedule_lr(self.actor_opt, c.actor_lr, c.actor_lr_schedule, c.actor_lr_decay_steps)

    def awr_weights(self, batch: Batch) -> torch.Tensor:
        """min(exp(β·A(s, a)), max_weight) ``[S, B]``: the advantage from the target critic (sequential)
        or the online one (joint), and the current value."""
        advantage = self.critic.advantage(batch.obs, batch.actions, target=self.config.update_order == "sequential")
        return torch.exp(self.config.awr_temperature * advantage).clamp(max=self.config.max_weight)

    def actor_loss(self, batch: Batch, weights: torch.Tensor) -> torch.Tensor:
        """AWR ``[S]``: −E[w · log π(a|s)]."""
        return -seed_mean(weights * self.actor(batch.obs).log_prob(batch.actions).sum(-1))

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.actor_opt, self.actor_loss(batch, self.awr_weights(batch)))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.config.update_order == "joint":
            value_loss, critic_loss, q = self.critic.losses(batch)
            weights = self.awr_weights(batch)
            actor_loss = self.actor_loss(batch, weights)
            self.critic.update_target(self.config.tau)  # toward the pre-step critic
            value_loss = self.minimize(self.value_opt, value_loss)
            actor_loss = self.minimize(self.actor_opt, actor_loss)
            critic_loss = self.minimize(self.critic_opt, critic_loss)
        else:
            value_loss = self.minimize(self.value_opt, self.critic.value_loss(batch))
            weights = self.awr_weights(batch)  # with the new value
            actor_loss = self.minimize(self.actor_opt, self.actor_loss(batch, weights))
            critic_loss, q = self.critic.q_loss(batch)
            critic_loss = self.minimize(self.critic_opt, critic_loss)
            self.critic.update_target(self.config.tau)
        return {
            "value_loss": value_loss,
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": seed_mean(q.detach()),
            "adv_weight_mean": seed_mean(weights),
        }

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        # IQL evaluates the mean action (the FQL code too: eval temperature 0).
        return self.actor(obs).mean.clamp(-1.0, 1.0)
