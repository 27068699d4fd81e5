"""Every registered agent through the interface, on real batches from a real dataset."""

from __future__ import annotations

import math

import pytest
import torch

from algos import REGISTRY, ConfigError, make_agent, resolve_config
from harness.data import TransitionBuffer

ALGOS = sorted(REGISTRY)


def tiny(name: str):
    config = resolve_config(name, profile="cpu")
    if "hidden_dims" in config.field_names():
        config = config.replace(hidden_dims=(32, 32))
    return config


@pytest.fixture(params=ALGOS)
def agent_and_buffer(request, maze_data):
    torch.manual_seed(0)
    agent = make_agent(request.param, maze_data.obs_dim, maze_data.act_dim, tiny(request.param))
    return agent, TransitionBuffer(maze_data)


def test_update_gives_finite_metrics_and_changes_parameters(agent_and_buffer):
    agent, buffer = agent_and_buffer
    before = [p.detach().clone() for m in agent.modules().values() for p in m.parameters()]
    g = torch.Generator().manual_seed(0)
    keys = None
    for _ in range(5):
        metrics = agent.update(buffer.sample(64, g))
        # tensors, not floats: the training loop reads them back only when it logs
        assert metrics and all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values()), metrics
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        keys = keys or set(metrics)
        assert set(metrics) == keys  # the same metrics every step (train.csv columns)
    after = [p.detach() for m in agent.modules().values() for p in m.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert agent.step == 5


def test_act_shapes_and_bounds(agent_and_buffer):
    agent, buffer = agent_and_buffer
    obs = buffer.obs[:50] * 100.0  # far outside the data: actions must still be in bounds
    actions = agent.act(obs, torch.Generator().manual_seed(0))
    assert actions.shape == (50, agent.act_dim)
    assert actions.min() >= -1.0 and actions.max() <= 1.0 and torch.isfinite(actions).all()


def test_state_dict_round_trip_gives_identical_actions_and_updates(agent_and_buffer):
    agent, buffer = agent_and_buffer
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        agent.update(buffer.sample(32, g))
    state = agent.state_dict()
    torch.manual_seed(123)  # a different init for the copy
    clone = make_agent(agent.name, agent.obs_dim, agent.act_dim, agent.config)
    clone.load_state_dict(state)
    obs = buffer.obs[:20]
    a1 = agent.act(obs, torch.Generator().manual_seed(7))
    a2 = clone.act(obs, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    batch = buffer.sample(32, torch.Generator().manual_seed(2))
    mine, theirs = agent.update(batch), clone.update(batch)
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)  # optimiser state and
    # generator came along
    assert clone.step == agent.step == 4


@pytest.mark.parametrize("name", ALGOS)
def test_config_rejects_unknown_keys_and_coerces(name):
    with pytest.raises(ConfigError, match="valid keys"):
        resolve_config(name, {"no_such_key": 1})
    config = resolve_config(name, {"batch_size": "64"})
    assert config.batch_size == 64
    with pytest.raises(ConfigError, match="expects int"):
        resolve_config(name, {"batch_size": "many"})


def test_iql_antmaze_preset_and_override_order():
    antmaze = "D4RL/antmaze/umaze-v1"
    assert resolve_config("iql", dataset_id=antmaze).expectile == 0.9
    assert resolve_config("iql", dataset_id=antmaze).temperature == 10.0
    assert resolve_config("iql", {"expectile": 0.8}, dataset_id=antmaze).expectile == 0.8
    assert resolve_config("iql", dataset_id="mujoco/hopper/medium-v0").expectile == 0.7


def test_algos_verbose_explains_fields_choices_and_presets(capsys):
    from harness.cli import main

    assert main(["algos", "-v"]) == 0
    out = capsys.readouterr().out
    assert "q_agg = 'mean'  (one of: mean, min)  # over the twin target critics" in out
    assert "discount = 0.99  # γ" in out and "preset D4RL/antmaze/large-*: {'alpha': 3.0}" in out
    blocks = {block.split(":")[0]: block for block in out.split("\n\n") if block.strip()}
    assert set(blocks) == set(REGISTRY)
    assert blocks["qipo_diff"].startswith("qipo_diff: QIPO-Diff") and blocks["qipo"].startswith("qipo: QIPO:")
    assert "schedule = 't'  (one of: t, t2, t2_over_1mt)" in blocks["flowq"]
