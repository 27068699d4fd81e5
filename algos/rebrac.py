"""ReBRAC (Tarasov, Kurenkov, Nikulin, Kolesnikov, NeurIPS 2023, arXiv 2305.09836): TD3+BC revisited.

A deterministic tanh actor μ and twin LayerNorm critics with behaviour regularisation in both:
- critic: a′ = clip(μ̄(s′) + clip(ε, −c, c)), ε ~ N(0, σ²);
          y = r + γ m (min_i Q_φ̄ᵢ(s′, a′) − α_critic ‖a′ − a′_data‖²);  L_Q = mean_i (Q_φᵢ(s, a) − y)²
- actor (every ``actor_freq``-th update): L_μ = −mean(Q/sg(mean|Q|)) + α_actor mean ‖μ(s) − a‖²,
          Q = min_i Q_φᵢ(s, μ(s)); then Polyak updates of the target actor and critics.
As the FQL code (agents/rebrac.py, whose reruns are the FQL paper's ReBRAC column) runs it: both losses
are computed from the parameters before the step (one joint loss there), the targets move toward those
pre-step parameters, the first actor update is the ``actor_freq``-th update (its loop counts from 1),
and between actor updates the actor's Adam still steps with zero gradient (one optax Adam over all
parameters there), so the actor keeps moving on its momentum.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, Q ``[S, 2, B]``, and
every loss, mean|Q| normaliser included, is per seed ``[S]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Hashable

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.critics import td_target
from algos.kit.networks import MLP, Critic, frozen_call, soft_update
from algos.kit.presets import FQL_CODE_OGBENCH_DISCOUNTS, FQLCodeConfig, cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, per_seed, seed_mean


@dataclass
class ReBRACConfig(FQLCodeConfig):
    """ReBRAC as in the FQL paper's reruns (seohongpark/fql agents/rebrac.py get_config): 4×512 GELU
    MLPs, LayerNorm critics, actor every 2 steps, target noise 0.2 clipped at 0.5, the actor's output
    layer initialised with variance scale 0.01 (flax ``variance_scaling(0.01, 'fan_avg', 'uniform')``,
    i.e. weights 0.1× Xavier's). The BC coefficients are tuned per task (``ReBRAC.presets``, each with
    its source); the defaults are the ReBRAC paper's maze2d-umaze values."""

    alpha_actor: float = 0.003
    alpha_critic: float = 0.001
    actor_freq: int = 2
    actor_noise: float = 0.2
    actor_noise_clip: float = 0.5
    actor_layer_norm: bool = False
    actor_final_init_scale: float = 0.01  # variance scale of the actor's output layer


class TanhActor(torch.nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, c: ReBRACConfig, seeds: int = 1):
        super().__init__()
        self.net = MLP(obs_dim, c.actor_hidden_dims, act_dim, c.activation, c.actor_layer_norm, seeds=seeds,
                       final_init_scale=c.actor_final_init_scale)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


