"""Flow-matching maths shared by every flow method: the linear path, its loss, the Euler sampler.

Path (rectified flow / OT-CFM): x₀ ~ N(0, I), x₁ = a (a dataset action), t ~ U[0, 1],
x_t = (1 − t) x₀ + t x₁, target velocity u = x₁ − x₀. Sampling integrates dx/dt = v(s, x, t) with
K Euler steps from x₀ ~ N(0, I) at times i/K, and clips the result to the action box.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from algos.networks import MLP


class VelocityField(nn.Module):
    """``v_θ(s, x, t)``: an MLP on the concatenation [s, x, t] (t as a raw scalar, as in FQL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], activation: str = "gelu",
                 layer_norm: bool = False):
        super().__init__()
        self.act_dim = act_dim
        self.net = MLP(obs_dim + act_dim + 1, hidden_dims, act_dim, activation, layer_norm)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(obs, x, t.reshape(*x.shape[:-1], 1).expand(*x.shape[:-1], 1))


def linear_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Point ``x_t`` on the straight path from noise ``x0`` to data ``x1``, and its velocity ``x1 − x0``."""
    return (1.0 - t) * x0 + t * x1, x1 - x0


def sample_noise_and_time(actions: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x₀ ~ N(0, I) shaped like ``actions`` and t ~ U[0, 1] shaped ``[..., 1]``."""
    x0 = torch.randn(actions.shape, generator=generator, device=actions.device)
    t = torch.rand((*actions.shape[:-1], 1), generator=generator, device=actions.device)
    return x0, t


def flow_matching_loss(field: VelocityField, obs: torch.Tensor, actions: torch.Tensor,
                       generator: torch.Generator, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Conditional flow matching, mean squared error averaged over batch and action dimensions.

    ``weights`` (per batch element) turn it into a weighted regression (QIPO's energy weights).
    """
    x0, t = sample_noise_and_time(actions, generator)
    x_t, target = linear_path(x0, actions, t)
    err = ((field(obs, x_t, t) - target) ** 2).mean(-1)
    return err.mean() if weights is None else (weights * err).mean()


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


def best_of_n_flow_actions(field: VelocityField, q_value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           obs: torch.Tensor, num_samples: int, steps: int,
                           generator: torch.Generator | None) -> torch.Tensor:
    """Samples ``num_samples`` flow actions per state and keeps the one with the highest ``q_value``
    (IFQL's acting rule; FlowQ's optional one). With one sample, Q is not evaluated."""
    n, k = obs.shape[0], num_samples
    repeated = obs.repeat_interleave(k, dim=0)
    noise = torch.randn((n * k, field.act_dim), generator=generator, device=obs.device)
    candidates = euler_sample(field, repeated, noise, steps)
    if k == 1:
        return candidates
    best = q_value(repeated, candidates).reshape(n, k).argmax(1)
    return candidates.reshape(n, k, field.act_dim)[torch.arange(n, device=obs.device), best]
