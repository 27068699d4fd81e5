"""The agent interface every algorithm implements.

An agent owns its networks, optimisers and random generator; it never reads files, parses command
lines or talks to environments. The harness hands it batches of transitions and observations as
tensors on the agent's device, and asks for actions in [-1, 1].
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar, Hashable, Iterable, NamedTuple, Sequence

import torch

from algos.kit.config import AgentConfig
from algos.kit.seeds import SeedRandom, clip_grads_per_seed, stack_seed_states
from algos.kit.traced_optim import traced_coast, traced_minimize


class Batch(NamedTuple):
    """A batch of transitions; every tensor lives on the agent's device, ``[S, B, ...]`` with a leading
    seed axis (``Agent.update`` also takes a one-seed batch without it).

    ``masks`` is ``1 - terminal``: zero where the episode truly ended (a truncation is not an end).
    ``next_actions`` is the dataset's action at ``next_obs`` (ReBRAC's critic penalty); on the last
    transition of an episode, where the data has none, it repeats ``actions``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    masks: torch.Tensor
    next_actions: torch.Tensor | None = None


class Agent:
    """Base class: subclasses set the class attributes and implement ``train_step`` and ``select_actions``.

    An agent holds ``num_seeds`` (S) seeds of its algorithm as one batched model (``algos.kit.seeds``):
    every parameter, batch tensor, loss and metric has a leading seed axis, and seed ``i`` computes
    exactly what a one-seed agent of seed ``i`` computes. S = 1 is an ordinary run.

    Class attributes the harness reads:
    - ``name``: registry name.
    - ``config_class``: the config dataclass.
    - ``policy_update_parts``: names of the losses that form "the policy update"; ``policy_step``
      takes one gradient step on exactly those (timing, harness/timing.py).
    - ``profiles``: named override sets (``cpu``: the small profile for tests and CPU demos).
    - ``presets``: per-dataset overrides as ``(pattern, overrides)`` pairs, ``fnmatch`` patterns on
      the dataset id, applied in order (later ones win), e.g. FQL's alpha table.

    The training step is written so that it can be captured as a CUDA graph and replayed
    (harness/training.py): ``train_step`` does tensor work only — no reads back to the host, no
    Python state changed, no branch on tensor values; its Python branches depend on ``graph_key()``
    alone, and the Python bookkeeping (step count, learning-rate schedules) is in ``advance()``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    policy_update_parts: ClassVar[tuple[str, ...]] = ()
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    presets: ClassVar[tuple[tuple[str, dict[str, Any]], ...]] = ()

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        if num_seeds < 1:
            raise ValueError(f"num_seeds must be at least 1, got {num_seeds}")
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.config = config
        self.device = torch.device(device)
        self.num_seeds = num_seeds
        self.step = 0
        # The run's length in updates, when the harness knows it: learning-rate schedules that decay
        # "over the run" (IQL's actor, Diffusion-QL) use it. None outside a run: no decay.
        self.horizon: int | None = None
        # Each seed's own randomness (noise in losses) comes from its own generator so that a resumed
        # run replays exactly and a batched seed draws what it would draw alone; the harness seeds them.
        self.generators = [torch.Generator(device=self.device) for _ in range(num_seeds)]
        for g in self.generators:
            g.manual_seed(0)
        self.rng = SeedRandom(self.generators, self.device)

    # -- to implement -------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One full update on a seeded batch (``[S, B, ...]``); returns detached ``[S]`` metrics, the
        same keys every step. Tensor work only (see the class docstring)."""
        raise NotImplementedError

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        """Actions ``[S, N, act_dim]`` in [-1, 1] for observations ``[S, N, obs_dim]`` (no grad)."""
        raise NotImplementedError

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        """One gradient step on the policy's losses alone (``policy_update_parts``), computed as
        ``train_step`` computes them; the critic is not trained and ``step`` does not advance. This is
        what timing measures as "the policy update". Returns the detached ``[S]`` loss."""
        raise NotImplementedError(f"{type(self).__name__} does not separate its policy update")

    def graph_key(self) -> Hashable:
        """Which code path the next ``train_step`` takes (a function of ``step``): one CUDA graph is
        captured per key. Agents whose step always runs the same code return None."""
        return None

    def advance(self) -> None:
        """The Python side of a finished update: the step count and anything that follows it."""
        self.step += 1

    def modules(self) -> dict[str, torch.nn.Module]:
        """Every network (targets included) by name; used for state_dict and train/eval modes."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    # -- public calls (one-seed tensors without a seed axis are accepted) -------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step: ``train_step`` then ``advance``. Returns tensors (no host sync): ``[S]``
        per metric for a seeded batch, 0-d for a one-seed batch given without the seed axis."""
        unbatched = batch.obs.dim() == 2
        metrics = self.train_step(self.with_seed_axis(batch) if unbatched else batch)
        self.advance()
        return {k: v[0] for k, v in metrics.items()} if unbatched else metrics

    def policy_step(self, batch: Batch) -> torch.Tensor:
        unbatched = batch.obs.dim() == 2
        loss = self.policy_train_step(self.with_seed_axis(batch) if unbatched else batch)
        return loss[0] if unbatched else loss

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator | None] | None = None
            ) -> torch.Tensor:
        """Actions for ``obs`` ``[S, N, obs_dim]`` (or ``[N, obs_dim]`` for a one-seed agent), drawing
        each seed's noise from its ``generator`` (one, or one per seed; None: the global generator)."""
        unbatched = obs.dim() == 2
        if unbatched:
            self.require_one_seed("act on observations without a seed axis")
            obs = obs.unsqueeze(0)
        generators = list(generator) if isinstance(generator, (list, tuple)) else [generator] * self.num_seeds
        if len(generators) != self.num_seeds:
            raise ValueError(f"{len(generators)} generators for {self.num_seeds} seeds")
        actions = self.select_actions(obs, SeedRandom(generators, obs.device))
        return actions[0] if unbatched else actions

    def with_seed_axis(self, batch: Batch) -> Batch:
        self.require_one_seed("train on a batch without a seed axis")
        return Batch(*(None if x is None else x.unsqueeze(0) for x in batch))

    def require_one_seed(self, what: str) -> None:
        if self.num_seeds != 1:
            raise ValueError(f"cannot {what} with {self.num_seeds} seeds: give tensors a leading seed axis")

    # -- shared -------------------------------------------------------------------------------
    def adam(self, params: Iterable[torch.nn.Parameter] | Sequence[tuple[Iterable[torch.nn.Parameter], float]],
             lr: float | None = None) -> torch.optim.Optimizer:
        """Adam as every agent uses it, over ``params`` at ``lr``, or over parameter groups given as
        ``(params, lr)`` pairs (one Adam for several networks, each network at its own learning rate: Adam's
        update of a parameter does not depend on its group, so this is the single-lr Adam when they agree).
        On CUDA: fused (one kernel reads each parameter, gradient and moment once — the foreach version
        makes about a dozen passes, which dominates a step of several batched seeds), capturable (its step
        count on the GPU, so the update can be replayed as a CUDA graph), with each learning rate as a
        tensor (schedules change it in place, without a host sync). On CPU: fused too (its step measured 2.3× faster
        than the default per-parameter loop on a 4-network parameter set, one thread), float learning rates."""
        if lr is None:
            groups = [{"params": list(group_params), "lr": group_lr} for group_params, group_lr in params]
        else:
            groups = [{"params": list(params), "lr": lr}]
        if self.device.type == "cuda":
            for group in groups:
                group["lr"] = torch.tensor(group["lr"], device=self.device)
            return torch.optim.Adam(groups, lr=groups[0]["lr"], capturable=True, fused=True)
        return torch.optim.Adam(groups, lr=groups[0]["lr"], fused=True)

    @staticmethod
    def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
        """Sets the learning rate of every parameter group of ``optimizer`` without a host sync (in place
        where it is a tensor)."""
        for group in optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def cosine_lr(self, lr: float, decay_steps: int = 0, start: int = 0) -> float:
        """The learning rate after ``step`` updates of a cosine decay to 0 that begins at update ``start`` and
        lasts T = ``decay_steps`` updates (0: the rest of the run, ``horizon − start``):
        ``lr · (1 + cos(π · min(max(step − start, 0), T) / T)) / 2``, staying at 0 after T as optax's
        ``cosine_decay_schedule`` does (torch's ``CosineAnnealingLR`` rises again). ``lr`` itself when there
        is no horizon."""
        horizon = decay_steps or ((self.horizon - start) if self.horizon else 0)
        if horizon <= 0:
            return lr
        return lr * (1.0 + math.cos(math.pi * min(max(self.step - start, 0), horizon) / horizon)) / 2.0

    def schedule_lr(self, optimizer: torch.optim.Optimizer, lr: float, schedule: str, decay_steps: int = 0) -> None:
        """Sets ``optimizer``'s learning rate for the next update: ``cosine_lr(lr, decay_steps)`` where ``schedule``
        is "cosine"; any other schedule (constant) leaves it at ``lr``."""
        if schedule == "cosine":
            self.set_lr(optimizer, self.cosine_lr(lr, decay_steps))

    def periodic(self, every: int, start: int = 0) -> bool:
        """Whether the next update is one of a periodic step's (an EMA step, a delayed actor): the updates done
        before it are a multiple of ``every`` and at least ``start``."""
        return self.step % every == 0 and self.step >= start

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy): torch's own state dicts alias live tensors, e.g. Adam's step count."""
        return copy.deepcopy({
            "step": self.step,
            "generators": [g.get_state() for g in self.generators],
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "extra": self.extra_state(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["generators"]) != self.num_seeds:
            raise ValueError(f"state of {len(state['generators'])} seeds for an agent of {self.num_seeds}")
        self.step = int(state["step"])
        for g, g_state in zip(self.generators, state["generators"]):
            g.set_state(g_state.cpu())
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
            for group in o.param_groups:  # a checkpoint moved between CPU and CUDA: lr as this device has it
                lr = float(group["lr"])
                group["lr"] = torch.tensor(lr, device=self.device) if self.device.type == "cuda" else lr
        self.load_extra_state(state["extra"])

    def load_seed_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        """Loads one one-seed state per seed (all at the same step)."""
        self.load_state_dict(stack_seed_states(states))

    def extra_state(self) -> dict[str, Any]:
        """Anything else ``update`` depends on: plain Python values shared by all seeds, or tensors with
        a leading seed axis."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def minimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_params: Any = None,
                 max_grad_norm: float = 0.0) -> torch.Tensor:
        """One optimiser step on the per-seed ``loss`` ``[S]`` (their sum: seed i's parameters get seed
        i's gradient; parameters without a gradient are left alone), optionally clipping each seed's
        gradient norm over ``clip_params``; returns the detached ``[S]`` loss."""
        if torch.compiler.is_compiling():  # the same update, traceable into one graph with the losses
            return traced_minimize(optimizer, loss, clip_params, max_grad_norm)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if clip_params is not None and max_grad_norm > 0:
            clip_grads_per_seed([p.grad for p in clip_params if p.grad is not None], max_grad_norm)
        optimizer.step()
        return loss.detach()

    @staticmethod
    def coast(optimizer: torch.optim.Optimizer) -> None:
        """An optimiser step with zero gradients: Adam's parameters still move on their momentum. This is
        what a reference that trains several networks with one optax Adam does to a network whose loss
        is switched off on this step (ReBRAC's actor between its delayed updates)."""
        if torch.compiler.is_compiling():
            traced_coast(optimizer)
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad:  # reuse the last step's gradient buffers (this runs every other update)
                    p.grad = torch.zeros_like(p) if p.grad is None else p.grad.zero_()
        optimizer.step()
