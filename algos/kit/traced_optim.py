"""``Agent.minimize`` and ``Agent.coast`` in a form ``torch.compile`` traces into one graph with the losses.

Eager training calls ``zero_grad``, ``backward`` and ``optimizer.step``; dynamo breaks the graph at each of
them (``Optimizer.step`` breaks it on purpose), and each break costs a return to Python, guard checks and a
separate forward and backward graph. While compiling (``torch.compiler.is_compiling()``, harness/compiling.py)
the agent runs the same update written functionally: gradients from ``torch.autograd.grad`` (which dynamo
traces with ``trace_autograd_ops``), the same per-seed clipping, and Adam's arithmetic on the optimiser's own
state tensors, in place — so eager and compiled steps share one optimiser state and checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch

from algos.kit.seeds import clip_grads_per_seed


def traced_minimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_params: Any = None,
                    max_grad_norm: float = 0.0) -> torch.Tensor:
    """``Agent.minimize``: one Adam step on the sum of the per-seed ``loss``; parameters that get no gradient
    are left alone (as Adam skips a parameter whose ``.grad`` is None); returns the detached loss."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
    grad_of = {id(p): g for p, g in zip(params, grads) if g is not None}
    with torch.no_grad():
        if clip_params is not None and max_grad_norm > 0:
            clip_grads_per_seed([grad_of[id(p)] for p in clip_params if id(p) in grad_of], max_grad_norm)
        adam_step(optimizer, grad_of)
    return loss.detach()


def traced_coast(optimizer: torch.optim.Optimizer) -> None:
    """``Agent.coast``: an Adam step with zero gradients for every trainable parameter."""
    adam_step(optimizer, {id(p): torch.zeros_like(p) for group in optimizer.param_groups
                          for p in group["params"] if p.requires_grad})


@torch.no_grad()
def adam_step(optimizer: torch.optim.Optimizer, grad_of: dict[int, torch.Tensor]) -> None:
    """One step of ``optimizer`` (``torch.optim.Adam`` or ``AdamW``) with the gradients ``grad_of[id(param)]``,
    skipping parameters missing from it. The arithmetic of torch's fused CPU kernel
    (aten/src/ATen/native/cpu/FusedAdamKernel.cpp), written as tensor operations that inductor fuses into one
    loop per parameter (``torch._fused_adam_`` itself has no meta implementation, so it cannot be traced); the
    bias corrections are computed in float32 from the step tensor rather than in double on the host. The
    optimiser's state must exist: the first call of a code path runs eagerly (harness/compiling.py)."""
    for group in optimizer.param_groups:
        if group["amsgrad"] or group["maximize"]:
            raise NotImplementedError("adam_step: Adam or AdamW without amsgrad or maximize")
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            grad = grad_of.get(id(p))
            if grad is None:
                continue
            state = optimizer.state[p]
            step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
            step.add_(1)
            if weight_decay and group.get("decoupled_weight_decay", False):  # AdamW
                p.mul_(1 - lr * weight_decay)
            elif weight_decay:
                grad = grad + weight_decay * p
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1 ** step)
            denom = exp_avg_sq.sqrt() / (1 - beta2 ** step).sqrt() + eps
            p.sub_(step_size * exp_avg / denom)
