"""FlowQ: energy-guided flow matching (Alles, Chen, van der Smagt, Cseke 2025, arXiv 2505.14139).

Target policy π̂(a|s) ∝ π_β(a|s)·exp(λ Q(s, a)), learned by regressing a velocity field onto the
velocity of an *energy-guided* conditional path approximated by a Gaussian. Training is
simulation-free: the policy update never integrates the flow, so its cost does not grow with the
number of sampling steps K.

The paper's full text was not available when this was written; the equations below are flowbench's
reading of it (shared/DESIGN.md §3), and what the tests pin down is its behaviour on the bimodal toy
(mass moves to the better mode and stays in the support) and the consistency of the path maths.

- Critic (in-sample, IQL): L_V = E[|τ − 1(u < 0)| u²], u = min_i Q_φ̄ᵢ(s, a) − V(s);
  L_Q = Σ_i E[(r + γ m V(s′) − Q_φᵢ(s, a))²]. No action is ever sampled from the policy in training.
- Guided Gaussian path, conditional on a data action a₁ and a (stop-gradient) direction ĝ:
      mean  μ_t = t·a₁ + λ·Λ(t)·ĝ,   std σ_t = 1 − t,   Λ(t) = ∫₀ᵗ h(u)·(1 − u)² du,
  so x = μ_t + σ_t·a₀ moves with velocity u_t = dμ_t/dt + (dσ_t/dt)·a₀ = a₁ − a₀ + λ·h(t)·σ_t²·ĝ.
  h is the energy schedule λ(t) = λ·h(t): ``t``, ``t2`` (t²) or ``t2_over_1mt`` (t²/(1 − t)); the
  guidance weight h(t)(1 − t)² vanishes at both ends.
- Direction: ĝ = sg ∇ₐ Q(s, â₁) / ḡ, ḡ = the batch mean of ‖∇ₐ Q‖ per seed (``guidance_norm="batch"``)
  or 1 (``"none"``), taken at the flow's own estimate of the
  endpoint â₁ = clip(x_t + (1 − t)·v_θ(s, x_t, t)) (Q averaged over the twin heads). Taken at the data
  action instead, it says nothing — Q is flat on the data — and the toy stays at imitation.
- Loss: L_flow = mean ‖v_θ(s, x_t, t) − u_t‖² with x_t = t·a₁ + (1 − t)·a₀ on the ordinary path (the
  guidance enters the target, not the sample, because ĝ itself depends on x_t). The same forward
  pass gives â₁ (detached), so the update costs two critic passes and one flow pass whatever K is.
- Acting: K Euler steps from N(0, I), clipped to [-1, 1]; optionally the best of N candidates by min Q.

What the target is, exactly. With ``guidance_norm="none"``, the added velocity λ·h(t)·σ_t²·∇ₐQ is a
first-order (Laplace) approximation, with the posterior covariance taken as σ_t²·I, of the path tilted
by exp(λ·h(t)·Q): at t → 1 that is π̂ ∝ π_β·exp(λ·h(1)·Q), and for h = t the temperature is λ. With
``"batch"`` (the default) ∇ₐQ is divided by ḡ, so the tilt is exp(λ·h(t)·Q/ḡ): the effective temperature
λ/ḡ moves as the critic's gradient scale changes in training, and λ reads as a displacement in action
units (at most λ·Λ(1)) whatever the reward scale — which is why it is the default.

Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, losses ``[S]``.

A learnable schedule h_θ is not offered: every objective for it that we could write down needs
samples of the final policy, i.e. integrating the flow during training, which is what FlowQ avoids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from algos.kit.agent import Batch
from algos.kit.flow_agents import InSampleFlowAgent
from algos.kit.flows import best_of_n_flow_actions, linear_path, sample_noise_and_time
from algos.kit.presets import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, FQLCodeConfig, cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, per_seed, seed_mean

SCHEDULES = ("t", "t2", "t2_over_1mt")


def schedule_weight(t: torch.Tensor, schedule: str) -> torch.Tensor:
    """h(t), the shape of the energy scale λ(t) = λ·h(t)."""
    if schedule == "t":
        return t
    if schedule == "t2":
        return t**2
    if schedule == "t2_over_1mt":
        return t**2 / (1.0 - t).clamp(min=1e-6)
    raise ValueError(f"unknown energy schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def guided_path_std(t: torch.Tensor) -> torch.Tensor:
    """σ_t = 1 − t."""
    return 1.0 - t


def guided_velocity(a0: torch.Tensor, a1: torch.Tensor, direction: torch.Tensor, t: torch.Tensor, lam: float,
                    schedule: str) -> torch.Tensor:
    """u_t = dμ_t/dt + dσ_t/dt·a₀ = a₁ − a₀ + λ·h(t)·σ_t²·ĝ, the regression target."""
    return a1 - a0 + lam * schedule_weight(t, schedule) * guided_path_std(t) ** 2 * direction


@dataclass
class FlowQConfig(FQLCodeConfig):
    """FlowQ. Networks, optimiser and critic follow the FQL/IQL conventions this harness compares
    under (4×512 GELU MLPs, LayerNorm critics, Adam 3e-4, batch 256, expectile 0.7, γ = 0.99,
    τ = 0.005); the paper's per-task λ were not available. λ is in units of the batch-normalised
    gradient, so the largest total displacement of an action is λ·Λ(1) (Λ(1) = 1/12 for h = t and
    t²/(1 − t), 1/30 for t²). Default λ = 4, at most ≈ 0.33 in action units for h = t: the best of
    λ ∈ {4, 8, 32} on PointMaze umaze (measurements: results/pointmaze/umaze.md, "Tuning notes").
    ``num_candidates`` > 1 turns on best-of-N acting by min Q (off by default)."""

    energy_scale: float = 4.0  # λ, the inverse temperature of the target π ∝ π_β exp(λ Q)
    schedule: Literal["t", "t2", "t2_over_1mt"] = "t"  # h(t)
    guidance_norm: Literal["batch", "none"] = "batch"  # batch: ∇Q over its batch-mean norm | none: raw ∇Q (λ is the temperature)
    sampling_steps: int = 10  # K, Euler steps at acting time only
    num_candidates: int = 1  # N flow samples per state when acting, the best by min Q taken
    expectile: float = 0.7
    actor_layer_norm: bool = False
    value_lr: float = 3e-4


@register
class FlowQ(InSampleFlowAgent):
    name = "flowq"
    config_class = FlowQConfig
    policy_update_parts = ("flow",)
    # cpu: 2×128 networks (about twice the speed of 2×256 on one core; enough for PointMaze; the toy
    # figure's FlowQ panels use a 3×256 velocity field, see harness/toy_figure.py).
    profiles = {"cpu": cpu_networks(128)}
    presets = (
        # antmaze: IQL's expectile for its in-sample critic; the FQL code's rewards and discounts
        *FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS, ("D4RL/antmaze/*", {"expectile": 0.9}),
        # The toy's modes are 1.0 apart, so λ must move an action that far; its flow fits a target that moves
        # with its own endpoint estimate, too slowly at 3e-4 for the toy's short runs (measurements:
        # results/toy/tuning.md, "FlowQ").
        ("toy/*", {"energy_scale": 32.0, "actor_lr": 1e-3, "critic_lr": 1e-3, "value_lr": 1e-3}),
    )

    def q_direction(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """ĝ ``[S, B, act_dim]``: ∇ₐ of the mean twin Q at ``actions``, divided by each seed's batch-mean
        gradient norm with ``guidance_norm="batch"`` (no graph kept)."""
        actions = actions.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic.q(obs, actions).mean(1).sum(), actions)
        if self.config.guidance_norm == "none":
            return grad
        return grad / per_seed(seed_mean(grad.norm(dim=-1)).clamp(min=1e-6), grad)

    def flow_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy-guided flow matching loss and the mean guidance norm, each ``[S]``; no flow sampling."""
        c = self.config
        a0, t = sample_noise_and_time(actions, self.rng)
        x_t, _ = linear_path(a0, actions, t)
        velocity = self.flow(obs, x_t, t)
        endpoint = (x_t + (1.0 - t) * velocity.detach()).clamp(-1.0, 1.0)
        direction = self.q_direction(obs, endpoint)
        target = guided_velocity(a0, actions, direction, t, c.energy_scale, c.schedule)
        guidance = seed_mean((target - (actions - a0)).norm(dim=-1))
        return seed_mean((velocity - target) ** 2), guidance

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.opt, self.flow_loss(batch.obs, batch.actions)[0])

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        value_loss, critic_loss, q = self.critic.losses(batch)
        flow_loss, guidance = self.flow_loss(batch.obs, batch.actions)
        self.critic.update_target(self.config.tau)  # toward the pre-step critic, as the FQL code
        self.minimize(self.opt, value_loss + critic_loss + flow_loss)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "flow_loss": flow_loss.detach(), "guidance_norm": guidance.detach(), "q_mean": seed_mean(q).detach()}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return best_of_n_flow_actions(self.flow, lambda o, a: self.critic.q(o, a).min(1).values, obs,
                                      self.config.num_candidates, self.config.sampling_steps, rng)
