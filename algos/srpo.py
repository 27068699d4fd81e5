"""Score-Regularized Policy Optimization (SRPO; Chen, Lu, Wang, Su, Zhu, ICLR 2024, arXiv 2310.07297).

Reference: the authors' code, github.com/thu-ml/SRPO (``SRPO.py``, ``model.py``, ``utils.py``, ``dataset.py``,
``train_behavior.py``, ``train_critic.py``, ``train_policy.py``); line numbers below are of its HEAD (b3b916a).

A deterministic policy μ_θ(s) maximises Q while a diffusion model of the behaviour policy regularises it
through its noise predictor alone — the diffusion model is never sampled, neither in training nor when acting.
Three networks, each trained as the reference trains it:
- behaviour ε_ψ(a_t, t, s) (``ScoreNet``, model.py L133–150: a residual MLP on [a_t, s, time features]) on the
  continuous VP-SDE a_t = α_t a + σ_t z, β(t) linear from 0.1 to 20 (utils.py L9–16),
      L_ε = mean_B Σ_d (ε_ψ(a_t, t, s) − z)²,   t ~ U(0.001, 1)          (SRPO.py L84–89);
- critic: IQL (SRPO.py L141–187): V toward the τ-expectile of min_i Q_φ̄ᵢ(s, a), twin Q toward
  r + γ m V(s′) (mean of the heads' MSEs), the target Polyak-averaged toward the critic after its step;
- policy (SRPO.py L25–60), per state, t ~ U(0.02, 0.98), z ~ N(0, I), a = μ_θ(s):
      L_π = mean_B [ ω(t) Σ_d sg(ε_ψ(α_t a + σ_t z, t, s)) · a  −  β Σ_d sg(ĝ) · a ],
  ĝ = ∇ₐ ½(Q_φ̄₁ + Q_φ̄₂)(s, a) (the *target* critic's mean of heads), divided per sample by its root mean
  square over the action dims on maze tasks (``normalize_q_grad``, the reference's ``regq``); ω(t) = σ_t²
  (``--WT VDS``, the reference's default), 1 (``stable``) or α_t/σ_t (``score``). The gradient in a is
  ω(t) ε_ψ − β ĝ: the regulariser pulls a along the behaviour score (−ε_ψ/σ_t), Q pushes it uphill.
Staging (train_behavior.py, train_critic.py, train_policy.py): the reference trains the behaviour model
(2M steps) and the critic (1.5M) first, each on its own, then the policy (1M) against both, frozen. One run
here does the same within its own length (``pretrain_fraction``, ``pretrain_steps``): first the behaviour
model and the critic together (independent networks: concurrent is sequential), then the policy alone.
Acting: μ_θ(s), already in [-1, 1] (tanh).
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, losses ``[S]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Literal

import torch
from torch import nn

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig
from algos.kit.critics import InSampleCritic
from algos.kit.networks import MLP, torch_default_init_
from algos.kit.presets import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS
from algos.kit.registry import register
from algos.kit.residual import ResidualMLP
from algos.kit.seeds import SeedRandom, seed_mean

Weighting = Literal["vds", "stable", "score"]


@dataclass
class SRPOConfig(AgentConfig):
    """SRPO as the authors' code runs it (thu-ml/SRPO). Defaults are its generic (locomotion) path; presets
    apply its per-task switches: on tasks whose name contains "maze" a 4-layer policy, the normalised Q
    gradient and expectile 0.9 (utils.py L93–96, SRPO.py L153); β per task (utils.py L7); rewards r − 1 on
    antmaze and × 1000 / (max − min episode return) on locomotion (dataset.py L32–40).
    - β (``beta``): the reference has no default (a task outside its table fails); 0.05 here, its value for
      antmaze medium/large-diverse and hopper/walker2d-medium.
    - Staging: the reference's three scripts run 2M behaviour, 1.5M critic and 1M policy updates. Here the
      first ``pretrain_fraction`` = 2/3 of a run (the reference's 2M : 1M) trains the behaviour model and
      the critic together, the rest the policy alone with both frozen; ``pretrain_steps`` > 0 sets that
      length in updates instead. Without a known run length (``horizon`` None, e.g. direct ``update``
      calls) and without ``pretrain_steps``, or with ``pretrain_fraction`` 0, all three train every update.
    - The policy's learning rate decays by a cosine to 0 over its phase (SRPO.py L16: T = its 1M steps).
    - Differences kept (results/baselines/srpo.md): the behaviour model trains on the run's batch (256)
      where the reference draws 2048 (train_behavior.py L27): the harness hands one batch per update."""

    beta: float = 0.05  # β, weight of the Q term against the score regulariser (utils.py L7; per-task presets)
    weighting: Weighting = "vds"  # ω(t) of the score term: vds σ_t² | stable 1 | score α_t/σ_t (--WT, SRPO.py L37–44)
    subtract_noise: bool = False  # use ε_ψ − z instead of ε_ψ (--WT containing "noise", SRPO.py L35–36)
    normalize_q_grad: bool = False  # divide ∇ₐQ per sample by its RMS over action dims (regq; on for "maze")
    pretrain_fraction: float = 2.0 / 3.0  # share of the run pre-training behaviour model + critic; 0: all jointly
    pretrain_steps: int = 0  # > 0: pre-training updates (instead of pretrain_fraction of the run)
    expectile: float = 0.7  # IQL's τ (SRPO.py L153: 0.9 on "maze" tasks)
    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (256, 256)  # the Dirac policy (model.py L58–64; 4 layers on "maze")
    value_hidden_dims: tuple[int, ...] = (256, 256)  # twin Q and V, ReLU, no LayerNorm (model.py L32–55)
    behaviour_hidden_dim: int = 256  # width of the behaviour model's residual MLP (model.py L141)
    behaviour_blocks: int = 3  # its residual blocks (--actor_blocks, utils.py L80)
    behaviour_dropout: float = 0.1  # dropout in its blocks while it trains (model.py L141)
    behaviour_weight_decay: float = 0.01  # AdamW's decoupled weight decay of the behaviour model (SRPO.py L13)
    actor_lr: float = 3e-4  # the policy's Adam (SRPO.py L15)
    actor_lr_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: to 0 over the policy's phase (SRPO.py L16)
    actor_lr_decay_steps: int = 0  # T of the cosine; 0 = the policy phase's length (the run's, when joint)
    behaviour_lr: float = 3e-4  # the behaviour model's AdamW (SRPO.py L13)
    critic_lr: float = 3e-4  # SRPO.py L149
    value_lr: float = 3e-4  # SRPO.py L150
    batch_size: int = 256


# The reference's switches on tasks whose name contains "maze" (utils.py L93–96; SRPO.py L153).
MAZE = {"actor_hidden_dims": (256, 256, 256, 256), "normalize_q_grad": True, "expectile": 0.9}


def vp_marginal(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(α_t, σ_t) of the VP-SDE with β(t) = β_min + t (β_max − β_min) (utils.py L9–16):
    log α_t = −¼ t² (β_max − β_min) − ½ t β_min, σ_t = √(1 − α_t²)."""
    log_alpha = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    return log_alpha.exp(), (1.0 - (2.0 * log_alpha).exp()).sqrt()


def score_weight(weighting: Weighting, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """ω(t) (SRPO.py L37–44): σ_t² (vds), 1 (stable) or α_t/σ_t (score)."""
    if weighting == "vds":
        return sigma**2
    if weighting == "stable":
        return torch.ones_like(sigma)
    return alpha / sigma


class GaussianFourierFeatures(nn.Module):
    """[sin(2π t W), cos(2π t W)], W ~ N(0, 30²) fixed at initialisation (model.py L7–16), one W per seed."""

    def __init__(self, dim: int = 64, scale: float = 30.0, seeds: int = 1):
        super().__init__()
        self.register_buffer("weight", torch.randn(seeds, 1, dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.reshape(t.shape[0], -1, 1) * self.weight * 2 * math.pi
        return torch.cat([angles.sin(), angles.cos()], dim=-1).reshape(*t.shape, -1)


class ScoreNet(nn.Module):
    """ε_ψ(a_t, t, s) (model.py ``ScoreNet_IDQL`` L133–150): time features (64 Fourier features → Linear 128 →
    Mish → Linear 128) concatenated after [a_t, s] into a residual MLP (Mish, LayerNorm ε 1e-5, dropout)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, num_blocks: int, dropout: float, seeds: int = 1):
        super().__init__()
        self.fourier = GaussianFourierFeatures(64, 30.0, seeds)
        self.time_net = torch_default_init_(MLP(64, (128,), 128, "mish", seeds=seeds))  # model.py L142
        self.net = ResidualMLP(act_dim + obs_dim + 128, act_dim, hidden_dim, num_blocks, dropout, layer_norm=True,
                               activation="mish", seeds=seeds, init="torch", layer_norm_eps=1e-5)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor, rng: SeedRandom | None = None
                ) -> torch.Tensor:
        """``rng``: draw dropout masks from it (training); None: no dropout (the reference's ``eval()``)."""
        return self.net(torch.cat([x, obs, self.time_net(self.fourier(t))], dim=-1), rng)


@register
class SRPO(Agent):
    name = "srpo"
    config_class = SRPOConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": {}}  # the reference's networks are already 256 wide
    presets = (
        # dataset.py L32–40: locomotion rewards × 1000 / (max − min episode return); antmaze r − 1
        ("mujoco/*", {"reward_transform": "iql_locomotion"}),
        *FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS,
        # utils.py L93–96 and SRPO.py L153: "maze" in the task's name
        ("*maze*", MAZE),
        # utils.py L7 (temperature_coefficients), D4RL v2 names mapped to Minari's ids
        ("D4RL/antmaze/umaze-v*", {"beta": 0.02}),
        ("D4RL/antmaze/umaze-diverse-v*", {"beta": 0.04}),
        ("D4RL/antmaze/medium-play-v*", {"beta": 0.08}),
        ("D4RL/antmaze/medium-diverse-v*", {"beta": 0.05}),
        ("D4RL/antmaze/large-play-v*", {"beta": 0.06}),
        ("D4RL/antmaze/large-diverse-v*", {"beta": 0.05}),
        ("mujoco/hopper/medium-v*", {"beta": 0.05}),
        ("mujoco/hopper/medium-expert-v*", {"beta": 0.01}),
        ("mujoco/hopper/medium-replay-v*", {"beta": 0.2}),
        ("mujoco/walker2d/medium-v*", {"beta": 0.05}),
        ("mujoco/walker2d/medium-expert-v*", {"beta": 0.1}),
        ("mujoco/walker2d/medium-replay-v*", {"beta": 0.5}),
        ("mujoco/halfcheetah/medium-v*", {"beta": 0.2}),
        ("mujoco/halfcheetah/medium-expert-v*", {"beta": 0.01}),
        ("mujoco/halfcheetah/medium-replay-v*", {"beta": 0.2}),
        # flowbench's toy: the reference's maze settings (β 0.05, regq, 4-layer policy, r − 1, τ 0.9), with
        # which the unmodified reference put every action in the better disc (DESIGN.md §9).
        ("toy/*", {**MAZE, "beta": 0.05, "reward_transform": "minus_one"}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: SRPOConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = torch_default_init_(InSampleCritic(obs_dim, act_dim, c.value_hidden_dims, False, "relu",
                                                         c.expectile, c.discount, seeds=s)).to(self.device)
        self.critic.target_q.load_state_dict(self.critic.q.state_dict())  # SRPO.py L146: a copy of Q
        self.behaviour = ScoreNet(obs_dim, act_dim, c.behaviour_hidden_dim, c.behaviour_blocks, c.behaviour_dropout,
                                  seeds=s).to(self.device)
        self.actor = torch_default_init_(MLP(obs_dim, c.actor_hidden_dims, act_dim, "relu", seeds=s)).to(self.device)
        self.critic_opt = self.adam(self.critic.param_groups(c.critic_lr, c.value_lr))
        self.behaviour_opt = self.adamw(self.behaviour.parameters(), c.behaviour_lr, c.behaviour_weight_decay)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)

    def adamw(self, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """torch's AdamW (decoupled weight decay), set up as ``Agent.adam`` sets up Adam (fused; on CUDA
        capturable with a tensor learning rate, for CUDA graphs)."""
        if self.device.type == "cuda":
            lr_t = torch.tensor(lr, device=self.device)
            return torch.optim.AdamW([{"params": list(params), "lr": lr_t}], lr=lr_t, weight_decay=weight_decay,
                                     capturable=True, fused=True)
        return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay, fused=True)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "behaviour": self.behaviour, "actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_opt, "behaviour": self.behaviour_opt, "actor": self.actor_opt}

    # -- staging (a function of the step count and the run's length) ------------------------------
    @property
    def pretrain_end(self) -> int:
        """Updates that pre-train the behaviour model and the critic before the policy trains alone; 0: no
        staging, all three train every update."""
        c = self.config
        if c.pretrain_steps > 0:
            return c.pretrain_steps
        return round(c.pretrain_fraction * self.horizon) if self.horizon else 0

    @property
    def phase(self) -> str:
        """``pretrain`` (behaviour model and critic), ``policy`` (the policy; the others frozen) or ``joint``."""
        end = self.pretrain_end
        if end == 0:
            return "joint"
        return "pretrain" if self.step < end else "policy"

    def graph_key(self) -> Hashable:
        return self.phase

    def actor_lr_now(self) -> float:
        """The policy's learning rate for the next update: a cosine from ``actor_lr`` to 0 over T updates of
        its phase (CosineAnnealingLR stepped after each policy update, SRPO.py L16, L60)."""
        c = self.config
        if c.actor_lr_schedule == "constant":
            return c.actor_lr
        return self.cosine_lr(c.actor_lr, c.actor_lr_decay_steps, self.pretrain_end)

    def advance(self) -> None:
        super().advance()
        self.set_lr(self.actor_opt, self.actor_lr_now())

    # -- losses ---------------------------------------------------------------------------------
    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs))

    def behaviour_loss(self, batch: Batch) -> torch.Tensor:
        """L_ε ``[S]`` at t ~ U(0.001, 1) and z ~ N(0, I) drawn per transition, with dropout (SRPO.py L84–89)."""
        actions = batch.actions
        t = self.rng.rand(actions.shape[1:-1], dtype=actions.dtype) * (1.0 - 1e-3) + 1e-3
        z = self.rng.randn(actions.shape[1:], dtype=actions.dtype)
        return self.denoising_objective(batch.obs, actions, t, z, self.rng)

    def denoising_objective(self, obs: torch.Tensor, actions: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
                            rng: SeedRandom | None = None) -> torch.Tensor:
        """mean_B Σ_d (ε_ψ(α_t a + σ_t z, t, s) − z)² ``[S]`` at given ``t`` ``[S, B]`` and ``z``; dropout from
        ``rng`` (None: none)."""
        alpha, sigma = vp_marginal(t)
        eps = self.behaviour(obs, actions * alpha[..., None] + z * sigma[..., None], t, rng)
        return seed_mean(((eps - z) ** 2).sum(-1))

    def q_gradient(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ĝ = ∇ₐ of the target critic's mean of heads at ``actions``, normalised per sample to unit RMS with
        ``normalize_q_grad``; that Q ``[S, B]``), SRPO.py L45–54."""
        with torch.enable_grad():
            a = actions.detach().requires_grad_(True)
            q = self.critic.target_q(obs, a).mean(1)
            (grad,) = torch.autograd.grad(q.sum(), a)
        if self.config.normalize_q_grad:
            grad = grad / grad.pow(2).mean(-1, keepdim=True).sqrt()
        return grad, q.detach()

    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_π ``[S]``, the target critic's Q at μ(s) ``[S, B]``) at t ~ U(0.02, 0.98) and z ~ N(0, I) drawn
        per state (SRPO.py L28–31)."""
        actions = self.policy(obs)
        t = self.rng.rand(actions.shape[1:-1], dtype=actions.dtype) * 0.96 + 0.02
        z = self.rng.randn(actions.shape[1:], dtype=actions.dtype)
        return self.policy_objective(obs, actions, t, z)

    def policy_objective(self, obs: torch.Tensor, actions: torch.Tensor, t: torch.Tensor, z: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """mean_B [ω(t) Σ_d sg(ε_ψ(α_t a + σ_t z, t, s)) a − β Σ_d sg(ĝ) a] ``[S]`` for the policy's
        ``actions`` a = μ(s) at given ``t`` ``[S, B]`` and ``z`` (SRPO.py L29–56), and Q at a."""
        c = self.config
        alpha, sigma = vp_marginal(t)
        with torch.no_grad():  # the behaviour model is read in eval mode: no dropout (SRPO.py L27, L33–36)
            eps = self.behaviour(obs, actions * alpha[..., None] + z * sigma[..., None], t)
            if c.subtract_noise:
                eps = eps - z
        weight = score_weight(c.weighting, alpha, sigma)
        grad, q = self.q_gradient(obs, actions)
        per_state = (eps * actions).sum(-1) * weight - c.beta * (grad * actions).sum(-1)
        return seed_mean(per_state), q

    def critic_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_V, L_Q, Q(s, a)) ``[S]``, ``[S]``, ``[S, 2, B]``; L_Q is the mean of the heads' MSEs (SRPO.py L178)."""
        value_loss, q_loss, q = self.critic.losses(batch)
        return value_loss, q_loss / 2.0, q

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.actor_opt, self.actor_loss(batch.obs)[0])

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        phase = self.phase
        metrics = {k: torch.zeros(self.num_seeds, device=self.device, dtype=batch.obs.dtype)
                   for k in ("value_loss", "critic_loss", "behaviour_loss", "actor_loss", "q_mean", "policy_q")}
        if phase != "policy":
            value_loss, critic_loss, q = self.critic_losses(batch)
            self.minimize(self.critic_opt, value_loss + critic_loss)
            self.critic.update_target(self.config.tau)  # toward the critic after its step (SRPO.py L187)
            behaviour_loss = self.minimize(self.behaviour_opt, self.behaviour_loss(batch))
            metrics.update(value_loss=value_loss.detach(), critic_loss=critic_loss.detach(),
                           behaviour_loss=behaviour_loss, q_mean=seed_mean(q).detach())
        if phase != "pretrain":
            actor_loss, policy_q = self.actor_loss(batch.obs)
            metrics.update(actor_loss=self.minimize(self.actor_opt, actor_loss), policy_q=seed_mean(policy_q))
        return metrics

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return self.policy(obs)
