"""The registry of algorithms: names to agent classes, and how a name, a dataset, a profile and overrides
become a config and an agent."""

from __future__ import annotations

import fnmatch
from typing import Any, Sequence

import torch

from algos.kit.agent import Agent
from algos.kit.config import AgentConfig, ConfigError

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
