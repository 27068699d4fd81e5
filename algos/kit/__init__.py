"""The kit every algorithm stands on; algorithm files (``algos/<name>.py``) import only from here.

- ``config``: ``AgentConfig`` (range checks, ``validate()`` for rules between fields), ``ConfigError``;
- ``agent``: ``Batch`` and the ``Agent`` interface with its optimiser and schedule helpers;
- ``registry``: names to agents, ``resolve_config`` (defaults → presets → profile → overrides), ``make_agent``;
- ``presets``: the FQL code's shared defaults (``FQLCodeConfig``) and conventions, the ``cpu`` profile's networks;
- ``critics``: the TD target and TD critic, IQL's ``InSampleCritic``;
- ``flow_agents``: a flow policy beside a critic under one Adam (FBRAC, FAWAC, FlowQ, IFQL);
- ``networks``, ``seeds``, ``flows``, ``diffusion``, ``residual``: batched networks, the seed axis, flow and
  diffusion maths, the residual MLP.
"""
