"""DDPM maths shared by the diffusion policies (Diffusion-QL, QIPO-Diff): VP schedule, noise
predictor, denoising loss and the reverse-chain sampler.

Forward process with K steps (index k = 0 … K−1): x_k = √ᾱ_k a + √(1 − ᾱ_k) ε, ε ~ N(0, I), with
Diffusion-QL's discrete variance-preserving schedule (Wang, Hunt, Zhou 2023, after Song et al. 2021):
α_k = exp(−β_min/K − ½(β_max − β_min)(2k + 1)/K²), β_min = 0.1, β_max = 10, ᾱ_k = Π_{j≤k} α_j.
The network predicts ε; the loss is mean ‖ε_θ(s, x_k, k) − ε‖². Sampling runs the K reverse steps
x_{k−1} ~ q(x_{k−1} | x_k, x̂₀) from x_{K−1} ~ N(0, I), with x̂₀ = (x_k − √(1 − ᾱ_k) ε_θ)/√ᾱ_k
clipped to the action box, no noise on the last step, and clips the result. IDQL's sampler (jaxrl5
``ddpm_sampler``) is the same chain with options: x̂₀ unclipped, noise of variance β_k instead of the
posterior's, and x_{k−1} clipped to the box after every step (``clip_x_t``).
Tensors carry the leading seed axis (``algos.kit.seeds``): ``[S, B, ...]``; losses are ``[S]``.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

from algos.kit.networks import MLP
from algos.kit.residual import ResidualMLP
from algos.kit.seeds import SeedRandom, seed_mean


class VPSchedule:
    """The discrete VP noise schedule and the DDPM posterior coefficients, as tensors on ``device``."""

    def __init__(self, steps: int, device: torch.device | str = "cpu", beta_min: float = 0.1, beta_max: float = 10.0):
        if steps < 1:
            raise ValueError(f"diffusion needs at least one step, got {steps}")
        self.steps = steps
        k = torch.arange(1, steps + 1, dtype=torch.float64)
        alphas = torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * k - 1) / steps**2)
        betas = 1.0 - alphas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)

        def as_tensor(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=torch.get_default_dtype())

        self.betas = as_tensor(betas)
        self.alphas_cumprod = as_tensor(alphas_cumprod)
        self.sqrt_alphas_cumprod = as_tensor(alphas_cumprod.sqrt())
        self.sqrt_one_minus_alphas_cumprod = as_tensor((1.0 - alphas_cumprod).sqrt())
        self.sqrt_recip_alphas_cumprod = as_tensor((1.0 / alphas_cumprod).sqrt())
        self.sqrt_recipm1_alphas_cumprod = as_tensor((1.0 / alphas_cumprod - 1.0).sqrt())
        self.posterior_mean_coef1 = as_tensor(betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod))
        self.posterior_mean_coef2 = as_tensor((1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod))
        self.posterior_log_variance = as_tensor(posterior_variance.clamp(min=1e-20).log())

    def noised(self, actions: torch.Tensor, k: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_k = √ᾱ_k a + √(1 − ᾱ_k) ε for a batch of step indices ``k`` (shape ``[S, B]``)."""
        return self.sqrt_alphas_cumprod[k][..., None] * actions + self.sqrt_one_minus_alphas_cumprod[k][..., None] * noise


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of the (integer) diffusion step."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1)),
                             persistent=False)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        angles = k.to(self.freqs.dtype)[..., None] * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class NoisePredictor(nn.Module):
    """``ε_θ(s, x_k, k)``: Diffusion-QL's MLP on [x, time features, s] (time: sinusoid → 2-layer MLP)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], activation: str = "mish",
                 time_dim: int = 16, seeds: int = 1):
        super().__init__()
        self.time_features = nn.Sequential(SinusoidalEmbedding(time_dim),
                                           MLP(time_dim, (2 * time_dim,), time_dim, "mish", seeds=seeds))
        self.net = MLP(act_dim + time_dim + obs_dim, hidden_dims, act_dim, activation, seeds=seeds)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.time_features(k), obs)


class FourierFeatures(nn.Module):
    """jaxrl5's learnable ``FourierFeatures`` (IDQL, jaxrl5/networks/diffusion.py L34–49): [cos 2πkW, sin 2πkW]
    of the step index k, W ``[dim/2, 1]`` per seed drawn from N(0, 0.2²) (L41) and trained."""

    def __init__(self, dim: int, seeds: int = 1):
        super().__init__()
        self.kernel = nn.Parameter(0.2 * torch.randn(seeds, 1, dim // 2))

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        seeds, lead = k.shape[0], k.shape[1:]
        f = 2 * math.pi * k.reshape(seeds, -1, 1).to(self.kernel.dtype) * self.kernel  # [S, N, dim/2]
        return torch.cat([f.cos(), f.sin()], dim=-1).reshape(seeds, *lead, -1)


class ResidualNoisePredictor(nn.Module):
    """``ε_θ(s, x_k, k)`` as IDQL's ``DDPM`` module with the ``ln_resnet`` reverse network (jaxrl5/networks/
    diffusion.py L51–67; ddpm_iql_learner.py L116–150): learnable Fourier features of k (``time_dim``) → a
    Dense(128) → mish → Dense(128) condition (L120–123), then ``ResidualMLP`` on [x, s, condition] (L65–67).
    Called as a ``NoisePredictor`` is; ``rng`` (training) draws the residual blocks' dropout masks."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256, num_blocks: int = 3,
                 dropout: float = 0.1, layer_norm: bool = True, activation: str = "mish", time_dim: int = 64,
                 seeds: int = 1):
        super().__init__()
        self.time_features = FourierFeatures(time_dim, seeds)
        self.condition = MLP(time_dim, (128,), 128, "mish", seeds=seeds)  # xavier_uniform, as jaxrl5's MLP
        self.net = ResidualMLP(act_dim + obs_dim + 128, act_dim, hidden_dim, num_blocks, dropout, layer_norm,
                               activation, seeds=seeds)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, k: torch.Tensor,
                rng: SeedRandom | None = None) -> torch.Tensor:
        return self.net(torch.cat([x, obs, self.condition(self.time_features(k))], dim=-1), rng)


