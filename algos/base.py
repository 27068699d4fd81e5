"""The agent interface every algorithm implements, and its registry.

An agent owns its networks, optimisers and random generator; it never reads files, parses command
lines or talks to environments. The harness hands it batches of transitions and observations as
tensors on the agent's device, and asks for actions in [-1, 1].
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

import torch


class Batch(NamedTuple):
    """A batch of transitions; every tensor lives on the agent's device.

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
    """Base of every agent config: a dataclass whose fields are the algorithm's hyperparameters."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AgentConfig":
        """Builds a config, rejecting keys the algorithm does not have and coercing types."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid keys: {', '.join(cls.field_names())}"
            )
        hints = typing.get_type_hints(cls)
        return cls(**{k: coerce(k, v, hints[k]) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> "AgentConfig":
        return type(self).from_dict({**self.to_dict(), **changes})


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Turns a value (possibly a string from ``--set key=value``) into the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
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
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


class Agent:
    """Base class: subclasses set the class attributes and implement ``update`` and ``act``.

    Class attributes the harness reads:
    - ``name``: registry name.
    - ``config_class``: the config dataclass.
    - ``samples_flow_in_training``: whether ``update`` runs a flow/diffusion sampler.
    - ``policy_update_parts``: names of the losses that form "the policy update"; ``policy_step``
      takes one gradient step on exactly those (timing, harness/timing.py).
    - ``steps_field``: the config field holding K, the number of flow/diffusion steps (or None).
    - ``profiles``: named override sets (``cpu``: the small profile for tests and CPU demos).
    - ``presets``: per-dataset overrides as ``(pattern, overrides)`` pairs, ``fnmatch`` patterns on
      the dataset id, applied in order (later ones win), e.g. FQL's alpha table.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    samples_flow_in_training: ClassVar[bool] = False
    policy_update_parts: ClassVar[tuple[str, ...]] = ()
    steps_field: ClassVar[str | None] = None
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    presets: ClassVar[tuple[tuple[str, dict[str, Any]], ...]] = ()

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device | str = "cpu"):
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.config = config
        self.device = torch.device(device)
        self.step = 0
        # The agent's own randomness (noise in losses, stochastic acting during training) comes from
        # this generator so that a resumed run replays exactly; the harness seeds it per run.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0)

    # -- to implement -------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def policy_step(self, batch: Batch) -> torch.Tensor:
        """One gradient step on the policy's losses alone (``policy_update_parts``), computed as
        ``update`` computes them; the critic is not trained and ``step`` does not advance. This is
        what timing measures as "the policy update". Returns the (detached) loss."""
        raise NotImplementedError(f"{type(self).__name__} does not separate its policy update")

    def modules(self) -> dict[str, torch.nn.Module]:
        """Every network (targets included) by name; used for state_dict and train/eval modes."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy): torch's own state dicts alias live tensors, e.g. Adam's step count."""
        return copy.deepcopy({
            "step": self.step,
            "generator": self.generator.get_state(),
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers().items()},
            "extra": self.extra_state(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator"].cpu() if self.device.type == "cpu" else state["generator"])
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers().items():
            s.load_state_dict(state["schedulers"][k])
        self.load_extra_state(state["extra"])

    def extra_state(self) -> dict[str, Any]:
        """Anything else ``update`` depends on (plain Python values)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def schedulers(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def minimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_params: Any = None,
                 max_grad_norm: float = 0.0) -> torch.Tensor:
        """One optimiser step on ``loss`` (parameters without a gradient are left alone), optionally
        clipping the gradient norm of ``clip_params``; returns the detached loss."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_params is not None and max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(clip_params, max_grad_norm)
        optimizer.step()
        return loss.detach()

    def num_parameters(self) -> int:
        return sum(p.numel() for m in self.modules().values() for p in m.parameters())


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
    name: str, obs_dim: int, act_dim: int, config: AgentConfig | None = None, device: torch.device | str = "cpu"
) -> Agent:
    cls = get_agent_class(name)
    return cls(obs_dim, act_dim, config if config is not None else cls.config_class(), device)
