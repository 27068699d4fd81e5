"""flowbench's algorithms: one readable file each, registered by name (see ``algos.base``)."""

from algos.base import REGISTRY, Agent, AgentConfig, Batch, ConfigError, get_agent_class, make_agent, resolve_config
from algos import bc, diffusion_ql, flow_bc, flowq, fql, ifql, iql, qipo, rebrac  # noqa: F401  (registration)

__all__ = ["REGISTRY", "Agent", "AgentConfig", "Batch", "ConfigError", "get_agent_class", "make_agent", "resolve_config"]
