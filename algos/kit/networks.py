"""Networks shared by every algorithm: MLPs with a leading seed axis and an optional ensemble axis.

Every parameter carries a leading **seed axis** of size ``S`` (``seeds``): an agent trains S seeds of
one algorithm as one batched model, each seed with its own weights, batches and noise, and S = 1 is
an ordinary single-seed run. Critics add an **ensemble axis** ``E`` (twin Q) after it. A layer's
weight is ``[S, (E,) in, out]`` and all members run in one batched matmul, so nothing here loops over
seeds or members in Python.

Shapes: inputs are ``[S, ..., in]``; an ensemble network returns ``[S, E, ..., out]``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, Iterator, Literal, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from algos.kit.seeds import SeedRandom


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

    def forward(self, x: torch.Tensor, activation: nn.Module | None = None) -> torch.Tensor:
        """``x W + b``, or ``activation(x W + b)`` when the activation that follows is given (then, for a
        batched product on CUDA within ``bias_activation_fusion``, bias and activation run as one kernel)."""
        seeds, n = x.shape[0], x.shape[-2]
        if self.ensemble_size is None and seeds == 1:
            # One seed: a bias-fused addmm, which BLAS runs faster than a batch-of-one bmm.
            # (squeeze, not x[0]: indexing's backward writes every gradient into a new zero tensor)
            out = torch.addmm(self.bias.squeeze(0).squeeze(0), x.squeeze(0), self.weight.squeeze(0)).unsqueeze(0)
            return out if activation is None else activation(out)
        if self.ensemble_size is None:
            batched_x, weight, bias = x, self.weight, self.bias
        else:
            # Every (seed, member) pair as one batch entry: a shared input [S, N, in] is expanded over the
            # members (a view for one seed), weights and biases are viewed as [S·E, ...].
            members = self.ensemble_size
            if x.dim() == 3:
                x = x.unsqueeze(1).expand(seeds, members, n, self.in_features)
            batched_x = x.reshape(seeds * members, n, self.in_features)
            weight = self.weight.reshape(seeds * members, self.in_features, self.out_features)
            bias = self.bias.reshape(seeds * members, 1, self.out_features)
        if activation is not None and _fusion_on and x.device.type in FUSED_DEVICE_TYPES:
            out = fused_bias_activation(activation)(torch.bmm(batched_x, weight), bias)
        else:
            out = torch.baddbmm(bias, batched_x, weight)
            if activation is not None:
                out = activation(out)
        return out if self.ensemble_size is None else out.reshape(seeds, self.ensemble_size, n, self.out_features)


# Where a batched layer's bias add and activation run as one compiled kernel. A batched product (bmm) has
# no bias epilogue: baddbmm first copies the broadcast bias into its output, one non-vectorised pass per
# layer, which was the largest elementwise cost of an 8-seed FQL step on an H100 (tests/benchmarks/
# gpu_kernel_profile.py). The CPU keeps the eager baddbmm: nothing to gain there, and nothing to compile.
FUSED_DEVICE_TYPES: tuple[str, ...] = ("cuda",)
FUSION_BACKEND = "inductor"  # torch.compile's backend for it (inductor writes the fused Triton kernel)
_fusion_on = False


@contextlib.contextmanager
def bias_activation_fusion(enabled: bool = True) -> Iterator[None]:
    """Within this context, batched layers on a ``FUSED_DEVICE_TYPES`` device run bias add and activation
    as one compiled kernel. ``harness.training`` turns it on for the steps it captures as CUDA graphs: a
    replay runs the fused kernel at no host cost, while an eager step would pay dynamo's guard checks on
    every layer call — more host time than the pass saves (8 FQL seeds, eager: 349 seed-updates/s fused on
    an H200, 604 unfused on an H100; different cards, but the H200 is not the slower one)."""
    global _fusion_on
    previous, _fusion_on = _fusion_on, enabled
    try:
        yield
    finally:
        _fusion_on = previous


class FusedBiasActivation:
    """``activation(z + b)`` compiled by ``torch.compile`` into one kernel (and one for its backward).
    If compiling fails, it warns once, naming the reason, and runs eagerly."""

    def __init__(self, activation: nn.Module):
        self.activation = activation
        # Every instance compiles the same code object (``eager``), once per activation, grad mode, which
        # inputs require gradients (a frozen critic's bias does not) and shape: more variants than dynamo's
        # default limit of 8 per code object, which would turn the fusion off midway through a suite.
        import torch._dynamo  # explicit: not every torch version loads it with torch

        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit, max(getattr(config, limit), 64))
        self.compiled = torch.compile(self.eager, fullgraph=True, backend=FUSION_BACKEND)
        self.failure: str | None = None

    def eager(self, z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.activation(z + bias)

    def __call__(self, z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.failure is None:
            try:
                return self.compiled(z, bias)
            except Exception as e:  # noqa: BLE001 — any compiler failure: run eagerly, and say why
                self.failure = f"{type(e).__name__}: {e}"
                warnings.warn(f"fused bias + {self.activation} not compiled, running it eagerly: {self.failure}",
                              stacklevel=2)
        return self.eager(z, bias)


_FUSED: dict[str, FusedBiasActivation] = {}  # one per kind of activation (its repr), shared by every layer


def fused_bias_activation(activation: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The fused ``activation(z + b)`` for an activation module (one compiled function per kind)."""
    key = repr(activation)
    if key not in _FUSED:
        _FUSED[key] = FusedBiasActivation(activation)
    return _FUSED[key]


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


