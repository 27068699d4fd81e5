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
    for field in ("actor_hidden_dims", "value_hidden_dims"):
        if field in config.field_names():
            config = config.replace(**{field: (32, 32)})
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
    assert resolve_config("iql", dataset_id=antmaze).awr_temperature == 10.0
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


# -- one config vocabulary: old keys are refused with their new names --------------------------

@pytest.mark.parametrize("name, old, message", [
    ("fql", "flow_steps", "'sampling_steps'"),
    ("qipo_diff", "flow_steps", "'sampling_steps'"),
    ("diffusion_ql", "diffusion_steps", "'sampling_steps'"),
    ("bc", "hidden_dims", "'actor_hidden_dims'"),
    ("iql", "hidden_dims", "'actor_hidden_dims' and 'value_hidden_dims' (one per kind of network)"),
    ("fql", "layer_norm", "'critic_layer_norm'"),
    ("flow_bc", "layer_norm", "'actor_layer_norm'"),  # its one LayerNorm flag was its flow's
    ("iql", "temperature", "'awr_temperature'"),
    ("fawac", "temperature", "'awr_temperature'"),
    ("qipo", "temperature", "'energy_scale'"),
    ("bc", "lr", "'actor_lr'"),
    ("fql", "lr", "'actor_lr' and 'critic_lr' (one per kind of network)"),
    ("ifql", "lr", "'actor_lr', 'critic_lr' and 'value_lr' (one per kind of network)"),
    ("diffusion_ql", "lr_schedule", "'actor_lr_schedule' and 'critic_lr_schedule' (one per kind of network)"),
    ("idql", "num_samples", "'num_candidates'"),
    ("flowq", "num_samples", "'num_candidates'"),
])
def test_old_config_keys_are_refused_with_their_new_names(name, old, message):
    with pytest.raises(ConfigError) as error:
        resolve_config(name, {old: 1})
    assert str(error.value) == f"config key {old!r} was renamed to {message}"


def test_no_agent_keeps_an_old_key_and_presets_are_checked_too(monkeypatch):
    from algos.kit.config import RENAMED_KEYS

    for cls in REGISTRY.values():
        assert not set(cls.config_class.field_names()) & set(RENAMED_KEYS), cls.name
    # a preset (or profile) written with an old key fails as loudly as --set does
    monkeypatch.setattr(REGISTRY["fql"], "presets", (("toy/*", {"flow_steps": 3}),))
    with pytest.raises(ConfigError, match="config key 'flow_steps' was renamed to 'sampling_steps'"):
        resolve_config("fql", dataset_id="toy/bimodal-v0")


def test_an_old_key_on_the_command_line_exits_2_naming_the_new_one(minari_root, tmp_path):
    from tests.helpers import flowbench

    result = flowbench("run", "fql", "toy/bimodal-v0", "--steps", "2", "--profile", "cpu", "--set", "flow_steps=3",
                       "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "config key 'flow_steps' was renamed to 'sampling_steps'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_one_adam_over_several_networks_has_a_group_per_learning_rate():
    config = resolve_config("ifql", {"actor_hidden_dims": "8", "value_hidden_dims": "8", "actor_lr": 1e-3,
                                     "critic_lr": 2e-3, "value_lr": 3e-3})
    agent = make_agent("ifql", 3, 2, config)
    groups = agent.opt.param_groups
    assert [g["lr"] for g in groups] == [2e-3, 3e-3, 1e-3]
    assert [set(map(id, g["params"])) for g in groups] == [
        set(map(id, agent.critic.q.parameters())), set(map(id, agent.critic.value.parameters())),
        set(map(id, agent.flow.parameters()))]
