"""The seed axis: S seeds of one algorithm trained as one batched model.

Every tensor an agent trains on has a leading seed axis: parameters ``[S, ...]``, batches
``[S, B, ...]``, losses and metrics ``[S]``. Seed ``i`` of a batched agent computes exactly what a
one-seed agent of seed ``i`` computes:
- its random draws come from its own generator, in the same order (``SeedRandom``);
- every loss is reduced per seed (``seed_mean``) and the objective is their sum, so seed ``i``'s
  gradient is its own loss's gradient (Adam is elementwise: one optimiser serves every seed);
- a checkpoint of seed ``i`` is the batched state sliced at ``i`` (``seed_state``), and S one-seed
  states stack into a batched one (``stack_seed_states``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


class SeedRandom:
    """Random draws for S seeds at once: one generator per seed (``None``: the global generator),
    each draw stacked on a leading seed axis. Seed ``i``'s values are exactly those a one-seed run
    with generator ``i`` draws, call for call."""

    def __init__(self, generators: Sequence[torch.Generator | None], device: torch.device | str):
        self.generators = list(generators)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.generators)

    def _draw(self, sample: Any, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        # each seed's draw is written straight into its slice (no stacking copy: one kernel per seed)
        out = torch.empty((len(self.generators), *shape), device=self.device, dtype=dtype)
        for row, g in zip(out, self.generators):
            sample(tuple(shape), generator=g, out=row)
        return out

    def randn(self, shape: Sequence[int], dtype: torch.dtype | None = None) -> torch.Tensor:
        """``[S, *shape]`` standard normal."""
        return self._draw(torch.randn, shape, dtype or torch.get_default_dtype())

    def rand(self, shape: Sequence[int], dtype: torch.dtype | None = None) -> torch.Tensor:
        """``[S, *shape]`` uniform on [0, 1)."""
        return self._draw(torch.rand, shape, dtype or torch.get_default_dtype())

    def randint(self, high: int, shape: Sequence[int]) -> torch.Tensor:
        """``[S, *shape]`` integers in [0, high)."""
        return self._draw(lambda size, generator, out: torch.randint(high, size, generator=generator, out=out),
                          shape, torch.long)

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:
        """One category per row of ``probs`` ``[S, N, k]`` → ``[S, N]``."""
        return torch.stack([torch.multinomial(p, 1, generator=g).squeeze(-1)
                            for p, g in zip(probs, self.generators)])


def seed_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over everything but the leading seed axis: ``[S, ...]`` → ``[S]``."""
    return x.reshape(x.shape[0], -1).mean(1)


def per_seed(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` ``[S]`` shaped to broadcast against ``like`` ``[S, ...]``."""
    return x.reshape(x.shape[0], *([1] * (like.dim() - 1)))


def clip_grads_per_seed(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for each seed on its own, in place: seed ``i``'s gradients are
    scaled by ``min(1, max_norm / (‖g_i‖ + 1e-6))`` where ``‖g_i‖`` is its norm over all ``grads``; returns
    the norms ``[S]``."""
    norms = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(per_seed(coef, g))
    return norms


def map_seed_tensors(state: Any, fn: Any) -> Any:
    """Applies ``fn`` to every tensor with a seed axis (dim ≥ 1) in a nested state; 0-d tensors (Adam's
    step count, a tensor learning rate) and plain values are shared by all seeds and kept as they are."""
    if isinstance(state, torch.Tensor):
        return fn(state) if state.dim() >= 1 else state
    if isinstance(state, dict):
        return {k: map_seed_tensors(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_seed_tensors(v, fn) for v in state)
    return state


def seed_state(state: dict[str, Any], index: int) -> dict[str, Any]:
    """The one-seed state of seed ``index`` from a batched agent state (``Agent.state_dict``)."""
    sliced = {k: v for k, v in state.items() if k != "generators"}
    sliced = map_seed_tensors(sliced, lambda t: t[index : index + 1].clone())
    sliced["generators"] = [state["generators"][index]]
    return sliced


def stack_seed_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One batched state from one-seed states of the same step (the inverse of ``seed_state``)."""
    steps = {int(s["step"]) for s in states}
    if len(steps) != 1:
        raise ValueError(f"cannot batch seeds at different steps {sorted(steps)}")

    def stack(path_values: list[Any]) -> Any:
        first = path_values[0]
        if isinstance(first, torch.Tensor):
            return torch.cat(path_values) if first.dim() >= 1 else first
        if isinstance(first, dict):
            return {k: stack([v[k] for v in path_values]) for k in first}
        if isinstance(first, (list, tuple)):
            return type(first)(stack([v[i] for v in path_values]) for i in range(len(first)))
        return first

    out = stack([{k: v for k, v in s.items() if k != "generators"} for s in states])
    out["generators"] = [g for s in states for g in s["generators"]]
    return out
