"""The residual MLP of IDQL's noise network (``MLPResNet``), batched over seeds.

As jaxrl5/networks/resnet.py in philippe-eecs/IDQL (``MLPResNet`` L32–48, ``MLPResNetBlock`` L8–30):

    h = Dense_in(x)                                             (L42, xavier_uniform)
    num_blocks ×:  h = h + Dense_2(act(Dense_1(LN(Dropout(h)))))  (L17–30; Dense_1: hidden → 4·hidden)
    y = Dense_out(act(h))                                       (L46–47, xavier_uniform)

with flax's defaults elsewhere: the blocks' Dense layers use ``lecun_normal`` (a normal truncated at ±2σ,
variance 1/fan_in), biases start at zero, LayerNorm ε = 1e-6, and Dropout keeps an entry with probability
1 − rate and scales it by 1/(1 − rate), only in training (L18–20, ``deterministic=not training``). The block's
``residual = Dense(residual)`` branch (L27–28) never runs here: input and output of a block have the same width.

thu-ml/SRPO model.py (``MLPResNet``, ``MLPResNetBlock``) is the same network in PyTorch with torch's own
defaults: ``init="torch"`` (every Linear's weight and bias uniform in ±1/√fan_in) and ``layer_norm_eps=1e-5``
reproduce those; its blocks also hold an unused ``residual`` Linear, which changes nothing computed.

Parameters carry the leading seed axis (``algos.kit.networks``): input ``[S, ..., in]``, output ``[S, ..., out]``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from algos.kit.networks import ACTIVATIONS, LAYER_NORM_EPS, EnsembleLayerNorm, EnsembleLinear, torch_default_init_
from algos.kit.seeds import SeedRandom

Init = Literal["flax", "torch"]

# jax.nn.initializers.truncated_normal's correction: the std of a unit normal truncated at ±2 is 0.8796...,
# so lecun_normal draws from N(0, (σ / 0.8796)²) truncated at ±2 of that scale to reach variance σ².
TRUNCATED_NORMAL_STD = 0.87962566103423978


def lecun_normal_(weight: torch.Tensor) -> None:
    """flax's default kernel init on a ``[..., in, out]`` weight: truncated normal, variance 1/fan_in."""
    std = math.sqrt(1.0 / weight.shape[-2]) / TRUNCATED_NORMAL_STD
    with torch.no_grad():
        nn.init.trunc_normal_(weight, std=std, a=-2.0 * std, b=2.0 * std)


class ResidualBlock(nn.Module):
    """``h + Dense(4h → h)(act(Dense(h → 4h)(LN(Dropout(h)))))`` (resnet.py L16–30)."""

    def __init__(self, hidden_dim: int, activation: str, dropout: float, layer_norm: bool, seeds: int,
                 init: Init, layer_norm_eps: float):
        super().__init__()
        self.dropout = dropout
        self.norm = EnsembleLayerNorm(hidden_dim, seeds=seeds, eps=layer_norm_eps) if layer_norm else None
        self.expand = EnsembleLinear(hidden_dim, 4 * hidden_dim, seeds=seeds)
        self.act = ACTIVATIONS[activation]()
        self.contract = EnsembleLinear(4 * hidden_dim, hidden_dim, seeds=seeds)
        for linear in (self.expand, self.contract):
            if init == "flax":
                lecun_normal_(linear.weight)  # resnet.py L23, L25: nn.Dense without kernel_init
            else:
                torch_default_init_(linear)

    def forward(self, h: torch.Tensor, rng: SeedRandom | None) -> torch.Tensor:
        x = h
        if rng is not None and self.dropout > 0:  # L18–20: only when training
            keep = 1.0 - self.dropout
            x = torch.where(rng.rand(x.shape[1:], dtype=x.dtype) < keep, x / keep, torch.zeros_like(x))
        if self.norm is not None:
            x = self.norm(x)
        return h + self.contract(self.expand(x, activation=self.act))


class ResidualMLP(nn.Module):
    """jaxrl5's ``MLPResNet`` (IDQL's ``ln_resnet`` noise network; SRPO's behaviour model) for S seeds.

    ``forward(x, rng)``: ``x`` ``[S, ..., in_dim]`` → ``[S, ..., out_dim]``; with ``rng`` (training) each
    block draws its dropout mask from each seed's generator; without it (acting) there is no dropout.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, num_blocks: int = 3, dropout: float = 0.1,
                 layer_norm: bool = True, activation: str = "mish", seeds: int = 1, init: Init = "flax",
                 layer_norm_eps: float = LAYER_NORM_EPS):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if init not in ("flax", "torch"):
            raise ValueError(f"unknown init {init!r}; valid: flax, torch")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input = EnsembleLinear(in_dim, hidden_dim, seeds=seeds)  # L42: xavier_uniform (EnsembleLinear's)
        self.blocks = nn.ModuleList(ResidualBlock(hidden_dim, activation, dropout, layer_norm, seeds, init,
                                                  layer_norm_eps) for _ in range(num_blocks))
        self.act = ACTIVATIONS[activation]()
        self.output = EnsembleLinear(hidden_dim, out_dim, seeds=seeds)  # L47: xavier_uniform
        if init == "torch":
            torch_default_init_(self.input)
            torch_default_init_(self.output)

    def forward(self, x: torch.Tensor, rng: SeedRandom | None = None) -> torch.Tensor:
        seeds, lead = x.shape[0], x.shape[1:-1]
        h = self.input(x.reshape(seeds, -1, x.shape[-1]))  # [S, N, hidden]: one matmul per layer
        for block in self.blocks:
            h = block(h, rng)
        out = self.output(self.act(h))  # L46–47: the activation, then the output Dense
        return out.reshape(seeds, *lead, out.shape[-1])
