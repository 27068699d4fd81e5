"""Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023, arXiv 2208.06193; official code Zhendong-Wang/Diffusion-Policies-for-Offline-RL).

A DDPM policy (K denoising steps, VP schedule, ε-prediction) trained with behaviour cloning plus
Q-learning through the whole reverse chain:
- critic: a′ = sample of the EMA policy at s′ (no gradient), y = r + γ m min_i Q_φ̄ᵢ(s′, a′),
          L_Q = Σ_i E[(Q_φᵢ(s, a) − y)²];
- actor:  L_π = L_diffusion(a | s) + η · (−mean_i Q_φᵢ(s, a_π) / sg(mean |Q|)),
          a_π = the K-step reverse chain from N(0, I) *with backpropagation through every step*, so
          the policy update costs grow linearly with K (the reference point for FlowQ's claim);
          the critic learns nothing from this term (it is evaluated with detached parameters);
- an EMA copy of the policy (decay 0.995, every 5 steps, a plain copy for the first 1000 steps)
  gives the critic's next actions;
- acting: N = 50 candidates per state from the policy, one drawn with probability softmax(Q)
  (``action_selection="softmax"``, the official code) or the best one (``"argmax"``), Q = min of
  the target critic's heads.
Tensors carry the leading seed axis (``algos.seeds``): batches ``[S, B, ...]``, losses ``[S]``; the
gradient-norm clip applies to each seed's gradient on its own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Hashable

import torch
from torch.func import functional_call

from algos.base import Agent, AgentConfig, Batch, register
from algos.diffusion import NoisePredictor, VPSchedule, ddpm_sample, denoising_loss
from algos.networks import Critic, soft_update
from algos.seeds import SeedRandom, seed_mean


@dataclass
class DiffusionQLConfig(AgentConfig):
    """Diffusion-QL with the paper's defaults: K = 5, 3×256 Mish MLPs (no LayerNorm), Adam 3e-4,
    batch 256, γ = 0.99, τ = 0.005, EMA 0.995 every 5 steps from step 1000, 50 acting candidates.
    η and the gradient-norm clip are per task in the paper (η 0.5–3.5, clip 1–10; halfcheetah and
    hopper use η = 1, clip 9); those are the defaults here. The paper's learning-rate decay and
    max-Q backup (antmaze) are not implemented. The Q term averages the twin heads; the official
    code picks one head at random and divides by the other's mean |Q| (equal in expectation)."""

    eta: float = 1.0
    diffusion_steps: int = 5  # K
    num_candidates: int = 50
    action_selection: str = "softmax"  # softmax | argmax
    grad_norm: float = 9.0  # max gradient norm for actor and critic; 0 = no clipping
    ema_decay: float = 0.995
    ema_every: int = 5
    ema_start: int = 1000
    discount: float = 0.99
    tau: float = 0.005
    hidden_dims: tuple[int, ...] = (256, 256, 256)
    activation: str = "mish"
    critic_layer_norm: bool = False
    lr: float = 3e-4
    batch_size: int = 256


@register
class DiffusionQL(Agent):
    name = "diffusion_ql"
    config_class = DiffusionQLConfig
    samples_flow_in_training = True
    policy_update_parts = ("actor",)
    steps_field = "diffusion_steps"
    profiles = {"cpu": {"hidden_dims": (128, 128), "num_candidates": 16}}
    # Both local tasks need a LayerNorm critic (as in the FQL paper's reruns of baselines). On the toy
    # the critic only ever sees the two data modes: without LayerNorm it extrapolates upward past the
    # better mode and the Q term drags actions out of the support (score −58); and Q differs by only
    # 0.5 between the modes, too little for softmax(Q) to choose among candidates. On PointMaze umaze
    # (cpu profile, 20k steps) the plain critic's Q kept growing (1.3 → 17) and the score fell to 4.7
    # (BC 11.0); with LayerNorm it scored 37/98/99/40 at 5k/10k/15k/20k.
    presets = (
        ("toy/*", {"critic_layer_norm": True, "action_selection": "argmax", "lr": 1e-3}),
        ("local/pointmaze/*", {"critic_layer_norm": True}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: DiffusionQLConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        if c.action_selection not in ("softmax", "argmax"):
            raise ValueError(f"action_selection must be 'softmax' or 'argmax', got {c.action_selection!r}")
        self.schedule = VPSchedule(c.diffusion_steps, self.device)
        self.actor = NoisePredictor(obs_dim, act_dim, c.hidden_dims, c.activation, seeds=s).to(self.device)
        self.ema_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = Critic(obs_dim, act_dim, c.hidden_dims, 2, c.critic_layer_norm, c.activation,
                             seeds=s).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = self.adam(self.actor.parameters(), c.lr)
        self.critic_opt = self.adam(self.critic.parameters(), c.lr)

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
            next_actions = self.sample(self.ema_actor, batch.next_obs, self.rng)
            next_q = self.target_critic(batch.next_obs, next_actions).min(1).values
            target = batch.rewards + c.discount * batch.masks * next_q
        q = self.critic(batch.obs, batch.actions)
        critic_loss = ((q - target[:, None]) ** 2).mean(-1).sum(-1)
        return self.minimize(self.critic_opt, critic_loss, self.critic.parameters(), c.grad_norm), q.detach()

    def actor_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """L_diffusion and the normalised Q term (each ``[S]``), whose action comes through all K reverse steps."""
        bc_loss = denoising_loss(self.actor, self.schedule, batch.obs, batch.actions, self.rng)
        policy_actions = self.sample(self.actor, batch.obs, self.rng)  # gradient through all K steps
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        q_pi = functional_call(self.critic, frozen, (batch.obs, policy_actions))
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

    def ema_action(self) -> str | None:
        """What the next update does to the EMA policy after its gradient steps: ``copy`` (before
        ``ema_start``), ``soft`` (a Polyak step) or nothing (None), every ``ema_every`` updates. Counted
        with the update itself (step + 1), as the official code increments its step first."""
        c, step = self.config, self.step + 1
        if step % c.ema_every != 0:
            return None
        return "copy" if step < c.ema_start else "soft"

    def graph_key(self) -> Hashable:
        return self.ema_action()

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        critic_loss, q = self.critic_step(batch)
        bc_loss, q_loss = self.actor_step(batch)

        ema = self.ema_action()
        if ema == "copy":
            self.ema_actor.load_state_dict(self.actor.state_dict())
        elif ema == "soft":
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
