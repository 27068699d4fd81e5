"""Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023, arXiv 2208.06193; official code Zhendong-Wang/Diffusion-Policies-for-Offline-RL).

A DDPM policy (K denoising steps, VP schedule, ε-prediction) trained with behaviour cloning plus
Q-learning through the whole reverse chain:
- critic: a′ = sample of the EMA policy at s′ (no gradient), y = r + γ m min_i Q_φ̄ᵢ(s′, a′),
          L_Q = Σ_i E[(Q_φᵢ(s, a) − y)²]; with ``max_q_backup`` (antmaze), 10 samples a′ per s′ and
          y = r + γ m min_i max_j Q_φ̄ᵢ(s′, a′_j);
- actor:  L_π = L_diffusion(a | s) + η · (−mean_i Q_φᵢ(s, a_π) / sg(mean |Q|)),
          a_π = the K-step reverse chain from N(0, I) *with backpropagation through every step*, so
          the policy update costs grow linearly with K (the reference point for FlowQ's claim);
          the critic learns nothing from this term (it is evaluated with detached parameters);
- an EMA copy of the policy gives the critic's next actions: it starts as a copy of the initial
  policy and stays so until ``ema_start`` updates are done, then takes a Polyak step (decay 0.995)
  every ``ema_every`` updates (the official ``step_ema``, called when its pre-increment step count is
  a multiple of 5 and at least 1000);
- learning rates decay on a cosine to 0 over the run (the README's ``--lr_decay``), the actor's and
  the critic's (the critic's lr is 3e-4 on every task; the actor's is per task);
- acting: N = 50 candidates per state from the policy, one drawn with probability softmax(Q)
  (``action_selection="softmax"``, the official code) or the best one (``"argmax"``), Q = min of
  the target critic's heads.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, losses ``[S]``; the
gradient-norm clip applies to each seed's gradient on its own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Hashable, Literal

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig
from algos.kit.critics import td_target
from algos.kit.diffusion import NoisePredictor, VPSchedule, ddpm_sample, denoising_loss
from algos.kit.networks import Activation, Critic, frozen_call, soft_update
from algos.kit.presets import cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean


@dataclass
class DiffusionQLConfig(AgentConfig):
    """Diffusion-QL with the official code's defaults: K = 5, 3×256 Mish MLPs (no LayerNorm), Adam
    3e-4 with cosine decay over the run (its README runs ``--lr_decay``; it steps the decay once per
    1000-update epoch, flowbench once per update), batch 256, γ = 0.99, τ = 0.005, EMA 0.995 every 5
    steps from step 1000, 50 acting candidates. η, the gradient-norm clip, the actor's lr, the max-Q
    backup and the reward transform are per task (``DiffusionQL.presets``: its ``hyperparameters``
    table); the defaults are its halfcheetah/hopper values (η 1, clip 9). The Q term averages the twin
    heads; the official code picks one head at random and divides by the other's mean |Q| (equal in
    expectation)."""

    eta: float = 1.0
    sampling_steps: int = 5  # K, DDPM denoising steps
    num_candidates: int = 50  # N actions per state when acting, one chosen by Q (action_selection)
    action_selection: Literal["softmax", "argmax"] = "softmax"
    grad_norm: float = 9.0  # max gradient norm for actor and critic; 0 = no clipping
    max_q_backup: bool = False  # y from the max over 10 next-action samples per head (antmaze)
    ema_decay: float = 0.995
    ema_every: int = 5
    ema_start: int = 1000
    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (256, 256, 256)
    value_hidden_dims: tuple[int, ...] = (256, 256, 256)
    activation: Activation = "mish"
    critic_layer_norm: bool = False
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_lr_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: to 0 over the run
    critic_lr_schedule: Literal["cosine", "constant"] = "cosine"
    batch_size: int = 256


MAX_Q_BACKUP_SAMPLES = 10  # next-action samples per state for the max-Q backup (the official code's 10)

# The official code's per-task table (Zhendong-Wang/Diffusion-Policies-for-Offline-RL main.py,
# `hyperparameters`, lines 17-37): 'lr' is the actor's lr, 'gn' the gradient-norm clip, 'reward_tune'
# the reward transform ('cql_antmaze': (r − 0.5)·4, 'normalize': standardised). Minari has no
# medium-replay/medium-expert locomotion datasets; each env takes its '-medium-v2' row.
PAPER_PRESETS: tuple[tuple[str, dict], ...] = (
    ("mujoco/halfcheetah/*", {"eta": 1.0, "grad_norm": 9.0}),
    ("mujoco/hopper/*", {"eta": 1.0, "grad_norm": 9.0}),
    ("mujoco/walker2d/*", {"eta": 1.0, "grad_norm": 1.0}),
    ("D4RL/antmaze/*", {"reward_transform": "cql_antmaze", "max_q_backup": True}),
    ("D4RL/antmaze/umaze-v*", {"eta": 0.5, "grad_norm": 2.0, "max_q_backup": False}),
    ("D4RL/antmaze/umaze-diverse-*", {"eta": 2.0, "grad_norm": 3.0}),
    ("D4RL/antmaze/medium-play-*", {"actor_lr": 1e-3, "eta": 2.0, "grad_norm": 2.0}),
    ("D4RL/antmaze/medium-diverse-*", {"eta": 3.0, "grad_norm": 1.0}),
    ("D4RL/antmaze/large-play-*", {"eta": 4.5, "grad_norm": 10.0}),
    ("D4RL/antmaze/large-diverse-*", {"eta": 3.5, "grad_norm": 7.0}),
    ("D4RL/pen/human-*", {"actor_lr": 3e-5, "eta": 0.15, "grad_norm": 7.0, "reward_transform": "standardize"}),
    ("D4RL/pen/cloned-*", {"actor_lr": 3e-5, "eta": 0.1, "grad_norm": 8.0, "reward_transform": "standardize"}),
    ("D4RL/kitchen/complete-*", {"eta": 0.005, "grad_norm": 9.0}),
    ("D4RL/kitchen/partial-*", {"eta": 0.005, "grad_norm": 10.0}),
    ("D4RL/kitchen/mixed-*", {"eta": 0.005, "grad_norm": 10.0}),
)


@register
class DiffusionQL(Agent):
    name = "diffusion_ql"
    config_class = DiffusionQLConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": {**cpu_networks(128), "num_candidates": 16}}
    # Both local tasks need a LayerNorm critic (as in the FQL paper's reruns of baselines): without it the
    # critic extrapolates past the data and the Q term drags actions off it; on the toy Q differs by only
    # 0.5 between the modes, too little for softmax(Q) to choose among candidates, and K = 5 leaves too many
    # samples between its modes (as QIPO-Diff's; measurements: results/toy/tuning.md and
    # results/pointmaze/umaze.md, "Diffusion-QL").
    presets = PAPER_PRESETS + (
        ("toy/*", {"critic_layer_norm": True, "action_selection": "argmax", "actor_lr": 1e-3, "critic_lr": 1e-3,
                   "sampling_steps": 10}),
        ("local/pointmaze/*", {"critic_layer_norm": True}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: DiffusionQLConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.schedule = VPSchedule(c.sampling_steps, self.device)
        self.actor = NoisePredictor(obs_dim, act_dim, c.actor_hidden_dims, c.activation, seeds=s).to(self.device)
        self.ema_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = Critic(obs_dim, act_dim, c.value_hidden_dims, 2, c.critic_layer_norm, c.activation,
                             seeds=s).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), c.critic_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor, "ema_actor": self.ema_actor, "critic": self.critic, "target_critic": self.target_critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def sample(self, model: NoisePredictor, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        """Actions ``[S, N, act_dim]`` from the K-step reverse chain of ``model`` for ``obs`` ``[S, N, obs_dim]``."""
        noise = rng.randn((obs.shape[1], self.act_dim), dtype=obs.dtype)
        return ddpm_sample(model, self.schedule, obs, noise, rng)

    def critic_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the twin TD critic, next actions from the EMA policy; returns L_Q ``[S]`` and
        Q(s, a) ``[S, 2, B]``."""
        c = self.config
        with torch.no_grad():
            if c.max_q_backup:
                s, b, n = batch.obs.shape[0], batch.obs.shape[1], MAX_Q_BACKUP_SAMPLES
                repeated = batch.next_obs.repeat_interleave(n, dim=1)
                next_qs = self.target_critic(repeated, self.sample(self.ema_actor, repeated, self.rng))
                next_q = next_qs.reshape(s, 2, b, n).max(-1).values.min(1).values
            else:
                next_actions = self.sample(self.ema_actor, batch.next_obs, self.rng)
                next_q = self.target_critic(batch.next_obs, next_actions).min(1).values
            target = td_target(batch, next_q, c.discount)
        q = self.critic(batch.obs, batch.actions)
        critic_loss = ((q - target[:, None]) ** 2).mean(-1).sum(-1)
        return self.minimize(self.critic_opt, critic_loss, self.critic.parameters(), c.grad_norm), q.detach()

    def actor_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """L_diffusion and the normalised Q term (each ``[S]``), whose action comes through all K reverse steps."""
        bc_loss = denoising_loss(self.actor, self.schedule, batch.obs, batch.actions, self.rng)
        policy_actions = self.sample(self.actor, batch.obs, self.rng)  # gradient through all K steps
        q_pi = frozen_call(self.critic, batch.obs, policy_actions)
        q_loss = -seed_mean(q_pi) / seed_mean(q_pi.abs()).detach().clamp(min=1e-6)
        return bc_loss, q_loss

    def actor_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One actor step on L_diffusion + η·L_q; returns the two terms (detached)."""
        bc_loss, q_loss = self.actor_losses(batch)
        self.minimize(self.actor_opt, bc_loss + self.config.eta * q_loss, self.actor.parameters(), self.config.grad_norm)
        return bc_loss.detach(), q_loss.detach()

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        bc_loss, q_loss = self.actor_step(batch)
        return bc_loss + self.config.eta * q_loss

    def ema_steps(self) -> bool:
        """Whether this update ends with a Polyak step of the EMA policy: when the updates done before it
        are a multiple of ``ema_every`` and at least ``ema_start`` (until then the EMA policy stays the
        initial policy, as the official ``step_ema`` leaves it)."""
        return self.periodic(self.config.ema_every, self.config.ema_start)

    def graph_key(self) -> Hashable:
        return self.ema_steps()

    def advance(self) -> None:
        super().advance()
        c = self.config
        self.schedule_lr(self.actor_opt, c.actor_lr, c.actor_lr_schedule)
        self.schedule_lr(self.critic_opt, c.critic_lr, c.critic_lr_schedule)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        critic_loss, q = self.critic_step(batch)
        bc_loss, q_loss = self.actor_step(batch)
        if self.ema_steps():
            soft_update(self.ema_actor, self.actor, 1.0 - c.ema_decay)
        soft_update(self.target_critic, self.critic, c.tau)
        return {"critic_loss": critic_loss, "bc_loss": bc_loss, "q_loss": q_loss, "q_mean": seed_mean(q)}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        s, n, k = obs.shape[0], obs.shape[1], self.config.num_candidates
        repeated = obs.repeat_interleave(k, dim=1)
        candidates = self.sample(self.actor, repeated, rng).reshape(s, n, k, self.act_dim)
        q = self.target_critic(repeated, candidates.reshape(s, n * k, -1)).min(1).values.reshape(s, n, k)
        if self.config.action_selection == "argmax":
            chosen = q.argmax(-1)
        else:
            chosen = rng.multinomial(torch.softmax(q, dim=-1))
        return candidates.gather(2, chosen[..., None, None].expand(s, n, 1, self.act_dim)).squeeze(2)
