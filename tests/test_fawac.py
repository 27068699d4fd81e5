"""FAWAC: each defining term checked white-box against an independent computation (the FQL-lineage
agents/fawac.py: V regressed onto the target critic at the data action, A = Q(s, a) − V(s))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algos.kit.flows import flow_policy_actions
from algos.kit.seeds import SeedRandom
from tests.helpers import generator_copy, small_agent


def perturbed_target(agent) -> None:
    """Moves the target critic away from the online one, so that a test tells which of the two a term reads."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in agent.target_critic.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))


# -- FAWAC: the learned state value ------------------------------------------------------------------

def test_fawac_value_regresses_onto_the_target_critic_at_the_data_action(maze_data):
    agent, batch = small_agent("fawac", maze_data)
    perturbed_target(agent)
    loss, v = agent.value_loss(batch)
    with torch.no_grad():
        target = agent.target_critic(batch.obs, batch.actions).double().mean(1)  # mean over the heads
        online = agent.critic(batch.obs, batch.actions).double().mean(1)
        v_expected = agent.value(batch.obs).double()
    assert v.shape == target.shape == (1, batch.obs.shape[1])
    np.testing.assert_allclose(v.detach().double().numpy(), v_expected.numpy(), rtol=1e-6)
    expected = ((target - v_expected) ** 2).mean().item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(((online - v_expected) ** 2).mean().item(), rel=1e-3)  # the target's Q
    # the gradient reaches V and nothing else
    loss.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.value.parameters() if p.dim() > 1)
    assert all(p.grad is None for p in [*agent.critic.parameters(), *agent.flow.parameters()])


def test_fawac_value_target_follows_q_agg(maze_data):
    agent, batch = small_agent("fawac", maze_data, q_agg="min")
    perturbed_target(agent)
    loss, v = agent.value_loss(batch)
    with torch.no_grad():
        target = agent.target_critic(batch.obs, batch.actions).double().min(1).values
    assert loss.item() == pytest.approx(((target - v.detach().double()) ** 2).mean().item(), rel=1e-5)


# -- FAWAC: advantage weights on the flow-matching loss ----------------------------------------------

def test_fawac_weights_are_clipped_exponentiated_q_minus_learned_v(maze_data):
    agent, batch = small_agent("fawac", maze_data, awr_temperature=3.0, max_weight=5.0)
    perturbed_target(agent)
    with torch.no_grad():  # give V an offset so that the clip and the exponent both matter
        agent.value.net.blocks[-1][0].bias.add_(-0.3)
    before = agent.generators[0].get_state()
    weights = agent.advantage_weights(batch)
    assert torch.equal(agent.generators[0].get_state(), before)  # no policy sample: V is a network
    with torch.no_grad():
        q_data = agent.critic(batch.obs, batch.actions).double().mean(1)  # the ONLINE critic, mean over heads
        v = agent.value(batch.obs).double()
    expected = np.minimum(np.exp(3.0 * (q_data - v).numpy()), 5.0)
    np.testing.assert_allclose(weights.double().numpy(), expected, rtol=1e-5)
    assert weights.requires_grad is False


def test_fawac_weights_move_with_v(maze_data):
    agent, batch = small_agent("fawac", maze_data, awr_temperature=2.0, max_weight=1e6)
    weights = agent.advantage_weights(batch)
    with torch.no_grad():
        for p in agent.value.parameters():
            p.add_(0.05)
        dv = agent.value(batch.obs)
    shifted = agent.advantage_weights(batch)
    with torch.no_grad():
        q_data = agent.critic(batch.obs, batch.actions).mean(1)
    np.testing.assert_allclose(shifted.numpy(), torch.exp(2.0 * (q_data - dv)).numpy(), rtol=1e-5)
    assert not torch.allclose(weights, shifted)


def test_fawac_policy_loss_is_the_weighted_flow_matching_loss(maze_data):
    agent, batch = small_agent("fawac", maze_data)
    g = generator_copy(agent)
    loss, weights = agent.policy_loss(batch)
    # replay: the flow-matching noise and times are the loss's first draws (the weights draw nothing)
    replay = SeedRandom([g], "cpu")
    x0 = replay.randn(batch.actions.shape[1:])
    t = replay.rand((batch.actions.shape[1], 1))
    with torch.no_grad():
        x_t = (1 - t) * x0 + t * batch.actions
        err = ((agent.flow(batch.obs, x_t, t) - (batch.actions - x0)) ** 2).mean(-1)
    assert loss.item() == pytest.approx((weights * err).mean().item(), rel=1e-5)


# -- FAWAC: the joint update -------------------------------------------------------------------------

def test_fawac_update_trains_v_and_weighs_with_the_pre_step_networks(maze_data):
    agent, batch = small_agent("fawac", maze_data, awr_temperature=3.0)
    perturbed_target(agent)
    assert "value" in agent.modules() and "value" in agent.state_dict()["modules"]
    with torch.no_grad():
        expected_weights = agent.advantage_weights(batch)
        expected_value_loss = agent.value_loss(batch)[0]
    value_before = [p.clone() for p in agent.value.parameters()]
    metrics = agent.update(batch)
    assert metrics["value_loss"].item() == pytest.approx(expected_value_loss.item(), rel=1e-5)
    assert metrics["adv_weight_mean"].item() == pytest.approx(expected_weights.mean().item(), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(value_before, agent.value.parameters()))  # one Adam moves V


def test_fawac_ensemble_backup_option_is_the_mean_minus_rho_std_of_the_target_heads(maze_data):
    """qgf / qam: 10 heads, y = r + γ m (mean_i − ρ std_i) Q̄ᵢ(s′, a′) (population std, as jnp.std)."""
    agent, batch = small_agent("fawac", maze_data, num_qs=10, backup_std_penalty=0.5)
    perturbed_target(agent)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    with torch.no_grad():
        next_actions = flow_policy_actions(agent.flow, batch.next_obs, agent.config.sampling_steps, replay)
        next_qs = agent.target_critic(batch.next_obs, next_actions).double().numpy()[0]  # [10, B]
        q = agent.critic(batch.obs, batch.actions).double().numpy()[0]
    assert q.shape[0] == 10
    y = batch.rewards[0].double().numpy() + 0.99 * batch.masks[0].double().numpy() * (
        next_qs.mean(0) - 0.5 * next_qs.std(0))
    metrics = agent.update(batch)
    assert metrics["critic_loss"].item() == pytest.approx(((q - y) ** 2).mean(), rel=1e-5)
