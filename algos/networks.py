"""Networks shared by every algorithm: MLPs with a leading seed axis and an optional ensemble axis.

Every parameter carries a leading **seed axis** of size ``S`` (``seeds``): an agent trains S seeds of
one algorithm as one batched model, each seed with its own weights, batches and noise, and S = 1 is
an ordinary single-seed run. Critics add an **ensemble axis** ``E`` (twin Q) after it. A layer's
weight is ``[S, (E,) in, out]`` and all members run in one batched matmul, so nothing here loops over
seeds or members in Python.

Shapes: inputs are ``[S, ..., in]``; an ensemble network returns ``[S, E, ..., out]``.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from algos.seeds import SeedRandom


class EnsembleLinear(nn.Module):
    """``y = x W + b`` for ``S`` seeds (× ``E`` ensemble members) at once.

    Input ``[S, N, in]`` (broadcast over the members) or ``[S, E, N, in]``; biases zero, weights
    uniform with variance ``init_scale · 2 / (in + out)`` per member (flax's ``variance_scaling(init_scale,
    'fan_avg', 'uniform')``; 1 is Xavier-uniform).
    """

    def __init__(self, in_features: int, out_features: int, ensemble_size: int | None = None, seeds: int = 1,
                 init_scale: float = 1.0):
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        lead = (seeds,) if ensemble_size is None else (seeds, ensemble_size)
        self.weight = nn.Parameter(torch.empty(*lead, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(*lead, 1, out_features))
        bound = math.sqrt(6.0 * init_scale / (in_features + out_features))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = x.dim() == 3  # [S, N, in]: every member sees the same input
        if x.shape[0] == 1:
            # One seed: the single-model products (a bias-fused addmm; one baddbmm for all members), which
            # BLAS runs faster than a batch-of-one bmm followed by a bias add.
            # (squeeze, not x[0]: indexing's backward writes every gradient into a new zero tensor)
            x, weight, bias = x.squeeze(0), self.weight.squeeze(0), self.bias.squeeze(0)
            if self.ensemble_size is None:
                return torch.addmm(bias.squeeze(0), x, weight).unsqueeze(0)
            members = x.expand(self.ensemble_size, *x.shape) if shared else x
            return torch.baddbmm(bias, members, weight).unsqueeze(0)
        if self.ensemble_size is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.matmul(x.unsqueeze(1) if shared else x, self.weight) + self.bias


# flax's defaults, which the JAX reference code (FQL, and the IQL/ReBRAC/IFQL it reruns) uses: LayerNorm
# ε = 1e-6 (torch's default is 1e-5) and GELU in its tanh approximation (``nn.gelu(approximate=True)``).
LAYER_NORM_EPS = 1e-6


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the feature axis with independent affine parameters per seed (and member)."""

    def __init__(self, features: int, ensemble_size: int | None = None, seeds: int = 1, eps: float = LAYER_NORM_EPS):
        super().__init__()
        lead = (seeds, 1) if ensemble_size is None else (seeds, ensemble_size, 1)
        self.weight = nn.Parameter(torch.ones(*lead, features))
        self.bias = nn.Parameter(torch.zeros(*lead, features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


Activation = Literal["gelu", "gelu_exact", "relu", "mish", "tanh"]  # a config's allowed activations
ACTIVATIONS = {
    "gelu": lambda: nn.GELU(approximate="tanh"),  # flax's nn.gelu default, as in the JAX reference code
    "gelu_exact": nn.GELU,  # the erf form (torch's default)
    "relu": nn.ReLU,
    "mish": nn.Mish,
    "tanh": nn.Tanh,
}


class MLP(nn.Module):
    """Hidden layers of ``Linear → activation → (LayerNorm)``, then a linear output layer.

    The order is the reference code's (FQL's ``MLP``: Dense → activation → LayerNorm; CORL's ReBRAC the
    same); ``final_init_scale`` scales the output layer's initialisation variance (see ``EnsembleLinear``).

    Inputs ``[S, *lead, in]`` (several are concatenated on the last axis); output ``[S, *lead, out]``,
    or ``[S, E, *lead, out]`` with ``ensemble_size=E``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: str = "gelu",
        layer_norm: bool = False,
        ensemble_size: int | None = None,
        seeds: int = 1,
        final_init_scale: float = 1.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.ensemble_size = ensemble_size
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers.append(EnsembleLinear(d_in, d_out, ensemble_size, seeds))
            layers.append(ACTIVATIONS[activation]())
            if layer_norm:
                layers.append(EnsembleLayerNorm(d_out, ensemble_size, seeds))
        layers.append(EnsembleLinear(dims[-1], out_dim, ensemble_size, seeds, init_scale=final_init_scale))
        self.net = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        seeds, lead = x.shape[0], x.shape[1:-1]
        out = self.net(x.reshape(seeds, -1, x.shape[-1]))  # [S, N, in]: one matmul per layer
        if self.ensemble_size is None:
            return out.reshape(seeds, *lead, out.shape[-1])
        return out.reshape(seeds, self.ensemble_size, *lead, out.shape[-1])


class Critic(nn.Module):
    """``Q(s, a)`` (or ``V(s)`` with ``act_dim=0``) for an ensemble of ``E`` members: output ``[S, E, ...]``
    (``[S, ...]`` with ``ensemble_size=None``)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], ensemble_size: int | None = 2,
                 layer_norm: bool = True, activation: str = "gelu", seeds: int = 1):
        super().__init__()
        self.net = MLP(obs_dim + act_dim, hidden_dims, 1, activation, layer_norm, ensemble_size, seeds)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        inputs = (obs,) if actions is None else (obs, actions)
        return self.net(*inputs).squeeze(-1)


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy with a state-independent std.

    ``tanh_mean``: the mean is squashed by tanh (IQL's paper code) or left linear (the FQL code's
    ``Actor``); ``const_std``: the std is fixed at 1 (the FQL code's ``const_std=True``) instead of a
    learned log-std clipped to [log_std_min, log_std_max]; ``final_init_scale``: the mean layer's
    initialisation variance scale (the FQL code's ``Actor`` uses 0.01).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], activation: str = "gelu",
                 log_std_min: float = -5.0, log_std_max: float = 2.0, layer_norm: bool = False, seeds: int = 1,
                 tanh_mean: bool = True, const_std: bool = False, final_init_scale: float = 1.0):
        super().__init__()
        self.mean_net = MLP(obs_dim, hidden_dims, act_dim, activation, layer_norm, seeds=seeds,
                            final_init_scale=final_init_scale)
        self.log_std = nn.Parameter(torch.zeros(seeds, 1, act_dim), requires_grad=not const_std)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.tanh_mean = tanh_mean

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = self.mean_net(obs)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return torch.distributions.Normal(mean, std.expand_as(mean), validate_args=False)


class MixtureActor(nn.Module):
    """Mixture of ``K`` diagonal Gaussians (a mixture density network, robomimic's BC-GMM head)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], components: int,
                 activation: str = "gelu", min_std: float = 1e-4, layer_norm: bool = False, seeds: int = 1):
        super().__init__()
        self.act_dim, self.components, self.min_std = act_dim, components, min_std
        self.net = MLP(obs_dim, hidden_dims, components * (2 * act_dim + 1), activation, layer_norm, seeds=seeds)

    def forward(self, obs: torch.Tensor) -> torch.distributions.MixtureSameFamily:
        out = self.net(obs)
        k, d = self.components, self.act_dim
        logits = out[..., :k]
        means = torch.tanh(out[..., k : k + k * d]).reshape(*out.shape[:-1], k, d)
        stds = F.softplus(out[..., k + k * d :]).reshape(*out.shape[:-1], k, d) + self.min_std
        # validate_args=False: validation reads values back to the host (a sync, and no CUDA graph)
        component = torch.distributions.Independent(torch.distributions.Normal(means, stds, validate_args=False), 1,
                                                    validate_args=False)
        return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=logits, validate_args=False),
                                                     component, validate_args=False)


def sample_mixture(dist: torch.distributions.MixtureSameFamily, rng: "SeedRandom") -> torch.Tensor:
    """Draws one sample per row ``[S, N, d]`` with each seed's own generator."""
    idx = rng.multinomial(dist.mixture_distribution.probs)  # [S, N]
    comp = dist.component_distribution.base_dist
    gather = idx[..., None, None].expand(*idx.shape, 1, comp.loc.shape[-1])
    mean, std = comp.loc.gather(-2, gather).squeeze(-2), comp.scale.gather(-2, gather).squeeze(-2)
    return mean + std * rng.randn(mean.shape[1:], dtype=mean.dtype)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target ← (1 − τ) target + τ source`` (every seed at once)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)



def frozen_call(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` with its parameters detached: gradients reach the inputs (a policy's actions)
    but not the module (a critic evaluated in an actor's loss, when one optimiser holds both)."""
    return functional_call(module, {k: v.detach() for k, v in module.named_parameters()}, inputs)
