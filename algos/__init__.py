"""flowbench's algorithms: one readable file each, registered by name (see ``algos.base``)."""

from algos.base import REGISTRY, Agent, AgentConfig, Batch, ConfigError, get_agent_class, make_agent, resolve_config
from algos import (bc, cac, diffusion_ql, fawac, fbrac, flow_bc, flowq, fql, idql, ifql, iql, qipo,  # noqa: F401  (registration)
                   rebrac, srpo)

__all__ = ["REGISTRY", "Agent", "AgentConfig", "Batch", "ConfigError", "get_agent_class", "make_agent", "resolve_config"]
