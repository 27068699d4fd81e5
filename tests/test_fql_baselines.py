"""The FQL paper's other baselines — FBRAC, FAWAC, IDQL, SRPO, CAC: each one's defining term, checked white-box
against an independent computation, and on the toy (known answer: the upper mode, in support).

Internals take tensors with the leading seed axis (``algos.seeds``): a one-seed agent's batch is
``[1, B, ...]`` and its losses ``[1]``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algos import make_agent, resolve_config
from algos.flows import flow_policy_actions
from algos.seeds import SeedRandom
from harness.data import TransitionBuffer
from harness.evaluation import evaluate
from harness.toy_figure import ToyPanel, train_toy_agent
from tests.test_learning import off_support, toy_threshold_marks

SMALL = {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32"}


def small_agent(name: str, data, **overrides):
    torch.manual_seed(0)
    config = resolve_config(name, {**SMALL, **overrides})
    agent = make_agent(name, data.obs_dim, data.act_dim, config)
    batch = agent.with_seed_axis(TransitionBuffer(data).sample(64, torch.Generator().manual_seed(0)))
    return agent, batch


def generator_copy(agent) -> torch.Generator:
    """A generator in the agent's seed-0 generator's current state (to replay its next draws)."""
    g = torch.Generator()
    g.set_state(agent.generators[0].get_state())
    return g


# -- FBRAC: the Q gradient goes back through every Euler step --------------------------------------

def test_fbrac_q_gradient_reaches_the_first_euler_step(maze_data):
    agent, batch = small_agent("fbrac", maze_data, sampling_steps=4)
    outputs = []
    hook = agent.flow.net.register_forward_hook(lambda m, i, o: outputs.append(o))
    losses = agent.policy_losses(batch)
    hook.remove()
    # the flow-matching pass, then the K Euler steps of L_q's action
    assert len(outputs) == 1 + 4
    grads = torch.autograd.grad(losses["q"].sum(), outputs[1:], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # the first step included
    # and the critic learns nothing from L_q
    critic_grads = torch.autograd.grad(losses["q"].sum(), list(agent.critic.parameters()), allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in critic_grads)


def test_fbrac_alpha_weighs_only_the_behaviour_term(maze_data):
    agent, batch = small_agent("fbrac", maze_data)
    losses = {"flow": torch.tensor([2.0]), "q": torch.tensor([-3.0])}
    assert agent.policy_objective(losses).item() == pytest.approx(agent.config.alpha * 2.0 - 3.0)


# -- FAWAC: advantage weights on the flow-matching loss --------------------------------------------

def test_fawac_weights_are_clipped_exponentiated_advantages_against_a_policy_sample(maze_data):
    agent, batch = small_agent("fawac", maze_data, awr_temperature=3.0, max_weight=5.0)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    weights = agent.advantage_weights(batch)
    with torch.no_grad():
        policy_actions = flow_policy_actions(agent.flow, batch.obs, agent.config.sampling_steps, replay)
        q_data = agent.critic(batch.obs, batch.actions).double().min(1).values
        q_pi = agent.critic(batch.obs, policy_actions).double().min(1).values
    expected = np.minimum(np.exp(3.0 * (q_data - q_pi).numpy()), 5.0)
    np.testing.assert_allclose(weights.double().numpy(), expected, rtol=1e-5)
    assert weights.requires_grad is False


def test_fawac_policy_loss_is_the_weighted_flow_matching_loss(maze_data):
    agent, batch = small_agent("fawac", maze_data)
    g = generator_copy(agent)
    loss, weights = agent.policy_loss(batch)
    # replay: the weights' policy sample, then the flow-matching noise and times
    replay = SeedRandom([g], "cpu")
    flow_policy_actions(agent.flow, batch.obs, agent.config.sampling_steps, replay)
    x0 = replay.randn(batch.actions.shape[1:])
    t = replay.rand((batch.actions.shape[1], 1))
    with torch.no_grad():
        x_t = (1 - t) * x0 + t * batch.actions
        err = ((agent.flow(batch.obs, x_t, t) - (batch.actions - x0)) ** 2).mean(-1)
    assert loss.item() == pytest.approx((weights * err).mean().item(), rel=1e-5)


# -- IDQL: importance resampling by the expectile critic's implicit policy ----------------------------

def test_idql_weights_match_the_implicit_policy_of_the_expectile_critic(maze_data):
    agent, batch = small_agent("idql", maze_data, expectile=0.8, num_candidates=6)
    obs = batch.obs[:, :5]
    candidates = torch.rand(1, 5, 6, maze_data.act_dim, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        weights = agent.candidate_weights(obs, candidates).double().numpy()[0]
        q = np.stack([[min(agent.critic.q(obs[:, [i]], candidates[:, i, [j]])[0, :, 0].tolist()) for j in range(6)]
                      for i in range(5)])
        v = np.array([agent.critic.value(obs[:, [i]]).item() for i in range(5)])
    diff = q - v[:, None]
    expected = np.where(diff < 0, 0.2, 0.8) / (np.abs(diff) + 1e-6)
    np.testing.assert_allclose(weights, expected, rtol=1e-4)


def test_idql_resampling_follows_the_weights_and_argmax_takes_the_largest(maze_data):
    agent, _ = small_agent("idql", maze_data, num_candidates=4, sampling_steps=2)
    obs = torch.zeros(1, 1, maze_data.obs_dim).expand(1, 4000, -1).contiguous()
    # replay the candidates the acting call draws, then compare choice frequencies with the weights
    g = torch.Generator().manual_seed(11)
    actions = agent.act(obs, torch.Generator().manual_seed(11))
    from algos.diffusion import ddpm_sample

    replay = SeedRandom([g], "cpu")
    repeated = obs.repeat_interleave(4, dim=1)
    with torch.no_grad():
        candidates = ddpm_sample(agent.behaviour, agent.schedule, repeated,
                                 replay.randn((4000 * 4, maze_data.act_dim)), replay).reshape(1, 4000, 4, -1)
        weights = agent.candidate_weights(obs, candidates)[0]
    chosen = (candidates[0] == actions[0][:, None]).all(-1).float()
    assert (chosen.sum(-1) >= 1).all()  # every action is one of its state's candidates
    probs = (weights / weights.sum(-1, keepdim=True))
    taken = (chosen / chosen.sum(-1, keepdim=True) * probs).sum(-1)  # weight share of the taken candidate
    # resampling: the taken candidate's share averages Σ p², which exceeds a uniform pick's 1/4
    assert taken.mean().item() == pytest.approx((probs**2).sum(-1).mean().item(), abs=0.02)
    agent.config.action_selection = "argmax"
    greedy = agent.act(obs, torch.Generator().manual_seed(11))[0]
    best = candidates[0].gather(1, weights.argmax(-1)[:, None, None].expand(-1, 1, maze_data.act_dim))[:, 0]
    torch.testing.assert_close(greedy, best)


# -- SRPO: the behaviour model's score regularises a deterministic actor --------------------------------

def test_srpo_score_term_pushes_actions_by_the_behaviour_models_weighted_noise_residual(maze_data):
    agent, batch = small_agent("srpo", maze_data, sampling_steps=5)
    actions = agent.policy(batch.obs).detach().requires_grad_(True)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    loss = agent.score_loss(batch.obs, actions)
    (grad,) = torch.autograd.grad(loss.sum(), actions)
    # independent: the same k and ε, then ω_k √ᾱ_k (ε_ψ(s, a_k, k) − ε) / (B·d) in float64
    k = replay.randint(5, actions.shape[1:-1])
    noise = replay.randn(actions.shape[1:])
    abar = agent.schedule.alphas_cumprod.double()[k][..., None]
    noised = abar.sqrt() * actions.detach().double() + (1 - abar).sqrt() * noise.double()
    with torch.no_grad():
        eps = agent.behaviour(batch.obs, noised.float(), k).double()
    expected = (1 - abar) * abar.sqrt() * (eps - noise.double()) / actions[0].numel()
    np.testing.assert_allclose(grad.double().numpy(), expected.numpy(), rtol=1e-4, atol=1e-9)
    # the behaviour model and the critic learn nothing from the actor's loss
    actor_loss = agent.actor_loss(batch)
    for module in (agent.behaviour, agent.critic):
        params = [p for p in module.parameters() if p.requires_grad]
        gs = torch.autograd.grad(actor_loss.sum(), params, allow_unused=True, retain_graph=True)
        assert all(g is None or torch.count_nonzero(g) == 0 for g in gs)


# -- CAC: a consistency-model policy ----------------------------------------------------------------

def test_cac_policy_is_the_identity_at_the_smallest_noise_level(maze_data):
    agent, batch = small_agent("cac", maze_data)
    x = torch.randn_like(batch.actions)
    eps = agent.actor.levels[0].reshape(1, 1, 1)
    torch.testing.assert_close(agent.actor(batch.obs, x, eps), x)
    assert agent.actor.levels[0].item() == pytest.approx(agent.config.eps)
    assert agent.actor.levels[-1].item() == pytest.approx(agent.config.max_noise)


@pytest.mark.parametrize("scaled", [True, False])
def test_cac_consistency_target_is_the_adjacent_lower_level_with_the_same_noise(maze_data, scaled):
    agent, batch = small_agent("cac", maze_data, noise_levels=6, scale_consistency_loss=scaled)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    loss = agent.actor.consistency_loss(batch.obs, batch.actions, agent.rng)
    n = replay.randint(5, (batch.actions.shape[1], 1))
    z = replay.randn(batch.actions.shape[1:])
    levels = agent.actor.levels
    with torch.no_grad():
        online = agent.actor(batch.obs, batch.actions + levels[n + 1] * z, levels[n + 1])
        target = agent.actor(batch.obs, batch.actions + levels[n] * z, levels[n])
    # the CAC code's scale_consis_loss: each sample's error × 100 / (τ_{n+1} − τ_n)
    weights = 100.0 / (levels[n + 1] - levels[n]) if scaled else torch.ones_like(levels[n])
    expected = (weights * ((online - target) ** 2).mean(-1, keepdim=True)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # only the higher level's pass carries gradient: the target is a stop-gradient
    grads = torch.autograd.grad(loss.sum(), list(agent.actor.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_cac_q_gradient_reaches_the_first_sampling_step(maze_data):
    agent, batch = small_agent("cac", maze_data, sampling_steps=3)
    outputs = []
    hook = agent.actor.net.register_forward_hook(lambda m, i, o: outputs.append(o))
    losses = agent.actor_losses(batch)
    hook.remove()
    sampler_outputs = outputs[2:]  # after the consistency loss's two passes
    assert len(sampler_outputs) == 3
    grads = torch.autograd.grad(losses["q"].sum(), sampler_outputs, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


# -- learning on the toy (the Q-guided ones: ≥ 80 while staying in the support) ------------------------

NEW_TOY_PANELS = [ToyPanel("FBRAC", "fbrac", 3000), ToyPanel("FAWAC", "fawac", 3000), ToyPanel("IDQL", "idql", 3000),
                  ToyPanel("SRPO", "srpo", 3000), ToyPanel("CAC", "cac", 3000)]


# SRPO's panel is an expected failure, not run: issue 16 is blocked on this criterion (tests/test_learning.py). The
# others' toy presets reach it on every seed probed (FBRAC 95.0 / 92.2 / 93.2, CAC 86.0 / 82.5 / 82.2 / 81.8, FAWAC
# 94.5 / 92.5 / 94.0, IDQL 94.8 / 92.8 / 94.2).


def new_panel_marks(panel: ToyPanel) -> list:
    return [pytest.mark.xdist_group(f"toy-new-{panel.algo}"), *toy_threshold_marks(panel.algo)]


@pytest.mark.slow
@pytest.mark.parametrize("panel", [pytest.param(p, marks=new_panel_marks(p)) for p in NEW_TOY_PANELS],
                         ids=[p.algo for p in NEW_TOY_PANELS])
def test_new_baselines_move_the_mass_to_the_better_mode_in_support(toy_data, panel):
    result = evaluate(train_toy_agent(panel, toy_data), toy_data, episodes=400, seed=0)
    assert result.normalized_score >= 80, result.normalized_score
    assert off_support(result) <= 0.10, off_support(result)
