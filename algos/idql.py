"""Implicit Diffusion Q-Learning (IDQL; Hansen-Estruch, Kostrikov, Janner, Kuba, Levine 2023, arXiv 2304.10573).

As the authors' code computes it (philippe-eecs/IDQL, jaxrl5/agents/ddpm_iql/ddpm_iql_learner.py, "ddpm_iql.py"
below; jaxrl5/networks/diffusion.py, resnet.py; launcher/examples/train_ddpm_iql_offline.py, "launcher"):
IQL's in-sample critic next to a DDPM behaviour model trained by plain denoising; the policy is improved
only at acting time, by choosing among behaviour samples.
- behaviour: L_ε = E[ Σ_d (ε_θ(s, x_k, k) − ε)² ], k ~ U{0 … K−1} (ddpm_iql.py L290–343; dropout on),
             AdamW (weight decay 1e-4) with the learning rate decaying by a cosine over the run (L125–126,
             L163); an EMA copy θ̄ ← (1 − 0.001) θ̄ + 0.001 θ after each step (L350–354);
- value:     L_V = E[ |τ − 1(u < 0)| u² ], u = min_i Q_φ̄ᵢ(s, a) − V(s), the target critic (L230–257);
- critic:    L_Q = mean over heads and batch of (r + γ m V(s′) − Q_φᵢ(s, a))², V just updated (L259–280);
             then φ̄ ← (1 − τ) φ̄ + τ φ with the new φ (L282–285). One update = behaviour, value, critic,
             in that order, each its own optimiser step (L464–471);
- acting:    N = 64 candidates from the EMA behaviour model (K = 5 reverse steps, x clipped to [-1, 1] after
             every step), the one with the largest min_i Q_φ̄ᵢ(s, a) of the target critic (``eval_actions``,
             L360–375). ``action_selection`` keeps two other readings: the paper's importance resampling by
             the expectile critic's implicit policy w = |τ − 1(Q < V)| / |Q − V| (its Eq. 7), and the code's
             ``sample_implicit_policy`` (L377–409), which resamples by |τ − 1(Q < V)| alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig, ConfigError
from algos.kit.critics import InSampleCritic
from algos.kit.diffusion import ResidualNoisePredictor, VPSchedule, ddpm_sample
from algos.kit.networks import Activation, soft_update
from algos.kit.presets import FQL_CODE_OGBENCH_DISCOUNTS
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean

WEIGHT_EPS = 1e-6  # keeps w finite where Q = V exactly


@dataclass
class IDQLConfig(AgentConfig):
    """IDQL with the authors' offline settings (launcher/examples/train_ddpm_iql_offline.py L28–47 and
    ``DDPMIQLLearner.create`` defaults, ddpm_iql.py L77–108): the ``ln_resnet`` noise network (3 blocks,
    width 256, LayerNorm, dropout 0.1, mish), T = 5 VP steps, N = 64, EMA 0.001, 2×256 ReLU critics without
    LayerNorm, Adam 3e-4, γ 0.99, τ 0.005, batch 512, expectile 0.7 (antmaze 0.9: presets).

    The launcher at the repository's last commit names no ``actor_architecture`` (so ``create`` would build
    its 'mlp' default) and passes a ``value_layer_norm`` that ``create`` does not accept; the README, the
    paper and the launcher before that commit (ed59863: ``actor_architecture='ln_resnet'``) use the
    residual network, and the critics are built without LayerNorm (L170). Those are the defaults here."""

    expectile: float = 0.7  # launcher L79–82: 0.9 on antmaze, 0.7 elsewhere (ddpm_iql.py L90)
    num_candidates: int = 64  # N, behaviour samples per state when acting (launcher L29, L38; the paper: 16/64/256)
    sampling_steps: int = 5  # T (launcher L37), VP schedule (L46; diffusion.py vp_beta_schedule L25–32)
    # argmax_q: the code's eval_actions | expectile_resample: the paper's w = |τ − 1(Q<V)|/|Q − V| |
    # tau_resample: the code's sample_implicit_policy, w = |τ − 1(Q<V)|
    action_selection: Literal["argmax_q", "expectile_resample", "tau_resample"] = "argmax_q"  # see above
    candidate_critic: Literal["target", "online"] = "target"  # whose Q ranks the candidates (ddpm_iql.py L370: target)
    act_with_ema: bool = True  # draw candidates from the EMA behaviour model (ddpm_iql.py L367)
    ema_decay: float = 0.999  # behaviour EMA θ̄ ← decay·θ̄ + (1 − decay)·θ (actor_tau 0.001, launcher L45)
    clip_every_step: bool = True  # clip x to [-1, 1] after every reverse step (clip_sampler, launcher L30)
    discount: float = 0.99
    tau: float = 0.005
    # one entry per residual block of the noise network, all one width (3 blocks: launcher L41; 256: resnet.py L37)
    actor_hidden_dims: tuple[int, ...] = (256, 256, 256)  # residual blocks of the noise network (one width)
    actor_dropout: float = 0.1  # dropout in each residual block while training (launcher L40)
    actor_layer_norm: bool = True  # LayerNorm in each residual block (launcher L43)
    actor_activation: Activation = "mish"  # the noise network's activation (ddpm_iql.py L146)
    time_dim: int = 64  # learnable Fourier features of the step (ddpm_iql.py L100, L116–118)
    value_hidden_dims: tuple[int, ...] = (256, 256)  # ddpm_iql.py L86
    critic_layer_norm: bool = False  # ddpm_iql.py L170: the critics' MLP has no LayerNorm
    activation: Activation = "relu"  # the critic's and value's (jaxrl5 MLP default, mlp.py L26)
    actor_lr: float = 3e-4  # the behaviour model's (launcher L34)
    # ddpm_iql.py L125–126, decay_steps = max_steps (launcher L17, L42)
    actor_lr_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: to 0 over the run | constant
    actor_lr_decay_steps: int = 0  # T of the cosine decay; 0 = the run's length
    actor_weight_decay: float = 1e-4  # AdamW's weight decay on the behaviour model (optax default, ddpm_iql.py L163)
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    batch_size: int = 512  # launcher L18

    def validate(self) -> None:
        """The residual blocks share one width: ``actor_hidden_dims`` lists it once per block."""
        if len(set(self.actor_hidden_dims)) != 1:
            raise ConfigError(f"IDQL's residual blocks share one width, got actor_hidden_dims={self.actor_hidden_dims}")


def implicit_policy_weights(q: torch.Tensor, v: torch.Tensor, expectile: float) -> torch.Tensor:
    """IDQL's expectile weights ``|τ − 1(q < v)| / |q − v|`` (the paper's Eq. 7; ``q`` ``[..., N]``, ``v``
    broadcast to it)."""
    diff = q - v
    return torch.where(diff < 0, 1.0 - expectile, expectile) / (diff.abs() + WEIGHT_EPS)


@register
class IDQL(Agent):
    name = "idql"
    config_class = IDQLConfig
    policy_update_parts = ("behaviour",)
    # the small profile for tests and CPU runs: the same network, narrower, and half the batch
    profiles = {"cpu": {"actor_hidden_dims": (64, 64, 64), "batch_size": 256}}
    presets = (
        # train_diffusion_offline.py L56–63: antmaze r − 1; hopper/walker2d/halfcheetah rewards × 1000 / (max −
        # min episode return) (dataset.py L190–195, normalize_returns=True in launcher L27); launcher L79–82:
        # expectile 0.9 on antmaze, 0.7 elsewhere (the default).
        ("mujoco/*", {"reward_transform": "iql_locomotion"}),
        ("D4RL/antmaze/*", {"reward_transform": "minus_one", "expectile": 0.9}),
        # the FQL code's per-task discounts on the OGBench tasks it runs (the IDQL code has no OGBench)
        *FQL_CODE_OGBENCH_DISCOUNTS,
        # flowbench's 2-D maze: the reference's maze expectile (launcher L79–80)
        ("local/pointmaze/*", {"expectile": 0.9}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: IDQLConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.critic = InSampleCritic(obs_dim, act_dim, c.value_hidden_dims, c.critic_layer_norm, c.activation,
                                     c.expectile, c.discount, seeds=s).to(self.device)
        self.behaviour = ResidualNoisePredictor(obs_dim, act_dim, c.actor_hidden_dims[0], len(c.actor_hidden_dims),
                                                c.actor_dropout, c.actor_layer_norm, c.actor_activation, c.time_dim,
                                                seeds=s).to(self.device)
        self.behaviour_ema = copy.deepcopy(self.behaviour).requires_grad_(False)  # ddpm_iql.py L165–168
        self.schedule = VPSchedule(c.sampling_steps, self.device)
        self.behaviour_opt = self.adam(self.behaviour.parameters(), c.actor_lr)
        for group in self.behaviour_opt.param_groups:  # optax.adamw: decoupled weight decay, scaled by the lr
            group["weight_decay"], group["decoupled_weight_decay"] = c.actor_weight_decay, True
        self.value_opt = self.adam(self.critic.value.parameters(), c.value_lr)
        self.critic_opt = self.adam(self.critic.q.parameters(), c.critic_lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.critic, "behaviour": self.behaviour, "behaviour_ema": self.behaviour_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"behaviour": self.behaviour_opt, "value": self.value_opt, "critic": self.critic_opt}

    def advance(self) -> None:
        super().advance()
        c = self.config
        # optax.cosine_decay_schedule at the next update's count
        self.schedule_lr(self.behaviour_opt, c.actor_lr, c.actor_lr_schedule, c.actor_lr_decay_steps)

    def behaviour_loss(self, batch: Batch) -> torch.Tensor:
        """L_ε ``[S]``: Σ over action dimensions, mean over the batch (ddpm_iql.py L293–341), dropout on."""
        actions = batch.actions
        k = self.rng.randint(self.schedule.steps, actions.shape[1:-1])
        noise = self.rng.randn(actions.shape[1:], dtype=actions.dtype)
        eps = self.behaviour(batch.obs, self.schedule.noised(actions, k, noise), k, rng=self.rng)
        return seed_mean(((eps - noise) ** 2).sum(-1))

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.behaviour_opt, self.behaviour_loss(batch))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        behaviour_loss = self.minimize(self.behaviour_opt, self.behaviour_loss(batch))  # update_actor
        soft_update(self.behaviour_ema, self.behaviour, 1.0 - c.ema_decay)  # L350–354
        value_loss = self.minimize(self.value_opt, self.critic.value_loss(batch))  # update_v
        critic_loss, q = self.critic.q_loss(batch)  # update_q, with the new V
        critic_loss = self.minimize(self.critic_opt, critic_loss / q.shape[1])  # mean over the heads (L270)
        self.critic.update_target(c.tau)  # toward the new critic (L282–285)
        return {"value_loss": value_loss, "critic_loss": critic_loss, "behaviour_loss": behaviour_loss,
                "q_mean": seed_mean(q.detach())}

    def candidate_q(self, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """min_i Q_i(s, a) ``[S, N, k]`` of the ranking critic for states ``[S, N, obs]`` and their candidates
        ``[S, N, k, act]`` (``compute_q``, ddpm_iql.py L39–43)."""
        s, n, k, _ = candidates.shape
        critic = self.critic.target_q if self.config.candidate_critic == "target" else self.critic.q
        q = critic(obs.repeat_interleave(k, dim=1), candidates.reshape(s, n * k, -1)).min(1).values
        return q.reshape(s, n, k)

    def candidate_weights(self, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The resampling weights ``[S, N, k]`` of ``action_selection`` (unnormalised)."""
        c = self.config
        q = self.candidate_q(obs, candidates)
        v = self.critic.value(obs)[..., None]
        if c.action_selection == "tau_resample":  # L391–394
            return torch.where(q - v > 0, c.expectile, 1.0 - c.expectile)
        return implicit_policy_weights(q, v, c.expectile)

    def sample_candidates(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        """``[S, N, k, act]``: k = ``num_candidates`` behaviour samples per state (jaxrl5 ``ddpm_sampler``,
        diffusion.py L69–104: noise of variance β_t, x clipped after every step, no dropout)."""
        c = self.config
        s, n, k = obs.shape[0], obs.shape[1], c.num_candidates
        model = self.behaviour_ema if c.act_with_ema else self.behaviour
        noise = rng.randn((n * k, self.act_dim), dtype=obs.dtype)
        actions = ddpm_sample(model, self.schedule, obs.repeat_interleave(k, dim=1), noise, rng, clip_denoised=False,
                              clip_x_t=c.clip_every_step, noise_variance="beta")
        return actions.reshape(s, n, k, self.act_dim)

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        c = self.config
        candidates = self.sample_candidates(obs, rng)
        s, n, k, _ = candidates.shape
        if k == 1:
            return candidates[:, :, 0]
        if c.action_selection == "argmax_q":  # L370–372
            chosen = self.candidate_q(obs, candidates).argmax(-1)
        else:
            weights = self.candidate_weights(obs, candidates)
            chosen = rng.multinomial(weights / weights.sum(-1, keepdim=True))
        return candidates.gather(2, chosen[..., None, None].expand(s, n, 1, self.act_dim)).squeeze(2)