def denoising_loss(model: NoisePredictor, schedule: VPSchedule, obs: torch.Tensor, actions: torch.Tensor,
                   rng: SeedRandom, weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean ‖ε_θ(s, x_k, k) − ε‖² over batch and action dimensions per seed, k ~ U{0 … K−1};
    ``weights`` (per batch element, ``[S, B]``) make it QIPO-Diff's weighted denoising loss."""
    k = rng.randint(schedule.steps, actions.shape[1:-1])
    noise = rng.randn(actions.shape[1:], dtype=actions.dtype)
    err = ((model(obs, schedule.noised(actions, k, noise), k) - noise) ** 2).mean(-1)
    return seed_mean(err if weights is None else weights * err)


def ddpm_sample(model: NoisePredictor, schedule: VPSchedule, obs: torch.Tensor, noise: torch.Tensor,
                rng: SeedRandom, clip_denoised: bool = True, clip_x_t: bool = False,
                noise_variance: Literal["posterior", "beta"] = "posterior") -> torch.Tensor:
    """Runs the K reverse steps from ``noise``; gradients flow through every step unless the caller
    wraps it in ``torch.no_grad()`` (Diffusion-QL backpropagates its Q term through the whole chain).

    ``clip_denoised``: clip x̂₀ to [-1, 1] before the posterior mean (Diffusion-QL); ``clip_x_t``: clip
    x_{k−1} to [-1, 1] after every step (jaxrl5 ``ddpm_sampler`` with ``clip_sampler``, diffusion.py L90–91);
    ``noise_variance``: the posterior's β̃_k (Diffusion-QL) or β_k (jaxrl5 diffusion.py L88). Without
    ``clip_denoised`` the posterior mean is jaxrl5's (x_k − β_k/√(1 − ᾱ_k) ε_θ)/√α_k (L80–82): the same
    quantity, written through x̂₀."""
    if noise_variance not in ("posterior", "beta"):
        raise ValueError(f"unknown noise_variance {noise_variance!r}; valid: posterior, beta")
    x = noise
    for k in reversed(range(schedule.steps)):
        steps = torch.full(x.shape[:-1], k, device=x.device, dtype=torch.long)
        eps = model(obs, x, steps)
        x0 = schedule.sqrt_recip_alphas_cumprod[k] * x - schedule.sqrt_recipm1_alphas_cumprod[k] * eps
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        x = schedule.posterior_mean_coef1[k] * x0 + schedule.posterior_mean_coef2[k] * x
        if k > 0:
            z = rng.randn(x.shape[1:], dtype=x.dtype)
            if noise_variance == "posterior":
                x = x + (0.5 * schedule.posterior_log_variance[k]).exp() * z
            else:
                x = x + schedule.betas[k].sqrt() * z
        if clip_x_t:
            x = x.clamp(-1.0, 1.0)
    return x.clamp(-1.0, 1.0)
