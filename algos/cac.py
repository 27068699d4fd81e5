"""Consistency Actor-Critic (CAC; Ding & Jin, "Consistency Models as a Rich and Efficient Policy Class for
Reinforcement Learning", ICLR 2024, arXiv 2309.16984), as its official code computes it
(quantumiracle/Consistency_Model_For_Reinforcement_Learning: agents/ql_consistency.py ``Consistency_QL``,
agents/consistency.py ``Consistency``, agents/model.py ``MLP``, offline.py ``consistency_hyperparameters``).

The policy is a consistency model f_θ(x, τ, s) that maps a noisy action x at noise level τ straight to a clean one,
    f_θ(x, τ, s) = c_skip(τ) x + c_out(τ) F_θ(x, τ, s),
    c_skip = σ_d² / ((τ − ε)² + σ_d²),  c_out = σ_d (τ − ε) / √(τ² + σ_d²),  σ_d = 0.5
(consistency.py:L38-56: no c_in, the network sees x and τ itself, τ through a sinusoidal embedding and a
2-layer Mish MLP, model.py:L23-47), so f_θ(x, ε, s) = x (the boundary condition). Each update (ql_consistency.py:
L245-347) takes one critic step, one actor step, an EMA step of the policy and a Polyak step of the critic:
- critic:  a′ from the EMA policy (no gradient), y = r + γ m min_i Q_φ̄ᵢ(s′, a′) (L260-264); with ``max_q_backup``
           10 samples a′ per s′ and y = r + γ m min_i max_j Q_φ̄ᵢ(s′, a′_j) (L252-258); with ``q_norm``
           y ← y / (std_batch(y) + 1e-6) (L267-268); L_Q = Σ_i mean (Q_φᵢ(s, a) − y)² (L270), gradient-norm clip;
- BC:      consistency training against the EMA policy (L300-316, consistency.py:L58-74):
           L_CT = mean w_n ‖f_θ(a + τ_{n+1} z, τ_{n+1}, s) − f_θ⁻(a + τ_n z, τ_n, s)‖², n ~ U{0 … N−2},
           τ on Karras's ρ-schedule of N levels from ε to T (helpers.py:L114-123), w_n = 100 / (τ_{n+1} − τ_n)
           (L326-328); N grows from 2 to 150 over each ``noise_levels_period`` updates (L58-86, L294);
- actor:   L_π = L_CT − η · mean Q_φ₁(s, a_θ) / sg(mean |Q_φ₂(s, a_θ)|), the two heads' roles drawn at random each
           step (L279-284), a_θ from the K-step sampler with gradient; gradient-norm clip (L329-335);
- EMA:     θ⁻ ← 0.995 θ⁻ + 0.005 θ every 5 updates from update 1000 on; before that θ⁻ is the initial policy
           (L235-238, L339-342); the critic's target moves every update with τ 0.005 (L344-345).
Sampling (consistency.py:L77-96): a = f_θ(T z, t_1, s), then a = f_θ(a + √(t_k² − ε²) z′, t_k, s) for the
levels t_1 > … > t_K of linspace(2, T, K) reversed, clipped to [-1, 1]. Acting (L371-378): 50 candidates per
state from the policy, one drawn with probability softmax(min_i Q_φ̄ᵢ).
Tensors carry the leading seed axis (``algos.kit.seeds``): batches ``[S, B, ...]``, losses ``[S]``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Hashable, Literal, NamedTuple

import torch
from torch import nn

from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig, ConfigError
from algos.kit.critics import td_target
from algos.kit.diffusion import NoisePredictor
from algos.kit.networks import Activation, Critic, frozen_call, soft_update, torch_default_init_
from algos.kit.presets import FQL_CODE_OGBENCH_DISCOUNTS, cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean

SIGMA_DATA = 0.5  # σ_d of the parametrisation (consistency.py:L49-52)
MAX_Q_BACKUP_SAMPLES = 10  # next actions per state of the max-Q backup (ql_consistency.py:L253)
TIME_DIM = 16  # the time embedding's width (model.py:L18)


@dataclass
class CACConfig(AgentConfig):
    """CAC with the official code's settings: 3×256 Mish MLPs without LayerNorm (model.py:L31-38,
    ql_diffusion.py:L14-31), PyTorch's default layer initialisation, Adam 3e-4 for both networks, batch 256,
    γ 0.99, τ 0.005 (offline.py:L294-301), EMA 0.995 every 5 updates from update 1000 (ql_consistency.py:L177-179),
    consistency training with N growing 2 → 150 (L58-86), ε 0.002, T 80, ρ 7 (L300, consistency.py:L24-33), the
    ×100/Δτ loss scale (L186; offline.py's per-task ``scale_consis_loss`` never reaches the agent, offline.py:
    L92-109, so every task ran with it), 50 acting candidates chosen by softmax(Q) (L371-378).
    η, K, the gradient-norm clip, ``q_norm``, the max-Q backup, the actor's lr and the reward transform are per
    task (``CAC.presets``, offline.py:L41-62); the defaults are its first row (halfcheetah-medium-v2, L42).

    Learning rates: the official runs pass ``--lr_decay`` (scripts/offline.sh), a cosine over ``num_epochs``
    (1000) steps that is stepped once per ``train()`` call of 50 000 updates (ql_consistency.py:L220-222,
    L365-367; offline.py:L123), so the lr is still ≥ 0.999 of its start at the end of a run: ``constant`` is
    what ran; ``cosine`` (to 0 over the run) is the reading of Diffusion-QL's README, off by default.
    Other readings, off by default: ``teacher="online"`` (a stop-gradient copy of the policy as the consistency
    target, as the code's ``improved_CT`` path and Song & Dhariwal's improved consistency training do);
    ``edm_inputs`` (the network sees c_in(τ) x and ¼ ln τ, Karras et al.'s preconditioning, which the CAC code
    leaves out: consistency.py:L15); fixed N (``initial_noise_levels`` = ``noise_levels``); ``q_head="mean"``
    (both heads averaged, equal in expectation); ``init="xavier"`` (flowbench's flax-style layers)."""

    eta: float = 1.0  # η, weight of the normalised Q term against the consistency loss
    sampling_steps: int = 2  # K, consistency steps at levels linspace(min_sampling_noise, max_noise, K), top first
    min_sampling_noise: float = 2.0  # the sampler's lowest level (the CAC code's min_T)
    num_candidates: int = 50  # actions per state when acting, one chosen by Q (action_selection)
    action_selection: Literal["softmax", "argmax"] = "softmax"  # softmax: drawn with probability softmax(Q)
    noise_levels: int = 150  # N at the end of each schedule period (the CAC code's final_timesteps)
    initial_noise_levels: int = 2  # N at the start of each schedule period (initial_timesteps)
    noise_levels_period: int = 50_000  # updates over which N grows (one train() call: 50 epochs × 1000); 0 = the run
    teacher: Literal["ema", "online"] = "ema"  # consistency target: the EMA policy | the policy behind a stop-gradient
    eps: float = 0.002  # ε, the smallest noise level
    max_noise: float = 80.0  # T, the largest (and the sampler's initial noise scale)
    rho: float = 7.0  # ρ of Karras's level schedule
    scale_consistency_loss: bool = True  # w_n = 100 / (τ_{n+1} − τ_n) on each sample's consistency error
    edm_inputs: bool = False  # network inputs c_in(τ)·x and ¼ ln τ (EDM preconditioning) instead of x and τ
    q_norm: bool = False  # divide the TD target by its batch standard deviation (+1e-6)
    max_q_backup: bool = False  # y from the max over 10 next-action samples per head, then the min over heads
    q_head: Literal["random", "mean"] = "random"  # Q term: one head over the other's mean |Q|, drawn each step | both
    grad_norm: float = 9.0  # max gradient norm of actor and critic (each seed on its own)
    ema_decay: float = 0.995
    ema_every: int = 5  # updates between EMA steps of the policy
    ema_start: int = 1000  # updates before the first EMA step (until then the EMA policy is the initial one)
    discount: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = (256, 256, 256)
    value_hidden_dims: tuple[int, ...] = (256, 256, 256)
    critic_layer_norm: bool = False
    activation: Activation = "mish"
    init: Literal["torch", "xavier"] = "torch"  # torch: weights and biases U(±1/√fan_in) (nn.Linear's default)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_lr_schedule: Literal["constant", "cosine"] = "constant"
    critic_lr_schedule: Literal["constant", "cosine"] = "constant"
    batch_size: int = 256

    def validate(self) -> None:
        """The noise levels must nest: 2 ≤ N₀ ≤ N and ε < min_sampling_noise ≤ max_noise (the CAC code's
        Karras grid needs ε < T)."""
        if not 2 <= self.initial_noise_levels <= self.noise_levels or self.eps >= self.max_noise:
            raise ConfigError(f"CAC needs 2 <= initial_noise_levels <= noise_levels and eps < max_noise, got "
                              f"initial_noise_levels {self.initial_noise_levels}, noise_levels "
                              f"{self.noise_levels}, eps {self.eps}, max_noise {self.max_noise}")
        if not self.eps < self.min_sampling_noise <= self.max_noise:
            raise ConfigError(f"CAC needs eps < min_sampling_noise <= max_noise, got eps {self.eps}, "
                              f"min_sampling_noise {self.min_sampling_noise}, max_noise {self.max_noise}")


def karras_levels(n: int, eps: float, max_noise: float, rho: float) -> list[float]:
    """N levels ε = τ_0 < … < τ_{N−1} = T on Karras's ρ-schedule (helpers.py:L114-123)."""
    return [(eps ** (1 / rho) + i / (n - 1) * (max_noise ** (1 / rho) - eps ** (1 / rho))) ** rho for i in range(n)]


def noise_levels_at(update: int, period: int, initial: int, final: int) -> int:
    """N for the update with index ``update`` within its period (ql_consistency.py:L58-86 ``timesteps_schedule``)."""
    grown = update * (final**2 - initial**2) / period
    return math.ceil(math.sqrt(grown + initial**2) - 1) + 1


class ConsistencyPolicy(nn.Module):
    """f_θ(x, τ, s) with the boundary condition built in; ``sampling_levels`` holds the sampler's t_1 > … > t_K."""

    def __init__(self, obs_dim: int, act_dim: int, c: CACConfig, seeds: int = 1):
        super().__init__()
        self.act_dim, self.eps, self.max_noise, self.edm_inputs = act_dim, c.eps, c.max_noise, c.edm_inputs
        self.net = NoisePredictor(obs_dim, act_dim, c.actor_hidden_dims, c.activation, TIME_DIM, seeds)
        levels = torch.linspace(c.min_sampling_noise, c.max_noise, c.sampling_steps, dtype=torch.float64).flip(0)
        self.register_buffer("sampling_levels", levels.to(torch.get_default_dtype()), persistent=False)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``x`` ``[S, B, act]`` at levels ``tau`` ``[S, B, 1]`` (or broadcastable) → clean actions."""
        tau = tau.expand(*x.shape[:-1], 1)
        shifted = tau - self.eps
        c_skip = SIGMA_DATA**2 / (shifted**2 + SIGMA_DATA**2)
        c_out = SIGMA_DATA * shifted / torch.sqrt(tau**2 + SIGMA_DATA**2)
        if self.edm_inputs:
            out = self.net(obs, x / torch.sqrt(tau**2 + SIGMA_DATA**2), 0.25 * torch.log(tau.squeeze(-1)))
        else:
            out = self.net(obs, x, tau.squeeze(-1))
        return c_skip * x + c_out * out

    def sample(self, obs: torch.Tensor, rng: SeedRandom, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """K-step consistency sampling (gradients flow unless under ``no_grad``); ``noise``: the K draws
        ``[S, B, act]`` to use instead of ``rng``'s (the first is scaled by T, the others by √(t_k² − ε²))."""
        shape = (obs.shape[1], self.act_dim)
        draws = iter(noise) if noise is not None else None

        def draw() -> torch.Tensor:
            return next(draws) if draws is not None else rng.randn(shape, dtype=obs.dtype)

        levels = self.sampling_levels
        action = self(obs, self.max_noise * draw(), levels[0].reshape(1, 1, 1))
        for k in range(1, len(levels)):
            tau = levels[k]
            action = self(obs, action + torch.sqrt(tau**2 - self.eps**2) * draw(), tau.reshape(1, 1, 1))
        return action.clamp(-1.0, 1.0)


def consistency_loss(student: ConsistencyPolicy, teacher: ConsistencyPolicy, obs: torch.Tensor, actions: torch.Tensor,
                     z: torch.Tensor, low: torch.Tensor, high: torch.Tensor, scale: bool) -> torch.Tensor:
    """L_CT ``[S]`` at levels ``low`` < ``high`` ``[S, B, 1]`` with one noise ``z`` ``[S, B, act]`` for both
    (consistency.py:L58-74): the teacher's output at the lower level is the target, without gradient; each
    error × 100 / (high − low) with ``scale`` (ql_consistency.py:L326-328)."""
    with torch.no_grad():
        target = teacher(obs, actions + z * low, low)
    errors = (student(obs, actions + z * high, high) - target) ** 2  # [S, B, act]
    if scale:
        errors = errors * (100.0 / (high - low))
    return seed_mean(errors)


class CACDraws(NamedTuple):
    """The random draws of one update, given instead of the agent's generators' (to replay another code's
    draws: tests/golden/make_cac_golden.py). Each tensor has the leading seed axis."""

    next_noise: list[torch.Tensor]  # the EMA sampler's K draws for the next actions [S, B (·10), act]
    policy_noise: list[torch.Tensor]  # the policy sampler's K draws for the Q term [S, B, act]
    first_head: torch.Tensor | None  # [S] bool: the Q term's head 1 (else 2); None with q_head="mean"
    z: torch.Tensor  # the consistency loss's noise [S, B, act]
    n: torch.Tensor  # its level indices [S, B, 1], in 0 … N − 2


@register
class CAC(Agent):
    name = "cac"
    config_class = CACConfig
    policy_update_parts = ("actor",)
    profiles = {"cpu": cpu_networks()}
    # The CAC code's per-task table (offline.py:L41-62 ``consistency_hyperparameters``): 'lr' is the actor's lr
    # (the critic's is 3e-4 everywhere, ql_consistency.py:L218), 'T' is K, 'gn' the gradient-norm clip,
    # 'reward_tune' the reward transform (utils/data_sampler.py:L22-31: 'cql_antmaze' (r − 0.5)·4, 'normalize'
    # standardised). Its 'scale_consis_loss' column never reaches the agent (offline.py:L92-109); 'num_epochs',
    # 'eval_freq' and 'top_k' (offline model selection) are the run's, not the agent's. Minari's locomotion ports
    # have no medium-replay/medium-expert datasets: each env takes its '-medium-v2' row. D4RL v0/v1 antmaze and
    # kitchen, v1 pen in the CAC code; Minari's ports are v1/v2.
    presets = (
        ("mujoco/halfcheetah/*", {"eta": 1.0, "sampling_steps": 2, "grad_norm": 9.0}),  # L42
        ("mujoco/hopper/*", {"eta": 0.1, "sampling_steps": 2, "grad_norm": 9.0}),  # L43
        ("mujoco/walker2d/*", {"eta": 1.0, "sampling_steps": 5, "q_norm": True, "grad_norm": 1.0}),  # L44
        ("D4RL/antmaze/*", {"reward_transform": "cql_antmaze", "sampling_steps": 2, "q_norm": True,
                            "max_q_backup": True}),  # L51-56
        ("D4RL/antmaze/umaze-v*", {"eta": 0.01, "grad_norm": 2.0, "max_q_backup": False}),  # L51
        ("D4RL/antmaze/umaze-diverse-*", {"eta": 0.01, "grad_norm": 3.0}),  # L52
        ("D4RL/antmaze/medium-play-*", {"actor_lr": 1e-3, "eta": 0.01, "q_norm": False, "grad_norm": 2.0}),  # L53
        ("D4RL/antmaze/medium-diverse-*", {"eta": 0.01, "grad_norm": 1.0}),  # L54
        ("D4RL/antmaze/large-play-*", {"eta": 4.5, "grad_norm": 10.0}),  # L55
        ("D4RL/antmaze/large-diverse-*", {"eta": 3.5, "grad_norm": 2.0}),  # L56
        ("D4RL/pen/human-*", {"actor_lr": 3e-5, "eta": 0.01, "q_norm": True, "grad_norm": 7.0,
                              "reward_transform": "standardize"}),  # L57
        ("D4RL/pen/cloned-*", {"actor_lr": 3e-5, "eta": 0.01, "q_norm": True, "grad_norm": 8.0,
                               "reward_transform": "standardize"}),  # L58
        ("D4RL/kitchen/*", {"eta": 0.5, "q_norm": True, "grad_norm": 2.0}),  # L59-61 (complete, partial, mixed)
        # OGBench is not in the CAC code's table: the FQL paper's per-task discounts.
        *FQL_CODE_OGBENCH_DISCOUNTS,
        # flowbench's toy, 3000 updates (measurements: results/baselines/cac.md): N's growth and the EMA's start,
        # sized by the CAC code for 1M-update runs, scaled to the run; a LayerNorm critic, since without it the
        # critic extrapolates past the discs and the Q term drags the actions off them (η 30: 98 % off); argmax
        # acting, since Q differs by only 0.5 between the modes (softmax barely prefers the better one) and the
        # K = 2 policy's own samples are still blurred between the modes at this budget; lr 1e-3 as the other toy
        # presets.
        ("toy/*", {"actor_lr": 1e-3, "critic_lr": 1e-3, "noise_levels_period": 0, "ema_start": 0,
                   "critic_layer_norm": True, "action_selection": "argmax"}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: CACConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c, s = config, num_seeds
        self.actor = ConsistencyPolicy(obs_dim, act_dim, c, seeds=s).to(self.device)
        self.critic = Critic(obs_dim, act_dim, c.value_hidden_dims, 2, c.critic_layer_norm, c.activation,
                             seeds=s).to(self.device)
        if c.init == "torch":
            torch_default_init_(self.actor)
            torch_default_init_(self.critic)
        self.ema_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = self.adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), c.critic_lr)
        # Row N of the table: the N levels of Karras's schedule (padded with T). Which row the next update reads
        # is ``num_levels`` (a device tensor that ``advance`` sets), so N changes without a host read.
        dtype = torch.get_default_dtype()
        table = torch.full((c.noise_levels + 1, c.noise_levels), c.max_noise, dtype=torch.float64)
        for n in range(2, c.noise_levels + 1):
            table[n, :n] = torch.tensor(karras_levels(n, c.eps, c.max_noise, c.rho), dtype=torch.float64)
        self.level_table = table.to(self.device, dtype)
        self.num_levels = torch.zeros(1, dtype=torch.long, device=self.device)
        self.set_noise_levels()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor, "ema_actor": self.ema_actor, "critic": self.critic,
                "target_critic": self.target_critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    # -- schedules (Python side, between updates) ----------------------------------------------
    @property
    def horizon(self) -> int | None:
        return self._horizon

    @horizon.setter
    def horizon(self, value: int | None) -> None:
        """The run's length (set by the harness before training): N's schedule over the run reads it."""
        self._horizon = value
        if hasattr(self, "num_levels"):
            self.set_noise_levels()

    def current_noise_levels(self) -> int:
        """N of the next update: the CAC code's schedule at the update's index within its period."""
        c = self.config
        period = c.noise_levels_period or self.horizon
        if not period:
            return c.noise_levels
        return min(noise_levels_at(self.step % period, period, c.initial_noise_levels, c.noise_levels), c.noise_levels)

    def set_noise_levels(self) -> None:
        self.num_levels.fill_(self.current_noise_levels())

    def ema_steps(self) -> bool:
        """Whether this update ends with an EMA step: the updates done before it are a multiple of ``ema_every``
        and at least ``ema_start`` (ql_consistency.py:L235-238, L339-342)."""
        return self.periodic(self.config.ema_every, self.config.ema_start)

    def graph_key(self) -> Hashable:
        return self.ema_steps()

    def advance(self) -> None:
        super().advance()
        c = self.config
        self.set_noise_levels()
        self.schedule_lr(self.actor_opt, c.actor_lr, c.actor_lr_schedule)
        self.schedule_lr(self.critic_opt, c.critic_lr, c.critic_lr_schedule)

    def load_extra_state(self, state: dict) -> None:
        self.set_noise_levels()

    # -- losses ---------------------------------------------------------------------------------
    def td_target(self, batch: Batch, next_q: torch.Tensor) -> torch.Tensor:
        """y ``[S, B]`` from min-over-heads next values ``[S, B]``, divided by its batch std with ``q_norm``."""
        target = td_target(batch, next_q, self.config.discount)
        if self.config.q_norm:
            target = target / (target.std(-1, keepdim=True) + 1e-6)
        return target

    def critic_loss(self, batch: Batch, noise: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_Q ``[S]``, Q(s, a) ``[S, 2, B]``), next actions from the EMA policy (its sampler's ``noise``
        if given)."""
        with torch.no_grad():
            if self.config.max_q_backup:
                s, b, n = batch.obs.shape[0], batch.obs.shape[1], MAX_Q_BACKUP_SAMPLES
                repeated = batch.next_obs.repeat_interleave(n, dim=1)
                next_qs = self.target_critic(repeated, self.ema_actor.sample(repeated, self.rng, noise))
                next_q = next_qs.reshape(s, 2, b, n).max(-1).values.min(1).values
            else:
                next_actions = self.ema_actor.sample(batch.next_obs, self.rng, noise)
                next_q = self.target_critic(batch.next_obs, next_actions).min(1).values
            target = self.td_target(batch, next_q)
        q = self.critic(batch.obs, batch.actions)
        return ((q - target[:, None]) ** 2).mean(-1).sum(-1), q  # F.mse_loss per head, summed (L270)

    def q_loss(self, q: torch.Tensor, first_head: torch.Tensor | None) -> torch.Tensor:
        """The normalised Q term ``[S]`` from Q(s, a_θ) ``[S, 2, B]``: −mean Q_i / sg(mean |Q_j|), head i = 1 where
        ``first_head`` ``[S]`` is true, else 2 (``q_head="random"``, L281-284); −mean Q / sg(mean |Q|) over both."""
        if first_head is None:
            return -seed_mean(q) / seed_mean(q.abs()).detach().clamp(min=1e-6)
        mean, scale = q.mean(-1), q.abs().mean(-1).detach().clamp(min=1e-6)  # [S, 2]
        return torch.where(first_head, -mean[:, 0] / scale[:, 1], -mean[:, 1] / scale[:, 0])

    def actor_losses(self, batch: Batch, draws: CACDraws | None = None) -> dict[str, torch.Tensor]:
        """The consistency loss ``bc`` and the normalised Q term ``q`` (each ``[S]``), from ``draws`` if given."""
        c = self.config
        # gradient through all K steps
        policy_actions = self.actor.sample(batch.obs, self.rng, draws.policy_noise if draws else None)
        q = frozen_call(self.critic, batch.obs, policy_actions)
        levels = self.level_table.index_select(0, self.num_levels).squeeze(0)  # [max N]
        if draws is None:
            first_head = self.rng.rand((1,)).squeeze(-1) > 0.5 if c.q_head == "random" else None
            b = batch.actions.shape[1]
            z = self.rng.randn(batch.actions.shape[1:], dtype=batch.actions.dtype)
            n = (self.rng.rand((b, 1), dtype=batch.actions.dtype) * (self.num_levels - 1)).long()  # U{0 … N−2}
            n = torch.minimum(n, self.num_levels - 2)
        else:
            first_head, z, n = draws.first_head, draws.z, draws.n
        teacher = self.ema_actor if c.teacher == "ema" else self.actor
        bc = consistency_loss(self.actor, teacher, batch.obs, batch.actions, z, levels[n], levels[n + 1],
                              c.scale_consistency_loss)
        return {"bc": bc, "q": self.q_loss(q, first_head)}

    def actor_step(self, batch: Batch, draws: CACDraws | None = None) -> dict[str, torch.Tensor]:
        losses = self.actor_losses(batch, draws)
        self.minimize(self.actor_opt, losses["bc"] + self.config.eta * losses["q"], self.actor.parameters(),
                      self.config.grad_norm)
        return {k: v.detach() for k, v in losses.items()}

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        losses = self.actor_step(batch)
        return losses["bc"] + self.config.eta * losses["q"]

    def train_step(self, batch: Batch, draws: CACDraws | None = None) -> dict[str, torch.Tensor]:
        """One update (ql_consistency.py:L245-347); ``draws``: its random draws, instead of the generators'."""
        c = self.config
        critic_loss, q = self.critic_loss(batch, draws.next_noise if draws else None)
        critic_loss = self.minimize(self.critic_opt, critic_loss, self.critic.parameters(), c.grad_norm)
        losses = self.actor_step(batch, draws)
        if self.ema_steps():
            soft_update(self.ema_actor, self.actor, 1.0 - c.ema_decay)
        soft_update(self.target_critic, self.critic, c.tau)
        return {"critic_loss": critic_loss, "bc_loss": losses["bc"], "q_loss": losses["q"],
                "q_mean": seed_mean(q).detach()}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        """One of ``num_candidates`` policy samples per state, by softmax (or argmax) of the target critic's
        min over heads (ql_consistency.py:L371-378)."""
        s, n, k = obs.shape[0], obs.shape[1], self.config.num_candidates
        repeated = obs.repeat_interleave(k, dim=1)
        candidates = self.actor.sample(repeated, rng).reshape(s, n, k, self.act_dim)
        q = self.candidate_values(obs, candidates)
        if self.config.action_selection == "argmax":
            chosen = q.argmax(-1)
        else:
            chosen = rng.multinomial(torch.softmax(q, dim=-1))
        return candidates.gather(2, chosen[..., None, None].expand(s, n, 1, self.act_dim)).squeeze(2)

    def candidate_values(self, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """min_i Q_φ̄ᵢ(s, a) ``[S, N, k]`` of candidates ``[S, N, k, act]`` for ``obs`` ``[S, N, obs]``: the target
        critic's ``q_min`` (L376)."""
        s, n, k = candidates.shape[:3]
        repeated = obs.repeat_interleave(k, dim=1)
        return self.target_critic(repeated, candidates.reshape(s, n * k, -1)).min(1).values.reshape(s, n, k)
