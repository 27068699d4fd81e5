"""The agent interface every algorithm implements, and its registry.

An agent owns its networks, optimisers and random generator; it never reads files, parses command
lines or talks to environments. The harness hands it batches of transitions and observations as
tensors on the agent's device, and asks for actions in [-1, 1].
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Hashable, Iterable, NamedTuple, Sequence

import torch

from algos.seeds import SeedRandom, clip_grad_norm_per_seed, stack_seed_states


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


class ConfigError(ValueError):
    """A configuration key or value that the agent does not accept."""


@dataclass
class AgentConfig:
    """Base of every agent config: a dataclass whose fields are the algorithm's hyperparameters.

    ``reward_transform`` names how the harness turns the dataset's rewards into the rewards this
    algorithm trains on (``harness.data.REWARD_TRANSFORMS``: none, minus_one, iql_locomotion,
    cql_antmaze, ...). It is part of the algorithm's config, set per benchmark by its presets, because
    each published number came with its own convention (IQL/FQL: antmaze r − 1; Diffusion-QL: (r − 0.5)·4).
    """

    reward_transform: str = "none"

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AgentConfig":
        """Builds a config, rejecting keys the algorithm does not have and coercing types."""
        unknown = sorted(set(values) - set(cls.field_names()))
        for key in unknown:
            renamed = renamed_key_message(cls, key)
            if renamed:
                raise ConfigError(renamed)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid keys: {', '.join(cls.field_names())}"
            )
        hints = typing.get_type_hints(cls)
        config = cls(**{k: coerce(k, v, hints[k]) for k, v in values.items()})
        for f in fields(config):
            check_range(f.name, getattr(config, f.name))
        return config

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> "AgentConfig":
        return type(self).from_dict({**self.to_dict(), **changes})


# One name per concept across every agent, so that ``--set key=value`` means the same
# everywhere. Keys that agents used to have, mapped to the keys that replaced them; a config refuses an
# old key with a message naming the replacements it has (``renamed_key_message``), whether the key came
# from ``--set``, a suite's ``overrides:`` or a preset.
RENAMED_KEYS: dict[str, tuple[str, ...]] = {
    "flow_steps": ("sampling_steps",),  # K, the sampler's steps (Euler, DDPM or consistency)
    "diffusion_steps": ("sampling_steps",),
    "hidden_dims": ("actor_hidden_dims", "value_hidden_dims"),  # policy-side | critic and value networks
    "layer_norm": ("critic_layer_norm",),
    "temperature": ("awr_temperature", "energy_scale"),  # AWR β (IQL, FAWAC) | β of exp(β Q) (QIPO)
    "lr": ("actor_lr", "critic_lr", "value_lr"),
    "lr_schedule": ("actor_lr_schedule", "critic_lr_schedule"),
    "num_samples": ("num_candidates",),  # candidates drawn when acting
}
# Where an agent's old key meant another concept than the table says, by config class: Flow BC's one
# ``layer_norm`` was its flow's (a policy network; it has no critic).
RENAMED_KEYS_BY_CONFIG: dict[str, dict[str, tuple[str, ...]]] = {
    "FlowBCConfig": {"layer_norm": ("actor_layer_norm",)},
}


def renamed_key_message(config_class: type[AgentConfig], key: str) -> str | None:
    """Why ``key`` is refused if it is an old name of a key ``config_class`` has: "config key 'flow_steps'
    was renamed to 'sampling_steps'". None for a key that was never renamed, or whose replacements this
    config lacks (an agent that never had it: the plain unknown-key message)."""
    table = {**RENAMED_KEYS, **RENAMED_KEYS_BY_CONFIG.get(config_class.__name__, {})}
    replacements = [k for k in table.get(key, ()) if k in config_class.field_names()]
    if not replacements:
        return None
    if len(replacements) == 1:
        return f"config key {key!r} was renamed to {replacements[0]!r}"
    names = ", ".join(repr(k) for k in replacements[:-1]) + f" and {replacements[-1]!r}"
    return f"config key {key!r} was renamed to {names} (one per kind of network)"


# Allowed ranges of numeric config fields, by field name; any other number must be finite and >= 0 (no
# hyperparameter of these algorithms is negative). Fields ending in ``_lr`` or ``_hidden_dims`` or
# starting with ``num_`` must be > 0.
POSITIVE_FIELDS = {"batch_size", "sampling_steps", "time_dim", "components", "actor_freq", "ema_every", "renew_every",
                   "grad_norm", "max_weight", "actor_final_init_scale", "noise_levels", "eps", "max_noise", "rho"}
INTERVAL_FIELDS: dict[str, tuple[Callable[[float], bool], str]] = {
    "discount": (lambda v: 0 < v <= 1, "(0, 1]"), "tau": (lambda v: 0 < v <= 1, "(0, 1]"),
    "expectile": (lambda v: 0 < v < 1, "(0, 1)"), "ema_decay": (lambda v: 0 <= v <= 1, "[0, 1]"),
    "pretrain_fraction": (lambda v: 0 <= v <= 1, "[0, 1]"), "actor_dropout": (lambda v: 0 <= v < 1, "[0, 1)")}


def check_range(key: str, value: Any) -> None:
    """Rejects a value no run could use (a negative batch size, an infinite learning rate, a discount of 2)."""
    if isinstance(value, tuple):
        for item in value:
            check_range(key, item)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise ConfigError(f"config key {key!r} must be finite, got {value!r}")
    if key in INTERVAL_FIELDS:
        inside, text = INTERVAL_FIELDS[key]
        if not inside(value):
            raise ConfigError(f"config key {key!r} must be in {text}, got {value!r}")
    elif key in POSITIVE_FIELDS or key.endswith(("_lr", "_hidden_dims")) or key.startswith("num_"):
        if value <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {value!r}")
    elif value < 0:
        raise ConfigError(f"config key {key!r} must be >= 0, got {value!r}")


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Turns a value (possibly a string from ``--set key=value``) into the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return coerce(key, value, non_none[0])
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        return tuple(coerce(key, v, args[0]) for v in value)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if value not in (True, False):  # 0 and 1 too; 2 or 'x' are no booleans
                raise ValueError(value)
            return bool(value)
        if hint is int:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not float(number).is_integer():
                raise ValueError(value)
            return int(number)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


class Agent:
    """Base class: subclasses set the class attributes and implement ``train_step`` and ``select_actions``.

    An agent holds ``num_seeds`` (S) seeds of its algorithm as one batched model (``algos.seeds``):
    every parameter, batch tensor, loss and metric has a leading seed axis, and seed ``i`` computes
    exactly what a one-seed agent of seed ``i`` computes. S = 1 is an ordinary run.

    Class attributes the harness reads:
    - ``name``: registry name.
    - ``config_class``: the config dataclass.
    - ``samples_flow_in_training``: whether ``update`` runs a flow/diffusion sampler.
    - ``policy_update_parts``: names of the losses that form "the policy update"; ``policy_step``
      takes one gradient step on exactly those (timing, harness/timing.py).
    - ``steps_field``: the config field holding K, the number of sampler steps (``sampling_steps``), or None.
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
    samples_flow_in_training: ClassVar[bool] = False
    policy_update_parts: ClassVar[tuple[str, ...]] = ()
    steps_field: ClassVar[str | None] = None
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
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if clip_params is not None and max_grad_norm > 0:
            clip_grad_norm_per_seed(list(clip_params), max_grad_norm)
        optimizer.step()
        return loss.detach()

    @staticmethod
    def coast(optimizer: torch.optim.Optimizer) -> None:
        """An optimiser step with zero gradients: Adam's parameters still move on their momentum. This is
        what a reference that trains several networks with one optax Adam does to a network whose loss
        is switched off on this step (ReBRAC's actor between its delayed updates)."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad:  # reuse the last step's gradient buffers (this runs every other update)
                    p.grad = torch.zeros_like(p) if p.grad is None else p.grad.zero_()
        optimizer.step()

    def num_parameters(self) -> int:
        return sum(p.numel() for m in self.modules().values() for p in m.parameters())


# Conventions of the FQL code (seohongpark/fql), shared by every agent it runs (FQL, IQL, ReBRAC, IFQL) and
# applied here to the agents compared under them: D4RL antmaze rewards r − 1 (envs/d4rl_utils.py) and the
# per-task discounts of its README command lines (OGBench antmaze-giant, humanoidmaze, antsoccer: 0.995).
FQL_CODE_ANTMAZE_REWARDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("D4RL/antmaze/*", {"reward_transform": "minus_one"}),
)
FQL_CODE_OGBENCH_DISCOUNTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ogbench/antmaze-giant-*", {"discount": 0.995}),
    ("ogbench/humanoidmaze-*", {"discount": 0.995}),
    ("ogbench/antsoccer-*", {"discount": 0.995}),
)
# The benchmarks of the FQL paper's tables (Minari's D4RL ports, OGBench, flowbench's OGBench-style builds).
FQL_PAPER_BENCHMARKS = ("D4RL/antmaze/*", "D4RL/pen/*", "D4RL/door/*", "D4RL/hammer/*", "D4RL/relocate/*",
                        "ogbench/*", "local/ogbench/*")


REGISTRY: dict[str, type[Agent]] = {}


def register(cls: type[Agent]) -> type[Agent]:
    """Class decorator adding an agent to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY:
        raise ValueError(f"agent name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


class UnknownAlgorithm(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


# What the fields every family shares mean (a field's own trailing comment in its config class wins): the
# shared vocabulary, one name per concept (README, "Config vocabulary").
COMMON_FIELD_MEANINGS = {
    "reward_transform": "dataset rewards → training rewards (none, minus_one, iql_locomotion, cql_antmaze, "
                        "standardize, times_100); set per benchmark by presets",
    "discount": "γ", "tau": "Polyak rate of the target networks", "batch_size": "transitions per update",
    "sampling_steps": "K, steps of the policy's sampler (Euler steps of a flow, DDPM denoising steps, "
                      "consistency-model steps)",
    "actor_lr": "Adam learning rate of the policy-side networks", "critic_lr": "Adam learning rate of the critic",
    "value_lr": "Adam learning rate of the value network V",
    "actor_lr_schedule": "cosine: the policy's lr decays to 0 over the run | constant",
    "critic_lr_schedule": "cosine: the critic's lr decays to 0 over the run | constant",
    "actor_hidden_dims": "hidden layer widths of the policy-side network(s)",
    "value_hidden_dims": "hidden layer widths of the critic and value networks",
    "critic_layer_norm": "LayerNorm after each hidden activation of the critic and value networks",
    "actor_layer_norm": "LayerNorm after each hidden activation of the policy-side network(s)",
    "activation": "hidden activation ('gelu': tanh form, as flax)", "expectile": "τ of the in-sample value (IQL)",
    "num_qs": "critic ensemble size", "max_weight": "clip of the advantage weights",
    "awr_temperature": "β, the inverse temperature of the advantage weights exp(β A)",
    "energy_scale": "λ (β), the inverse temperature of the target π ∝ π_β exp(λ Q)",
    "num_candidates": "N, actions drawn per state when acting, the best (or one by weight) taken",
}


@dataclass(frozen=True)
class FieldDoc:
    """One config field as ``flowbench algos -v`` shows it."""

    name: str
    default: Any
    choices: tuple[Any, ...]  # a Literal field's allowed values; () for any value of its type
    meaning: str  # its trailing comment in the config class, else COMMON_FIELD_MEANINGS, else ""


def describe(cls: type[Agent]) -> tuple[str, list[FieldDoc]]:
    """An agent's one-paragraph summary (its module docstring's first paragraph, or its own class docstring
    where one module holds several agents) and its config fields with their meanings and choices."""
    module_doc = (inspect.getmodule(cls).__doc__ or "").strip()
    summary = " ".join((cls.__dict__.get("__doc__") or module_doc).strip().split("\n\n")[0].split())
    meanings = dict(COMMON_FIELD_MEANINGS)
    for klass in reversed(cls.config_class.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for match in re.finditer(r"^\s+(\w+): [^=\n]+=[^#\n]*#\s*(.+)$", source, re.MULTILINE):
            meanings[match.group(1)] = match.group(2).strip()
    hints = typing.get_type_hints(cls.config_class)
    docs = [FieldDoc(f.name, f.default, typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is
                     typing.Literal else (), meanings.get(f.name, "")) for f in fields(cls.config_class)]
    return summary, docs


def get_agent_class(name: str) -> type[Agent]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownAlgorithm(
            f"unknown algorithm {name!r}; valid choices: {', '.join(sorted(REGISTRY))}"
        ) from None


def matching_presets(name: str, dataset_id: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The algorithm's per-dataset presets whose pattern matches ``dataset_id``, in application order."""
    if not dataset_id:
        return []
    return [(pattern, values) for pattern, values in get_agent_class(name).presets
            if fnmatch.fnmatchcase(dataset_id, pattern)]


def resolve_config(
    name: str,
    overrides: dict[str, Any] | None = None,
    profile: str | None = None,
    dataset_id: str | None = None,
) -> AgentConfig:
    """Paper defaults, then the dataset's presets, then a named profile, then explicit overrides."""
    cls = get_agent_class(name)
    values: dict[str, Any] = {}
    for _, preset in matching_presets(name, dataset_id):
        values.update(preset)
    if profile:
        if profile not in cls.profiles:
            raise ConfigError(
                f"unknown profile {profile!r} for {name}; valid profiles: {', '.join(sorted(cls.profiles)) or 'none'}"
            )
        values.update(cls.profiles[profile])
    values.update(overrides or {})
    return cls.config_class.from_dict(values)


def make_agent(
    name: str, obs_dim: int, act_dim: int, config: AgentConfig | None = None, device: torch.device | str = "cpu",
    num_seeds: int = 1,
) -> Agent:
    cls = get_agent_class(name)
    return cls(obs_dim, act_dim, config if config is not None else cls.config_class(), device, num_seeds)


def make_seeded_agent(name: str, obs_dim: int, act_dim: int, config: AgentConfig, seeds: Sequence[int],
                      device: torch.device | str = "cpu") -> Agent:
    """An agent of ``len(seeds)`` seeds whose seed ``i`` starts exactly as a one-seed agent of
    ``seeds[i]``: networks initialised under ``torch.manual_seed(seed)``, generator seeded ``seed + 1``."""
    agents = []
    for seed in seeds:
        torch.manual_seed(seed)
        agent = make_agent(name, obs_dim, act_dim, config, device)
        agent.generators[0].manual_seed(seed + 1)
        agents.append(agent)
    if len(agents) == 1:
        return agents[0]
    batched = make_agent(name, obs_dim, act_dim, config, device, num_seeds=len(seeds))
    batched.load_seed_state_dicts([a.state_dict() for a in agents])
    return batched
