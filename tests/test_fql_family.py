"""FQL, IFQL, flow BC, ReBRAC and IQL: gradient flow, distillation target, presets, ReBRAC's actor
steps, IQL's learning-rate schedule (white-box checks).

Internals take tensors with the leading seed axis (``algos.kit.seeds``): a one-seed agent's batch is
``[1, B, ...]`` and its losses ``[1]``."""

from __future__ import annotations

import math

import pytest
import torch

from algos import make_agent, resolve_config
from algos.kit.flows import VelocityField, euler_sample
from harness.data import TransitionBuffer


@pytest.fixture
def fql_and_batch(maze_data):
    torch.manual_seed(0)
    config = resolve_config("fql", {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32"})
    agent = make_agent("fql", maze_data.obs_dim, maze_data.act_dim, config)
    batch = agent.with_seed_axis(TransitionBuffer(maze_data).sample(64, torch.Generator().manual_seed(0)))
    return agent, batch


def grads(loss: torch.Tensor, module: torch.nn.Module) -> list[torch.Tensor | None]:
    """Gradients of the per-seed ``loss`` ``[S]`` (summed over seeds) with respect to ``module``."""
    return torch.autograd.grad(loss.sum(), list(module.parameters()), retain_graph=True, allow_unused=True)


def is_zero(gs) -> bool:
    return all(g is None or torch.count_nonzero(g) == 0 for g in gs)


def test_flow_learns_only_from_its_own_loss(fql_and_batch):
    agent, batch = fql_and_batch
    losses = agent.losses(batch)
    assert is_zero(grads(agent.config.alpha * losses["distill"] + losses["q"], agent.flow))
    assert is_zero(grads(losses["critic"], agent.flow))
    assert not is_zero(grads(losses["flow"], agent.flow))


def test_q_loss_moves_only_the_one_step_policy(fql_and_batch):
    agent, batch = fql_and_batch
    losses = agent.losses(batch)
    assert is_zero(grads(losses["q"], agent.critic))
    assert not is_zero(grads(losses["q"], agent.onestep))
    assert not is_zero(grads(losses["distill"], agent.onestep))


def test_critic_target_carries_no_gradient(fql_and_batch):
    agent, batch = fql_and_batch
    losses = agent.losses(batch)
    assert is_zero(grads(losses["critic"], agent.onestep))  # next actions come from the policy
    assert is_zero(grads(losses["critic"], agent.flow))
    assert all(not p.requires_grad for p in agent.target_critic.parameters())
    assert not is_zero(grads(losses["critic"], agent.critic))


def test_distillation_target_is_the_k_step_euler_solution_for_the_same_noise(fql_and_batch, monkeypatch):
    agent, batch = fql_and_batch
    drawn = []
    original = agent.noise
    monkeypatch.setattr(agent, "noise", lambda n, dtype: drawn.append(original(n, dtype)) or drawn[-1])
    losses = agent.losses(batch)
    z = drawn[-1]  # the second draw is the policy's noise (the first is for next actions)
    # an independent Euler integration, written out here
    x = z.clone()
    with torch.no_grad():
        for i in range(agent.config.sampling_steps):
            t = torch.full((*x.shape[:-1], 1), i / agent.config.sampling_steps)
            x = x + agent.flow.net(torch.cat([batch.obs, x, t], -1)) / agent.config.sampling_steps
        expected_target = x.clamp(-1, 1)
        expected = ((agent.onestep(batch.obs, z) - expected_target) ** 2).mean((1, 2))  # [S]
    torch.testing.assert_close(agent.distillation_target(batch.obs, z), expected_target)
    torch.testing.assert_close(losses["distill"], expected)
    assert len(drawn) == 2


def test_euler_sampler_integrates_a_known_field():
    """dx/dt = c (constant): K Euler steps land exactly at x0 + c."""

    class Constant(VelocityField):
        def forward(self, obs, x, t):
            return torch.full_like(x, 0.3)

    field = Constant(1, 2, (4,))
    x0 = torch.zeros(1, 5, 2)
    for k in (1, 4, 10):
        torch.testing.assert_close(euler_sample(field, torch.zeros(1, 5, 1), x0, k), torch.full((1, 5, 2), 0.3))


@pytest.mark.parametrize("dataset, expected", [
    ("D4RL/antmaze/umaze-v1", {"alpha": 10.0, "q_agg": "mean"}),
    ("D4RL/antmaze/large-play-v1", {"alpha": 3.0}),
    ("D4RL/pen/human-v2", {"alpha": 10000.0, "q_agg": "min"}),
    ("D4RL/pen/expert-v2", {"alpha": 3000.0, "q_agg": "min"}),
    ("D4RL/door/cloned-v2", {"alpha": 30000.0, "q_agg": "min"}),
    ("D4RL/hammer/cloned-v2", {"alpha": 10000.0}),
    ("D4RL/relocate/human-v2", {"alpha": 10000.0}),
    ("ogbench/antmaze-large-navigate-singletask-v0", {"alpha": 10.0, "q_agg": "min", "discount": 0.99}),
    ("ogbench/antmaze-giant-navigate-singletask-task3-v0", {"alpha": 10.0, "q_agg": "min", "discount": 0.995}),
    ("ogbench/humanoidmaze-medium-navigate-singletask-v0", {"alpha": 30.0, "discount": 0.995}),
    ("ogbench/antsoccer-arena-navigate-singletask-v0", {"alpha": 10.0, "discount": 0.995}),
    ("ogbench/cube-single-play-singletask-task2-v0", {"alpha": 300.0}),
    ("ogbench/scene-play-singletask-v0", {"alpha": 300.0}),
    ("ogbench/puzzle-4x4-play-singletask-v0", {"alpha": 1000.0}),
    ("local/ogbench/cube-single-v0", {"alpha": 300.0}),
])
def test_fql_presets_resolve_to_published_values(dataset, expected):
    config = resolve_config("fql", dataset_id=dataset)
    assert {k: getattr(config, k) for k in expected} == expected


def test_presets_are_recorded_and_overridable():
    assert resolve_config("fql", {"alpha": 5}, dataset_id="D4RL/pen/human-v2").alpha == 5.0
    assert resolve_config("rebrac", dataset_id="D4RL/antmaze/medium-play-v1").alpha_critic == 0.0005
    assert resolve_config("rebrac", dataset_id="D4RL/antmaze/umaze-diverse-v1").alpha_critic == 0.001


def test_ifql_acts_with_the_best_of_n_flow_samples(maze_data):
    torch.manual_seed(0)
    config = resolve_config("ifql", {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32", "num_candidates": 8})
    agent = make_agent("ifql", maze_data.obs_dim, maze_data.act_dim, config)
    obs = torch.as_tensor(maze_data.observations[:6])
    chosen = agent.act(obs, torch.Generator().manual_seed(3))
    noise = torch.randn((1, 6 * 8, 2), generator=torch.Generator().manual_seed(3))
    repeated = obs.repeat_interleave(8, 0)[None]  # [1, 6·8, obs]: one seed
    with torch.no_grad():
        candidates = euler_sample(agent.flow, repeated, noise, config.sampling_steps)
        q = agent.critic.q(repeated, candidates).min(1).values.reshape(6, 8)
        best = candidates.reshape(6, 8, 2)[torch.arange(6), q.argmax(1)]
    torch.testing.assert_close(chosen, best)


def test_rebrac_actor_steps_follow_graph_key_and_hold_their_metrics(maze_data):
    torch.manual_seed(0)
    config = resolve_config("rebrac", {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32", "actor_freq": 3})
    agent = make_agent("rebrac", maze_data.obs_dim, maze_data.act_dim, config)
    buffer, g = TransitionBuffer(maze_data), torch.Generator().manual_seed(0)
    keys, history = [], []
    for _ in range(6):
        keys.append(agent.graph_key())
        target_before = [p.detach().clone() for p in agent.target_critic.parameters()]
        history.append(agent.update(buffer.sample(32, g)))
        moved = any(not torch.equal(a, b) for a, b in zip(target_before, agent.target_critic.parameters()))
        assert moved == keys[-1]
    assert keys == [False, False, True, False, False, True]  # the 3rd and 6th update (counted from 1)
    for step in (3, 4):  # between actor updates the latest actor metrics are reported again
        assert torch.equal(history[step]["actor_loss"], history[2]["actor_loss"])
    assert not torch.equal(history[5]["actor_loss"], history[2]["actor_loss"])
    state = agent.state_dict()
    assert state["extra"]["last_actor_metrics"]["bc_loss"].shape == (1,)


def test_iql_actor_lr_follows_the_closed_form_cosine(maze_data):
    torch.manual_seed(0)
    config = resolve_config("iql", {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32", "actor_lr_decay_steps": 4})
    agent = make_agent("iql", maze_data.obs_dim, maze_data.act_dim, config)
    buffer, g = TransitionBuffer(maze_data), torch.Generator().manual_seed(0)
    for t in range(1, 9):  # through 2·T: the lr stays at the floor (0)
        agent.update(buffer.sample(32, g))
        expected = config.actor_lr * (1 + math.cos(math.pi * min(t, 4) / 4)) / 2
        assert float(agent.actor_opt.param_groups[0]["lr"]) == pytest.approx(expected, abs=1e-15)
    assert float(agent.critic_opt.param_groups[0]["lr"]) == config.critic_lr
