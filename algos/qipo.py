"""QIPO: energy-weighted flow matching (Zhang, Zhang, Gu, ICLR 2025), variants OT flow and VP diffusion.

Paper: "Energy-Weighted Flow Matching for Offline Reinforcement Learning". Registered twice:
``qipo`` (QIPO-OT, the linear flow path) and ``qipo_diff`` (QIPO-Diff, VP diffusion).

The policy is fitted to π_{l+1}(a|s) ∝ π_l(a|s)·exp(β Q(s, a)) by a weighted regression over a
*support set* of candidate actions per state: the dataset action plus M actions sampled from a frozen
snapshot π_l of the policy. With a_0 = the dataset action and a_1 … a_M ~ π_l(·|s),
    w_j = softmax_j(β Q(s, a_j))          (over the M + 1 candidates of each state; Σ_j w_j = 1)
    QIPO-OT:   L = E_s Σ_j w_j · mean ‖v_θ(s, x_t, t) − (a_j − x₀)‖²,  x_t = (1 − t) x₀ + t a_j
    QIPO-Diff: L = E_s Σ_j w_j · mean ‖ε_θ(s, √ᾱ_k a_j + √(1 − ᾱ_k) ε, k) − ε‖²
The snapshot is renewed every K_renew steps, so each renewal raises the effective guidance
(π_L ∝ π_0·exp(L β Q)). Phases: K₁ steps of flow BC on the data, then K₂ steps of critic warm-up
(the policy waits), then policy improvement with the critic still learning.
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, losses ``[S]``; every
seed is in the same phase (the phases follow the shared step count).

No official code was found; every choice is recorded in the config docstring.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Hashable, Literal

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.critics import InSampleCritic
from algos.kit.diffusion import NoisePredictor, VPSchedule, ddpm_sample, denoising_loss
from algos.kit.flows import VelocityField, euler_sample, flow_matching_loss
from algos.kit.presets import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, FQLCodeConfig
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean


@dataclass
class QIPOConfig(FQLCodeConfig):
    """QIPO. Choices (the paper's code was not available):
    - critic: IQL's in-sample expectile critic (τ = 0.7, twin Q, min over target heads for the
      weights), so the critic never needs policy samples and is the same one FlowQ uses;
    - M = 16 support samples per state (QGPO's support-set size), β = 3 on raw Q values
      (``q_normalization="none"``). β is ``energy_scale``, as FlowQ's λ: the weights are exp(β Q)
      normalised, so β is the inverse temperature of π ∝ π_l exp(β Q) (not a temperature T of exp(Q/T)).
      softmax(β·Q) on raw Q turns one-hot wherever Q differs across a
      support set by much more than 1/β, which tasks with large returns do; ``"support"`` standardises
      Q over each state's support set first, (Q − mean_j Q)/(std_j Q + 1e-6), so β counts standard
      deviations of the candidates' values and the weights do not depend on the reward scale;
    - K₁ = K₂ = 100k warm-up steps and K_renew = 100k for a 1M-step run (the ``cpu`` profile
      shortens them to 1000 for short CPU runs);
    - the snapshot samples with the same K steps as acting;
    - networks and optimiser as in the FQL comparisons (4×512 GELU, LayerNorm critics, Adam 3e-4).
    ``path``: ``ot`` (QIPO-OT, K Euler steps) or ``vp`` (QIPO-Diff, K DDPM steps, Diffusion-QL's
    VP schedule)."""

    path: Literal["ot", "vp"] = "ot"
    energy_scale: float = 3.0  # β in w ∝ exp(β Q), the inverse temperature of π ∝ π_l exp(β Q)
    q_normalization: Literal["none", "support"] = "none"  # none: raw Q | support: Q standardised over each state's support set
    num_support: int = 16  # M policy samples per state, next to the dataset action
    bc_warmup_steps: int = 100_000  # K₁
    critic_warmup_steps: int = 100_000  # K₂
    renew_every: int = 100_000  # K_renew
    sampling_steps: int = 10  # K: Euler steps (ot) or DDPM denoising steps (vp)
    expectile: float = 0.7
    value_lr: float = 3e-4


@dataclass
class QIPODiffConfig(QIPOConfig):
    """QIPO-Diff: QIPO with a VP diffusion policy (ε-prediction, weighted denoising loss) on
    Diffusion-QL's schedule and network, with K = 10 denoising steps: with Diffusion-QL's K = 5 the
    last reverse step starts from noise of std 0.44, whose posterior mean lands between the toy's modes
    (measurements: results/toy/tuning.md, "QIPO-Diff")."""

    path: Literal["ot", "vp"] = "vp"
    sampling_steps: int = 10


# cpu: 2×128 networks and M = 4 (sampling the support set is most of the update's cost), and phases
# short enough for runs of a few thousand steps.
CPU_PROFILE = {"actor_hidden_dims": (128, 128), "value_hidden_dims": (128, 128), "num_support": 4,
               "bc_warmup_steps": 1000, "critic_warmup_steps": 500, "renew_every": 500}


@register
class QIPO(Agent):
    name = "qipo"
    config_class = QIPOConfig
    policy_update_parts = ("policy",)
    profiles = {"cpu": CPU_PROFILE}
    # antmaze: IQL's expectile for its in-sample critic; the FQL code's rewards and discounts
    presets = (*FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS, ("D4RL/antmaze/*", {"expectile": 0.9}), ("toy/*", {"actor_lr": 1e-3, "critic_lr": 1e-3, "value_lr": 1e-3}))

    def __init__(self, obs_dim: int, act_dim: int, config: QIPOConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = InSampleCritic(obs_dim, act_dim, c.value_hidden_dims, c.critic_layer_norm, c.activation,
                                     c.expectile, c.discount, seeds=s).to(self.device)
        if c.path == "ot":
            self.policy = VelocityField(obs_dim, act_dim, c.actor_hidden_dims, c.activation, seeds=s).to(self.device)
        else:
            self.schedule = VPSchedule(c.sampling_steps, self.device)
            self.policy = NoisePredictor(obs_dim, act_dim, c.actor_hidden_dims, c.activation, seeds=s).to(self.device)
        self.snapshot = copy.deepcopy(self.policy).requires_grad_(False)
        self.policy_opt = self.adam(self.policy.parameters(), c.actor_lr)
        self.critic_opt = self.adam(self.critic.param_groups(c.critic_lr, c.value_lr))
        # The "renewals" metric on the device: incremented in place by the renewing step, so that a
        # replayed (CUDA-graph) step reports it correctly. It mirrors ``renewals`` (derived from step).
        self.renewal_count = torch.zeros(s, device=self.device)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "policy": self.policy, "snapshot": self.snapshot}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.policy_opt, "critic": self.critic_opt}

    def load_extra_state(self, state: dict) -> None:
        # ``renewals`` follows from the step (restored before this); older checkpoints also stored it.
        self.renewal_count.fill_(self.renewals)

    # -- phases (functions of the step count) -----------------------------------------------------
    @property
    def improvement_start(self) -> int:
        return self.config.bc_warmup_steps + self.config.critic_warmup_steps

    @property
    def phase(self) -> str:
        """What the next update trains: ``bc`` (flow BC on the data, no critic), ``critic`` (critic
        warm-up, the policy waits) or ``improve`` (critic and energy-weighted policy)."""
        if self.step < self.config.bc_warmup_steps:
            return "bc"
        return "critic" if self.step < self.improvement_start else "improve"

    @property
    def renews_snapshot(self) -> bool:
        """Whether the next update first copies the policy into the snapshot (every K_renew steps of
        the improvement phase, starting with its first)."""
        return self.phase == "improve" and (self.step - self.improvement_start) % self.config.renew_every == 0

    @property
    def renewals(self) -> int:
        """Snapshot renewals so far (in the updates before ``step``)."""
        done = self.step - self.improvement_start
        return 0 if done <= 0 else (done - 1) // self.config.renew_every + 1

    def graph_key(self) -> Hashable:
        return self.phase, self.renews_snapshot

    # -- pieces --------------------------------------------------------------------------------
    def sample(self, model: torch.nn.Module, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        """Actions ``[S, N, act_dim]`` from ``model`` (the policy or its snapshot) for ``obs``
        ``[S, N, obs_dim]``: K Euler or K DDPM steps, clipped."""
        noise = rng.randn((obs.shape[1], self.act_dim), dtype=obs.dtype)
        if self.config.path == "ot":
            return euler_sample(model, obs, noise, self.config.sampling_steps)
        return ddpm_sample(model, self.schedule, obs, noise, rng)

    def policy_loss(self, obs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The (optionally ``[S, B]``-weighted) flow matching or denoising loss, ``[S]``."""
        if self.config.path == "ot":
            return flow_matching_loss(self.policy, obs, actions, self.rng, weights)
        return denoising_loss(self.policy, self.schedule, obs, actions, self.rng, weights)

    @torch.no_grad()
    def support_set(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[S, B, M + 1, act_dim]``: the dataset action first, then M samples from the snapshot."""
        s, b, m = obs.shape[0], obs.shape[1], self.config.num_support
        samples = self.sample(self.snapshot, obs.repeat_interleave(m, dim=1), self.rng)
        return torch.cat([actions[:, :, None], samples.reshape(s, b, m, self.act_dim)], dim=2)

    @torch.no_grad()
    def support_weights(self, obs: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """``[S, B, M + 1]``: softmax over each state's candidates of β·min_i Q_φ̄ᵢ(s, a_j) (Q standardised
        over the candidates with ``q_normalization="support"``)."""
        s, b, n, _ = support.shape
        q = self.critic.target_q(obs.repeat_interleave(n, dim=1), support.reshape(s, b * n, -1)).min(1).values
        q = q.reshape(s, b, n)
        if self.config.q_normalization == "support":
            q = (q - q.mean(-1, keepdim=True)) / (q.std(-1, keepdim=True) + 1e-6)
        return torch.softmax(self.config.energy_scale * q, dim=-1)

    def improvement_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The energy-weighted loss ``[S]`` over each state's support set, and the weights ``[S, B, M + 1]``."""
        support = self.support_set(batch.obs, batch.actions)
        weights = self.support_weights(batch.obs, support)
        s, n = support.shape[0], support.shape[2]
        # Σ_j w_j ‖·‖² per state, averaged over states: the mean over B·n rows, times n.
        loss = self.policy_loss(batch.obs.repeat_interleave(n, dim=1), support.reshape(s, -1, self.act_dim),
                                weights.reshape(s, -1) * n)
        return loss, weights

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        """An improvement-phase policy step (support set from the snapshot, weights, weighted loss);
        the snapshot is not renewed (a parameter copy every K_renew steps, negligible in time)."""
        return self.minimize(self.policy_opt, self.improvement_loss(batch)[0])

    def renew_snapshot(self) -> None:
        """π_l ← π_θ, in place."""
        self.snapshot.load_state_dict(self.policy.state_dict())
        self.renewal_count.add_(1)

    # -- update --------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        phase = self.phase
        metrics = {k: torch.zeros(self.num_seeds, device=self.device, dtype=batch.obs.dtype)
                   for k in ("value_loss", "critic_loss", "policy_loss", "q_mean", "weight_on_data", "weight_max")}

        if phase != "bc":
            value_loss, critic_loss, q = self.critic.losses(batch)
            self.critic.update_target(c.tau)  # toward the pre-step critic, as the FQL code
            self.minimize(self.critic_opt, value_loss + critic_loss)
            metrics.update(value_loss=value_loss.detach(), critic_loss=critic_loss.detach(),
                           q_mean=seed_mean(q).detach())

        if phase == "bc":
            metrics["policy_loss"] = self.minimize(self.policy_opt, self.policy_loss(batch.obs, batch.actions))
        elif phase == "improve":
            if self.renews_snapshot:
                self.renew_snapshot()
            policy_loss, weights = self.improvement_loss(batch)
            metrics.update(weight_on_data=seed_mean(weights[..., 0]), weight_max=seed_mean(weights.max(-1).values))
            metrics["policy_loss"] = self.minimize(self.policy_opt, policy_loss)

        metrics["renewals"] = self.renewal_count.clone()
        return metrics

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return self.sample(self.policy, obs, rng)


@register
class QIPODiff(QIPO):
    """QIPO-Diff (Zhang, Zhang, Gu, ICLR 2025): QIPO's energy-weighted regression on a VP diffusion policy —
    softmax(βQ) weights over a support set on the DDPM denoising loss instead of the flow-matching loss."""

    name = "qipo_diff"
    config_class = QIPODiffConfig
