"""Flow-matching maths shared by every flow method: the linear path, its loss, the Euler sampler.

Path (rectified flow / OT-CFM): x₀ ~ N(0, I), x₁ = a (a dataset action), t ~ U[0, 1],
x_t = (1 − t) x₀ + t x₁, target velocity u = x₁ − x₀. Sampling integrates dx/dt = v(s, x, t) with
K Euler steps from x₀ ~ N(0, I) at times i/K, and clips the result to the action box.
Tensors carry the leading seed axis (``algos.kit.seeds``): ``[S, B, ...]``; losses are ``[S]``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from algos.kit.networks import MLP
from algos.kit.seeds import SeedRandom, seed_mean


class VelocityField(nn.Module):
    """``v_θ(s, x, t)``: an MLP on the concatenation [s, x, t] (t as a raw scalar, as in FQL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], activation: str = "gelu",
                 layer_norm: bool = False, seeds: int = 1):
        super().__init__()
        self.act_dim = act_dim
        self.net = MLP(obs_dim + act_dim + 1, hidden_dims, act_dim, activation, layer_norm, seeds=seeds)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(obs, x, t.expand(*x.shape[:-1], 1))


def linear_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Point ``x_t`` on the straight path from noise ``x0`` to data ``x1``, and its velocity ``x1 − x0``."""
    return (1.0 - t) * x0 + t * x1, x1 - x0


def sample_noise_and_time(actions: torch.Tensor, rng: SeedRandom) -> tuple[torch.Tensor, torch.Tensor]:
    """x₀ ~ N(0, I) shaped like ``actions`` ``[S, B, d]`` and t ~ U[0, 1] shaped ``[S, B, 1]``."""
    x0 = rng.randn(actions.shape[1:], dtype=actions.dtype)
    t = rng.rand((*actions.shape[1:-1], 1), dtype=actions.dtype)
    return x0, t


def flow_matching_loss(field: VelocityField, obs: torch.Tensor, actions: torch.Tensor,
                       rng: SeedRandom, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Conditional flow matching, mean squared error averaged over batch and action dimensions, per seed.

    ``weights`` (per batch element, ``[S, B]``) turn it into a weighted regression (QIPO's energy weights).
    """
    x0, t = sample_noise_and_time(actions, rng)
    x_t, target = linear_path(x0, actions, t)
    err = ((field(obs, x_t, t) - target) ** 2).mean(-1)
    return seed_mean(err if weights is None else weights * err)


def euler_sample(field: VelocityField, obs: torch.Tensor, noise: torch.Tensor, steps: int,
                 clip: bool = True) -> torch.Tensor:
    """Integrates the flow from ``noise`` with ``steps`` Euler steps (times i/K); clips at the end.

    Gradients flow through the steps unless the caller wraps it in ``torch.no_grad()``.
    """
    x = noise
    for i in range(steps):
        t = torch.full((*x.shape[:-1], 1), i / steps, device=x.device, dtype=x.dtype)
        x = x + field(obs, x, t) / steps
    return x.clamp(-1.0, 1.0) if clip else x


def flow_policy_actions(field: VelocityField, obs: torch.Tensor, steps: int, rng: SeedRandom) -> torch.Tensor:
    """One flow action per state ``[S, N, obs]``: K Euler steps from fresh noise drawn from ``rng``, clipped."""
    return euler_sample(field, obs, rng.randn((obs.shape[1], field.act_dim), dtype=obs.dtype), steps)


def best_of_n_flow_actions(field: VelocityField, q_value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           obs: torch.Tensor, num_candidates: int, steps: int, rng: SeedRandom) -> torch.Tensor:
    """Samples ``num_candidates`` flow actions per state ``[S, N, obs]`` and keeps the one with the highest
    ``q_value`` (``[S, N·k]``; IFQL's acting rule; FlowQ's optional one). With one sample, Q is not evaluated."""
    s, n, k = obs.shape[0], obs.shape[1], num_candidates
    repeated = obs.repeat_interleave(k, dim=1)
    noise = rng.randn((n * k, field.act_dim), dtype=obs.dtype)
    candidates = euler_sample(field, repeated, noise, steps)
    if k == 1:
        return candidates
    best = q_value(repeated, candidates).reshape(s, n, k).argmax(-1)
    candidates = candidates.reshape(s, n, k, field.act_dim)
    return candidates.gather(2, best[..., None, None].expand(s, n, 1, field.act_dim)).squeeze(2)