@register
class ReBRAC(Agent):
    name = "rebrac"
    config_class = ReBRACConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": cpu_networks()}
    presets = (
        # D4RL antmaze: CORL's ReBRAC configs (tinkoff-ai/CORL configs/offline/rebrac/antmaze/*_v2.yaml), whose
        # BC coefficients are tuned for CORL's whole setting, carried with them: γ 0.999, rewards × 100
        # (algorithms/offline/rebrac.py normalize_reward), critic lr 5e-5, 3×256 ReLU MLPs, LayerNorm critic.
        ("D4RL/antmaze/*", {"discount": 0.999, "reward_transform": "times_100", "critic_lr": 5e-5,
                            "actor_hidden_dims": (256, 256, 256), "value_hidden_dims": (256, 256, 256),
                            "activation": "relu"}),
        ("D4RL/antmaze/umaze-v*", {"alpha_actor": 0.003, "alpha_critic": 0.002}),
        ("D4RL/antmaze/umaze-diverse-*", {"alpha_actor": 0.003, "alpha_critic": 0.001}),
        ("D4RL/antmaze/medium-play-*", {"alpha_actor": 0.001, "alpha_critic": 0.0005}),
        ("D4RL/antmaze/medium-diverse-*", {"alpha_actor": 0.001, "alpha_critic": 0.0}),
        ("D4RL/antmaze/large-play-*", {"alpha_actor": 0.002, "alpha_critic": 0.001}),
        ("D4RL/antmaze/large-diverse-*", {"alpha_actor": 0.002, "alpha_critic": 0.002}),
        # ReBRAC paper, Table 12 (maze2d umaze)
        ("D4RL/pointmaze/umaze-*", {"alpha_actor": 0.003, "alpha_critic": 0.001}),
        # OGBench under the FQL code's conventions: its per-task discounts (README command lines, shared by
        # every agent there) and the README's ReBRAC example (humanoidmaze: α_actor = α_critic = 0.01).
        *FQL_CODE_OGBENCH_DISCOUNTS,
        ("ogbench/humanoidmaze-*", {"alpha_actor": 0.01, "alpha_critic": 0.01}),
        # Tuned here on local/pointmaze/umaze-v0: with the paper's α_actor the actor follows Q's gradient
        # straight into the U-maze's wall, and 0.1 still does on some seeds under the reference layout
        # (measurements: results/pointmaze/umaze.md, "ReBRAC").
        ("local/pointmaze/*", {"alpha_actor": 0.3, "alpha_critic": 0.01}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: ReBRACConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.actor = TanhActor(obs_dim, act_dim, c, seeds=s).to(self.device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = Critic(obs_dim, act_dim, c.value_hidden_dims, 2, c.critic_layer_norm, c.activation,
                             seeds=s).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), c.critic_lr)
        # The latest actor metrics ([S] each), reported on the steps between actor updates too (constant
        # CSV columns); tensors updated in place so that the step stays free of Python state.
        self.last_actor_metrics = {k: torch.zeros(s, device=self.device) for k in ("actor_loss", "bc_loss")}

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor, "target_actor": self.target_actor, "critic": self.critic,
                "target_critic": self.target_critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def extra_state(self) -> dict:
        return {"last_actor_metrics": {k: v.clone() for k, v in self.last_actor_metrics.items()}}

    def load_extra_state(self, state: dict) -> None:
        for k, v in self.last_actor_metrics.items():
            v.copy_(state["last_actor_metrics"][k])

    def updates_actor(self) -> bool:
        """The actor (and the targets) update on the f-th, 2f-th, ... update (the reference's loop counts
        updates from 1)."""
        return (self.step + 1) % self.config.actor_freq == 0

    def graph_key(self) -> Hashable:
        return self.updates_actor()

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_actions = self.target_actor(batch.next_obs)
            eps = self.rng.randn(next_actions.shape[1:], dtype=next_actions.dtype) * c.actor_noise
            next_actions = (next_actions + eps.clamp(-c.actor_noise_clip, c.actor_noise_clip)).clamp(-1.0, 1.0)
            penalty = c.alpha_critic * ((next_actions - batch.next_actions) ** 2).sum(-1)
            next_q = self.target_critic(batch.next_obs, next_actions).min(1).values - penalty
            target = td_target(batch, next_q, c.discount)
        q = self.critic(batch.obs, batch.actions)  # [S, 2, B]
        critic_loss = seed_mean((q - target[:, None]) ** 2)

        if self.updates_actor():
            actor_loss, bc_loss = self.actor_loss(batch)
            # targets toward the parameters before this step, as the reference updates them
            soft_update(self.target_critic, self.critic, c.tau)
            soft_update(self.target_actor, self.actor, c.tau)
            self.minimize(self.actor_opt, actor_loss)  # first: its graph reads the critic's pre-step weights
            self.last_actor_metrics["actor_loss"].copy_(actor_loss.detach())
            self.last_actor_metrics["bc_loss"].copy_(bc_loss.detach())
        else:
            self.coast(self.actor_opt)
        critic_loss = self.minimize(self.critic_opt, critic_loss)
        return {"critic_loss": critic_loss, "q_mean": seed_mean(q.detach()),
                **{k: v.clone() for k, v in self.last_actor_metrics.items()}}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_μ, its BC term), each ``[S]``; the critic gets no gradient from it."""
        c = self.config
        actions = self.actor(batch.obs)
        q_pi = frozen_call(self.critic, batch.obs, actions).min(1).values  # [S, B]
        bc_loss = c.alpha_actor * seed_mean(((actions - batch.actions) ** 2).sum(-1))
        q_scale = per_seed(seed_mean(q_pi.abs()).detach(), q_pi)
        return -seed_mean(q_pi / q_scale) + bc_loss, bc_loss

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.actor_opt, self.actor_loss(batch)[0])

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return self.actor(obs).clamp(-1.0, 1.0)
