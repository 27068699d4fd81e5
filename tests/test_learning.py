"""Learning checks on tasks with known answers (the bimodal toy); thresholds a broken agent misses."""

from __future__ import annotations

import pytest
import torch

from algos import make_agent, resolve_config
from harness.data import TransitionBuffer
from harness.evaluation import evaluate
from harness.toy_figure import ToyPanel, train_toy_agent

pytestmark = pytest.mark.slow  # every test here trains an agent until it has learned


def trained(name: str, data, steps: int, **overrides):
    torch.manual_seed(0)
    agent = make_agent(name, data.obs_dim, data.act_dim, resolve_config(name, overrides, profile="cpu"))
    buffer, g = TransitionBuffer(data), torch.Generator().manual_seed(0)
    for _ in range(steps):
        agent.update(buffer.sample(256, g))
    return agent


def test_bc_imitates_both_modes(toy_data):
    """A mixture BC reproduces the data: half upper (score 100), half lower (score 0) → ≈ 50."""
    result = evaluate(trained("bc", toy_data, 1500), toy_data, episodes=400, seed=0)
    assert 30 <= result.normalized_score <= 70, result


def test_mean_seeking_bc_leaves_the_support(toy_data):
    """The reason for the mixture head: an MSE policy averages the modes into (0, 0), scoring −100."""
    result = evaluate(trained("bc", toy_data, 500, policy="deterministic"), toy_data, episodes=100, seed=0)
    assert result.normalized_score < -80


def test_iql_learns_the_known_values(toy_data):
    """One-step episodes: Q(s, upper) = 1, Q(s, lower) = 0.5, V = the 0.7-expectile of {1, 0.5} = 0.85."""
    agent = trained("iql", toy_data, 1500)
    obs = torch.rand(200, 2) * 2 - 1
    upper, lower = torch.tensor([0.0, 0.5]).expand(200, 2), torch.tensor([0.0, -0.5]).expand(200, 2)
    with torch.no_grad():  # networks take a leading seed axis: [1, 200, ...] for this one-seed agent
        assert agent.critic.q(obs[None], upper[None]).mean().item() == pytest.approx(1.0, abs=0.05)
        assert agent.critic.q(obs[None], lower[None]).mean().item() == pytest.approx(0.5, abs=0.05)
        assert agent.critic.value(obs[None]).mean().item() == pytest.approx(0.85, abs=0.04)
        # advantage weighting pulls the Gaussian actor's mean toward the better mode
        assert agent.act(obs).mean(0)[1].item() > 0.05


def reward_share(result, reward: float) -> float:
    """Fraction of toy episodes (one step each) that earned ``reward``: 1.0 upper mode, 0.5 lower, 0 neither."""
    return sum(r == reward for r in result.returns) / len(result.returns)


def off_support(result) -> float:
    """Fraction of toy episodes whose action landed in neither mode (reward 0)."""
    return reward_share(result, 0.0)


def test_flow_bc_imitates_both_modes(toy_data):
    result = evaluate(trained("flow_bc", toy_data, 4000), toy_data, episodes=400, seed=0)
    assert 30 <= result.normalized_score <= 70, result.normalized_score
    assert off_support(result) < 0.15


# FQL's toy bar is the worse mode emptied, not ≥ 80: the official FQL code (seohongpark/fql, unmodified agents/fql.py),
# trained on this same toy data with the same settings (2×256, α 0.3, 3000 updates, 400 episodes), scores 69.5 / 89.5 /
# 79.0 on seeds 0–2 (mean 79.3), falling from 86.5 / 95.0 / 85.0 at 1000 updates (DESIGN.md §9): the one-step policy
# follows ∇ₐQ per noise sample and stops on the critic's overshoot just under the better disc. What it does reliably,
# in the reference and here, is move the worse mode's mass out (flowbench seeds 0 / 1: 78 / 80 % upper, 0 % lower).
# With the Q term outweighed (α 1000) it is 35 / 29 / 36 % upper / lower / off, which fails here.
@pytest.mark.xdist_group("toy-q-fql")
def test_fql_empties_the_worse_mode(toy_data):
    result = evaluate(train_toy_agent(ToyPanel("FQL", "fql", 3000), toy_data), toy_data, episodes=400, seed=0)
    upper, lower = reward_share(result, 1.0), reward_share(result, 0.5)
    assert lower <= 0.05, (upper, lower)
    assert upper >= 0.65, (upper, lower)
