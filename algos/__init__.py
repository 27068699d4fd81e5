"""flowbench's algorithms: one readable file each, registered by name (see ``algos.base``)."""

from algos.base import REGISTRY, Agent, AgentConfig, Batch, ConfigError, get_agent_class, make_agent, resolve_config
from algos import bc, flow_bc, fql, ifql, iql, rebrac  # noqa: F401  (registration)

__all__ = ["REGISTRY", "Agent", "AgentConfig", "Batch", "ConfigError", "get_agent_class", "make_agent", "resolve_config"]
