"""Networks shared by every algorithm: MLPs with an optional leading ensemble axis, and policy heads.

Every layer can carry a leading ensemble axis (batched weights of shape ``[E, in, out]``, one
``baddbmm`` for all members). Twin critics use it today; training N seeds of one algorithm as one
batched model uses the same axis later, so nothing here loops over members in Python.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class EnsembleLinear(nn.Module):
    """``y = x W + b`` for ``E`` independent members at once; ``E = None`` is a plain linear layer.

    Inputs are ``[..., in]`` without an ensemble (``E is None``) or ``[E, B, in]`` with one.
    Weights are Xavier-uniform per member, biases zero.
    """

    def __init__(self, in_features: int, out_features: int, ensemble_size: int | None = None):
        super().__init__()
        self.in_features, self.out_features, self.ensemble_size = in_features, out_features, ensemble_size
        lead = () if ensemble_size is None else (ensemble_size,)
        self.weight = nn.Parameter(torch.empty(*lead, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(*lead, 1, out_features) if lead else torch.zeros(out_features))
        bound = math.sqrt(6.0 / (in_features + out_features))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ensemble_size is None:
            return x @ self.weight + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the feature axis with independent affine parameters per ensemble member."""

    def __init__(self, features: int, ensemble_size: int | None = None, eps: float = 1e-5):
        super().__init__()
        lead = () if ensemble_size is None else (ensemble_size, 1)
        self.weight = nn.Parameter(torch.ones(*lead, features))
        self.bias = nn.Parameter(torch.zeros(*lead, features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "mish": nn.Mish, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Hidden layers of ``Linear → (LayerNorm) → activation``, then a linear output layer.

    With ``ensemble_size=E`` the input may be ``[B, in]`` (shared by all members) or ``[E, B, in]``,
    and the output is ``[E, B, out]``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: str = "gelu",
        layer_norm: bool = False,
        ensemble_size: int | None = None,
    ):
        super().__init__()
        self.ensemble_size = ensemble_size
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers.append(EnsembleLinear(d_in, d_out, ensemble_size))
            if layer_norm:
                layers.append(EnsembleLayerNorm(d_out, ensemble_size))
            layers.append(ACTIVATIONS[activation]())
        layers.append(EnsembleLinear(dims[-1], out_dim, ensemble_size))
        self.net = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        if self.ensemble_size is not None and x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble_size, *x.shape)
        return self.net(x)


class Critic(nn.Module):
    """``Q(s, a)`` (or ``V(s)`` with ``act_dim=0``) for an ensemble of ``E`` members: output ``[E, B]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], ensemble_size: int = 2,
                 layer_norm: bool = True, activation: str = "gelu"):
        super().__init__()
        self.net = MLP(obs_dim + act_dim, hidden_dims, 1, activation, layer_norm, ensemble_size)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        inputs = (obs,) if actions is None else (obs, actions)
        return self.net(*inputs).squeeze(-1)


class GaussianActor(nn.Module):
    """Gaussian policy with a tanh-bounded mean and a state-independent log-std (IQL's actor)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], activation: str = "gelu",
                 log_std_min: float = -5.0, log_std_max: float = 2.0, layer_norm: bool = False):
        super().__init__()
        self.mean_net = MLP(obs_dim, hidden_dims, act_dim, activation, layer_norm)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = torch.tanh(self.mean_net(obs))
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return torch.distributions.Normal(mean, std.expand_as(mean))


class MixtureActor(nn.Module):
    """Mixture of ``K`` diagonal Gaussians (a mixture density network, robomimic's BC-GMM head)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], components: int,
                 activation: str = "gelu", min_std: float = 1e-4, layer_norm: bool = False):
        super().__init__()
        self.act_dim, self.components, self.min_std = act_dim, components, min_std
        self.net = MLP(obs_dim, hidden_dims, components * (2 * act_dim + 1), activation, layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.distributions.MixtureSameFamily:
        out = self.net(obs)
        k, d = self.components, self.act_dim
        logits = out[..., :k]
        means = torch.tanh(out[..., k : k + k * d]).reshape(*out.shape[:-1], k, d)
        stds = F.softplus(out[..., k + k * d :]).reshape(*out.shape[:-1], k, d) + self.min_std
        component = torch.distributions.Independent(torch.distributions.Normal(means, stds), 1)
        return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=logits), component)


def sample_mixture(dist: torch.distributions.MixtureSameFamily, generator: torch.Generator | None) -> torch.Tensor:
    """Draws one sample per row with an explicit generator (torch.distributions cannot take one)."""
    probs = dist.mixture_distribution.probs
    idx = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    comp = dist.component_distribution.base_dist
    rows = torch.arange(idx.shape[0], device=idx.device)
    mean, std = comp.loc[rows, idx], comp.scale[rows, idx]
    return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target ← (1 − τ) target + τ source``."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
