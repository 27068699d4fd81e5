"""flowbench's algorithms: one readable file each (``algos/<name>.py``), standing on the kit beside them
(``algos/kit/``: config, agent interface, registry, critics, networks, samplers, shared presets). Importing
this package registers every algorithm."""

# Importing each algorithm file registers it.
from algos import bc, cac, diffusion_ql, fawac, fbrac, flow_bc, flowq, fql, idql, ifql, iql, qipo, rebrac, srpo  # noqa: F401
from algos.kit.agent import Agent, Batch
from algos.kit.config import AgentConfig, ConfigError
from algos.kit.registry import REGISTRY, get_agent_class, make_agent, resolve_config

__all__ = ["REGISTRY", "Agent", "AgentConfig", "Batch", "ConfigError", "get_agent_class", "make_agent", "resolve_config"]