def mish_one_exp(x: torch.Tensor) -> torch.Tensor:
    """Mish, ``x · tanh(softplus(x))``, with one ``exp``: ``tanh(softplus(x)) = n / (n + 2)`` with ``n = eˣ(eˣ + 2)``,
    exact algebra. ``x`` is clamped at 20 inside the exp: above it the factor is 1 in float32 and its gradient 0,
    as torch's softplus returns x above 20. Against float64 from −30 to 30: forward within 1.6e-7·(1 + |y|),
    gradient within 5e-6 (torch's kernel: 1.2e-7 and 1e-6; autograd's derivative of the quotient cancels near
    x = 20, where the exact one is 1 to float32 precision; a form without that cancellation took half as long
    again to compile); ±inf and NaN as torch's, but the gradient at +inf is 1 (torch's: NaN)."""
    e = torch.exp(torch.clamp(x, max=20.0))
    n = e * (e + 2.0)
    return x * (n / (n + 2.0))


class Mish(nn.Mish):
    """``nn.Mish``, whose compiled form (``torch.compile``: the compiled CPU step, the fused CUDA bias
    activation) is ``mish_one_exp``, where inductor's decomposition of torch's mish computes three
    transcendentals (exp, log1p, tanh) forward and again backward: a 1024×256 Mish forward and backward,
    compiled on 2 CPU cores, took 0.4–0.5 ms instead of 1.0–1.2, and Mish had been a third of CAC's compiled
    step. Eager runs keep torch's kernel (``tests/test_networks.py`` checks the two agree)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return mish_one_exp(x)
        return F.mish(x)


Activation = Literal["gelu", "gelu_exact", "relu", "mish", "tanh"]  # a config's allowed activations
ACTIVATIONS = {
    "gelu": lambda: nn.GELU(approximate="tanh"),  # flax's nn.gelu default, as in the JAX reference code
    "gelu_exact": nn.GELU,  # the erf form (torch's default)
    "relu": nn.ReLU,
    "mish": Mish,
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
        # (linear, the activation after it, the LayerNorm after that): the forward pass hands each linear its
        # activation, to fuse with its bias add. A plain tuple, so the modules stay registered under ``net``
        # alone (its state_dict keys are the checkpoints').
        blocks: list[tuple[EnsembleLinear, nn.Module | None, EnsembleLayerNorm | None]] = []
        dims = [in_dim, *hidden_dims]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            linear, act = EnsembleLinear(d_in, d_out, ensemble_size, seeds), ACTIVATIONS[activation]()
            norm = EnsembleLayerNorm(d_out, ensemble_size, seeds) if layer_norm else None
            layers += [linear, act] + ([norm] if norm is not None else [])
            blocks.append((linear, act, norm))
        output = EnsembleLinear(dims[-1], out_dim, ensemble_size, seeds, init_scale=final_init_scale)
        layers.append(output)
        blocks.append((output, None, None))
        self.net = nn.Sequential(*layers)
        self.blocks = tuple(blocks)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        seeds, lead = x.shape[0], x.shape[1:-1]
        out = x.reshape(seeds, -1, x.shape[-1])  # [S, N, in]: one matmul per layer
        for linear, activation, norm in self.blocks:
            out = linear(out, activation=activation)
            if norm is not None:
                out = norm(out)
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



def torch_default_init_(module: nn.Module) -> nn.Module:
    """Every linear layer of ``module`` (itself, if it is one) as ``torch.nn.Linear`` initialises it: weight and
    bias uniform in ±1/√fan_in. flowbench's layers start Xavier-uniform with zero biases (the JAX references'
    init); the PyTorch references' networks (SRPO, CAC) start like this."""
    for layer in module.modules():
        if isinstance(layer, EnsembleLinear):
            bound = 1.0 / math.sqrt(layer.in_features)
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound)
                layer.bias.uniform_(-bound, bound)
    return module


def frozen_call(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` with its parameters detached: gradients reach the inputs (a policy's actions)
    but not the module (a critic evaluated in an actor's loss, when one optimiser holds both)."""
    return functional_call(module, {k: v.detach() for k, v in module.named_parameters()}, inputs)
