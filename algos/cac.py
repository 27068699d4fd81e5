"""Consistency Actor-Critic (CAC; Ding & Jin, "Consistency Models as a Rich and Efficient Policy Class for
Reinforcement Learning", ICLR 2024, arXiv 2309.16984).

The policy is a consistency model (Song, Dhariwal, Chen, Sutskever 2023): a network f_θ(x, τ, s) that
maps a noisy action x at noise level τ straight to a clean one, with Karras et al.'s parametrisation
    f_θ(x, τ, s) = c_skip(τ) x + c_out(τ) F_θ(c_in(τ) x, ¼ ln τ, s),
    c_skip = σ_d² / ((τ − ε)² + σ_d²),  c_out = σ_d (τ − ε) / √(σ_d² + τ²),  c_in = 1 / √(τ² + σ_d²),
so f_θ(x, ε, s) = x exactly (the boundary condition). Noise levels τ_1 = ε < … < τ_N = T on Karras's
ρ-schedule. Each update takes one critic step and one actor step (Diffusion-QL's structure, which CAC
follows):
- critic:  a′ from the policy (no gradient), y = r + γ m min_i Q_φ̄ᵢ(s′, a′), L_Q = mean_i (Q_φᵢ(s, a) − y)²;
- BC:      consistency training, L_CT = mean w_n ‖f_θ(a + τ_{n+1} z, τ_{n+1}, s) − sg f_θ(a + τ_n z, τ_n, s)‖²,
           n ~ U{1 … N−1}, z ~ N(0, I) shared by both terms (the target network is θ itself behind a stop-
           gradient, as in Song & Dhariwal's improved consistency training), w_n = 100 / (τ_{n+1} − τ_n) as
           the CAC code scales it (``scale_consistency_loss``; w_n = 1 without);
- actor:   L_π = L_CT − η · mean Q_φ(s, a_θ) / sg(mean |Q|), a_θ from the K-step sampler with gradient.
Sampling with K steps: a = f_θ(T z, T, s); then for each of K − 1 lower levels τ (evenly spaced in the
schedule's index), a = f_θ(a + √(τ² − ε²) z′, τ, s); clipped to [-1, 1].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from algos.base import (FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, Agent, AgentConfig, Batch, ConfigError,
                        register)
from algos.networks import Activation, Critic, MLP, frozen_call, soft_update
from algos.seeds import SeedRandom, seed_mean
from algos.td import td_critic_loss

SIGMA_DATA = 0.5  # σ_d: the data's scale in Karras et al.'s parametrisation (actions in [-1, 1])


@dataclass
class CACConfig(AgentConfig):
    """CAC with the FQL code's shared settings (4×512 GELU MLPs, LayerNorm critic, Adam 3e-4, batch 256,
    γ 0.99, τ 0.005) and the consistency model's usual constants (ε 0.002, T 80, ρ 7). The FQL paper's
    CAC values were not reachable from here: N = 40 training levels, K = 5 sampling steps and η = 1
    (Diffusion-QL's Q weight, whose actor-critic structure CAC follows) are chosen here.

    ``scale_consistency_loss`` (default on) weights each sample's consistency error by 100 / (τ_{n+1} − τ_n),
    as the CAC code does (quantumiracle/Consistency_Model_For_Reinforcement_Learning,
    agents/ql_consistency.py, ``scale_consis_loss=True``): adjacent levels' outputs differ little, so the
    unweighted loss is ~10⁻³ and the normalised Q term (~1) alone shaped the policy — on PointMaze umaze every
    seed's actions left the data (score 0 at 2.5k updates, session 7)."""

    eta: float = 1.0  # weight of the normalised Q term against the consistency loss
    sampling_steps: int = 5  # K, consistency-model steps per action (training's Q term and acting)
    noise_levels: int = 40  # N, the schedule's levels for consistency training
    eps: float = 0.002  # ε, the smallest noise level
    max_noise: float = 80.0  # T, the largest
    rho: float = 7.0
    scale_consistency_loss: bool = True  # w_n = 100 / (τ_{n+1} − τ_n) on each sample's consistency error
    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    critic_layer_norm: bool = True
    activation: Activation = "gelu"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    batch_size: int = 256


class ConsistencyPolicy(torch.nn.Module):
    """f_θ(x, τ, s) with the boundary condition built in; ``levels`` holds τ_1 = ε < … < τ_N = T."""

    def __init__(self, obs_dim: int, act_dim: int, c: CACConfig, seeds: int = 1):
        super().__init__()
        self.act_dim, self.eps, self.scale_loss = act_dim, c.eps, c.scale_consistency_loss
        self.net = MLP(obs_dim + act_dim + 1, c.actor_hidden_dims, act_dim, c.activation, seeds=seeds)
        i = torch.arange(c.noise_levels, dtype=torch.float64) / (c.noise_levels - 1)
        levels = (c.eps ** (1 / c.rho) + i * (c.max_noise ** (1 / c.rho) - c.eps ** (1 / c.rho))) ** c.rho
        self.register_buffer("levels", levels.to(torch.get_default_dtype()), persistent=False)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``x`` ``[S, B, act]`` at levels ``tau`` ``[S, B, 1]`` (or broadcastable) → clean actions."""
        tau = tau.expand(*x.shape[:-1], 1)
        c_skip = SIGMA_DATA**2 / ((tau - self.eps) ** 2 + SIGMA_DATA**2)
        c_out = SIGMA_DATA * (tau - self.eps) / torch.sqrt(SIGMA_DATA**2 + tau**2)
        c_in = 1.0 / torch.sqrt(tau**2 + SIGMA_DATA**2)
        return c_skip * x + c_out * self.net(obs, c_in * x, 0.25 * torch.log(tau))

    def sample(self, obs: torch.Tensor, steps: int, rng: SeedRandom) -> torch.Tensor:
        """K-step consistency sampling from the top level down; gradients flow unless under ``no_grad``."""
        n = len(self.levels)
        indices = [round(n - 1 - k * (n - 1) / steps) for k in range(steps)]  # T first, then lower levels
        shape = (obs.shape[1], self.act_dim)
        top = self.levels[indices[0]]
        action = self(obs, top * rng.randn(shape, dtype=obs.dtype), top.reshape(1, 1, 1))
        for index in indices[1:]:
            tau = self.levels[index]
            noise = rng.randn(shape, dtype=obs.dtype)
            action = self(obs, action + torch.sqrt(tau**2 - self.eps**2) * noise, tau.reshape(1, 1, 1))
        return action.clamp(-1.0, 1.0)

    def consistency_loss(self, obs: torch.Tensor, actions: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        """L_CT ``[S]``: adjacent levels τ_n < τ_{n+1}, one z for both, the lower one behind a stop-gradient;
        each sample's error × 100 / (τ_{n+1} − τ_n) with ``scale_consistency_loss``."""
        n = rng.randint(len(self.levels) - 1, (actions.shape[1], 1))
        z = rng.randn(actions.shape[1:], dtype=actions.dtype)
        low, high = self.levels[n], self.levels[n + 1]
        with torch.no_grad():
            target = self(obs, actions + low * z, low)
        errors = ((self(obs, actions + high * z, high) - target) ** 2).mean(-1, keepdim=True)  # [S, B, 1]
        if self.scale_loss:
            errors = errors * (100.0 / (high - low))
        return seed_mean(errors)


@register
class CAC(Agent):
    name = "cac"
    config_class = CACConfig
    samples_flow_in_training = True  # the Q term's and the critic's actions run the K-step sampler
    steps_field = "sampling_steps"
    policy_update_parts = ("actor",)
    profiles = {"cpu": {"actor_hidden_dims": (256, 256), "value_hidden_dims": (256, 256)}}
    presets = (
        *FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS,
        # flowbench's toy (Q differs by only 0.5 between the modes): a stronger Q term, and lr 1e-3 (as the other
        # toy presets). η 5 scored 47.5 / 48.8, η 20 78.8 / 77.8, η 30 86.0 / 82.5 / 82.2 / 81.8 (seeds 0–3;
        # results/toy/tuning.md).
        ("toy/*", {"eta": 30.0, "actor_lr": 1e-3, "critic_lr": 1e-3}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: CACConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        if c.noise_levels < 2 or c.eps >= c.max_noise:
            raise ConfigError(f"CAC needs noise_levels >= 2 and eps < max_noise, got noise_levels {c.noise_levels}, "
                              f"eps {c.eps}, max_noise {c.max_noise}")
        self.actor = ConsistencyPolicy(obs_dim, act_dim, c, seeds=s).to(self.device)
        self.critic = Critic(obs_dim, act_dim, c.value_hidden_dims, 2, c.critic_layer_norm, c.activation,
                             seeds=s).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), c.critic_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def actor_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        bc_loss = self.actor.consistency_loss(batch.obs, batch.actions, self.rng)
        actions = self.actor.sample(batch.obs, self.config.sampling_steps, self.rng)
        q = frozen_call(self.critic, batch.obs, actions).mean(1)
        q_loss = -seed_mean(q) / seed_mean(q.abs()).detach().clamp(min=1e-6)
        return {"bc": bc_loss, "q": q_loss}

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        losses = self.actor_losses(batch)
        return self.minimize(self.actor_opt, losses["bc"] + self.config.eta * losses["q"])

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_actions = self.actor.sample(batch.next_obs, c.sampling_steps, self.rng)
        critic_loss, q = td_critic_loss(self.critic, self.target_critic, batch, next_actions, c.discount, "min")
        critic_loss = self.minimize(self.critic_opt, critic_loss)
        losses = self.actor_losses(batch)
        self.minimize(self.actor_opt, losses["bc"] + c.eta * losses["q"])
        soft_update(self.target_critic, self.critic, c.tau)
        return {"critic_loss": critic_loss, "bc_loss": losses["bc"].detach(), "q_loss": losses["q"].detach(),
                "q_mean": seed_mean(q).detach()}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return self.actor.sample(obs, self.config.sampling_steps, rng)
