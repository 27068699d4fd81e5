"""Score-Regularized Policy Optimization (SRPO; Chen, Lu, Wang, Zhu, ICLR 2024, arXiv 2310.07297).

A deterministic policy μ_θ(s) maximises Q while a diffusion model of the behaviour policy regularises it
through its score alone — the diffusion model is never sampled, neither in training nor when acting:
    max_θ E_s[ Q(s, μ_θ(s)) ] − α · KL(μ_θ(·|s) ‖ π_β(·|s)),
with the KL's gradient estimated from the behaviour model's noise predictor ε_ψ (the paper's Eq. 9):
    ∇_θ KL ≈ E_{k, ε}[ ω_k √ᾱ_k (ε_ψ(s, a_k, k) − ε) ] ∂μ_θ/∂θ,   a_k = √ᾱ_k μ_θ(s) + √(1 − ᾱ_k) ε.
flowbench writes it as the surrogate L_score = mean_B mean_d [ω_k · sg(ε_ψ(s, a_k, k) − ε) · a_k], whose
gradient is exactly that; ω_k = 1 − ᾱ_k (σ², the paper's choice that makes the estimate's variance
even across noise levels). Networks and losses:
- critic:    IQL's in-sample critic (``InSampleCritic``: expectile V, twin Q), as SRPO;
- behaviour: DDPM denoising loss L_ε (``algos.diffusion``);
- actor:     L_π = −mean Q(s, μ(s)) (÷ sg(mean|Q|) if ``normalize_q_loss``) + α · L_score, Q = min of the heads.
One optimiser step on L_V + L_Q + L_ε + L_π per update (the critic and the behaviour model get no
gradient from L_π). Acting: μ_θ(s), already in [-1, 1] (tanh).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.base import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, Agent, AgentConfig, Batch, register
from algos.diffusion import NoisePredictor, VPSchedule, denoising_loss
from algos.iql import InSampleCritic
from algos.networks import Activation, MLP, frozen_call
from algos.seeds import SeedRandom, seed_mean


@dataclass
class SRPOConfig(AgentConfig):
    """SRPO with the FQL code's shared settings (4×512 GELU MLPs, LayerNorm critics, Adam 3e-4, batch
    256, γ 0.99, τ 0.005) and its in-sample critic's expectile 0.9; a DDPM behaviour model with K = 5 noise
    levels (the score is read at K levels; nothing is ever sampled, so K does not change the cost). The
    FQL paper's per-task SRPO values were not reachable from here: α = 1 (the KL weight, 1/β in the
    SRPO paper) with a normalised Q term, chosen here; retune with ``--set alpha=``."""

    alpha: float = 1.0  # weight of the score (KL) regulariser against the Q term
    normalize_q_loss: bool = True
    expectile: float = 0.9
    sampling_steps: int = 5  # K, the behaviour model's DDPM steps (noise levels; never sampled here)
    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    critic_layer_norm: bool = True
    activation: Activation = "gelu"
    actor_lr: float = 3e-4  # the behaviour model's and the policy's
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    batch_size: int = 256


@register
class SRPO(Agent):
    name = "srpo"
    config_class = SRPOConfig
    steps_field = "sampling_steps"
    policy_update_parts = ("actor",)
    profiles = {"cpu": {"actor_hidden_dims": (256, 256), "value_hidden_dims": (256, 256)}}
    presets = (
        *FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS,
        # Tuned here on local/pointmaze/umaze-v0 (3 seeds): α 1 left the data (0 / 0 / 0 at 2.5k); α 10 scored
        # 31.7 ± 1.2 at 10k (results/pointmaze/umaze.md).
        ("local/pointmaze/*", {"alpha": 10.0}),
        # flowbench's toy: lr 1e-3, as the other toy presets. At 3e-4, 3000 updates leave 36 % of the actions
        # off the discs (seed 0: 28.0); at 1e-3 seed 0 scores 100. Other seeds still leave 19–25 % just under
        # the better disc, on the critic's overshoot (8 GPU seeds 49–100; results/toy/tuning.md).
        ("toy/*", {"actor_lr": 1e-3, "critic_lr": 1e-3, "value_lr": 1e-3}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: SRPOConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = InSampleCritic(obs_dim, act_dim, c.value_hidden_dims, c.critic_layer_norm, c.activation,
                                     c.expectile, c.discount, seeds=s).to(self.device)
        self.behaviour = NoisePredictor(obs_dim, act_dim, c.actor_hidden_dims, c.activation, seeds=s).to(self.device)
        self.actor = MLP(obs_dim, c.actor_hidden_dims, act_dim, c.activation, seeds=s).to(self.device)
        self.schedule = VPSchedule(c.sampling_steps, self.device)
        self.opt = self.adam([*self.critic.param_groups(c.critic_lr, c.value_lr),
                              ([*self.behaviour.parameters(), *self.actor.parameters()], c.actor_lr)])

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "behaviour": self.behaviour, "actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"all": self.opt}

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs))

    def score_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """L_score ``[S]``: its gradient in ``actions`` is mean ω_k √ᾱ_k (ε_ψ(s, a_k, k) − ε) (per element ÷ B·d)."""
        k = self.rng.randint(self.schedule.steps, actions.shape[1:-1])
        noise = self.rng.randn(actions.shape[1:], dtype=actions.dtype)
        noised = self.schedule.noised(actions, k, noise)
        with torch.no_grad():  # the residual is a constant: only a_k in the product carries gradient
            residual = self.behaviour(obs, noised, k) - noise
        weight = (1.0 - self.schedule.alphas_cumprod[k])[..., None]
        return seed_mean(weight * residual * noised)

    def actor_loss(self, batch: Batch) -> torch.Tensor:
        actions = self.policy(batch.obs)
        q = frozen_call(self.critic.q, batch.obs, actions).min(1).values
        q_loss = -seed_mean(q)
        if self.config.normalize_q_loss:
            q_loss = q_loss / seed_mean(q.abs()).detach()
        return q_loss + self.config.alpha * self.score_loss(batch.obs, actions)

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.opt, self.actor_loss(batch))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        value_loss, critic_loss, q = self.critic.losses(batch)
        behaviour_loss = denoising_loss(self.behaviour, self.schedule, batch.obs, batch.actions, self.rng)
        actor_loss = self.actor_loss(batch)
        self.critic.update_target(self.config.tau)  # toward the pre-step critic, as the FQL code
        self.minimize(self.opt, value_loss + critic_loss + behaviour_loss + actor_loss)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "behaviour_loss": behaviour_loss.detach(), "actor_loss": actor_loss.detach(),
                "q_mean": seed_mean(q).detach()}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return self.policy(obs)
