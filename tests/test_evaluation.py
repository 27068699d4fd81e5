"""Evaluation in real vectorised envs: normalisation, success, seeding, action rescaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algos.kit.agent import Agent
from algos.kit.config import AgentConfig
from harness.evaluation import evaluate, evaluate_seeds


class FixedPolicy(Agent):
    """Plays one fixed action (in [-1, 1]) or a scripted function of the observation."""

    name = "fixed"

    def __init__(self, act_dim: int, policy, num_seeds: int = 1):
        super().__init__(0, act_dim, AgentConfig(), num_seeds=num_seeds)
        self.policy = policy

    def modules(self):
        return {}

    def select_actions(self, obs, rng):
        # each seed plays the policy with its own acting generator
        return torch.stack([self.policy(o, g) for o, g in zip(obs, rng.generators)])


@pytest.mark.parametrize("action, score", [((0.0, 0.5), 100.0), ((0.0, -0.5), 0.0), ((0.0, 0.0), -100.0)])
def test_toy_scores_on_the_normalised_scale(toy_data, action, score):
    agent = FixedPolicy(2, lambda obs, g: torch.tensor(action).expand(len(obs), 2))
    result = evaluate(agent, toy_data, episodes=10, seed=0)
    assert result.normalized_score == pytest.approx(score)
    assert result.episodes == 10 and len(result.returns) == 10 and np.isnan(result.success_rate)


def test_stochastic_policy_is_seeded(toy_data):
    agent = FixedPolicy(2, lambda obs, g: torch.rand(len(obs), 2, generator=g) * 2 - 1)
    a, b = evaluate(agent, toy_data, 32, seed=5), evaluate(agent, toy_data, 32, seed=5)
    c = evaluate(agent, toy_data, 32, seed=6)
    assert a.returns == b.returns and a.returns != c.returns


def test_each_seed_of_a_batched_agent_gets_its_own_evaluation(toy_data):
    """Seed i of a batched evaluation is what evaluating that seed alone gives (own envs, own noise)."""
    policy = lambda obs, g: torch.rand(len(obs), 2, generator=g) * 2 - 1  # noqa: E731
    together = evaluate_seeds(FixedPolicy(2, policy, num_seeds=2), toy_data, 16, seeds=[5, 6])
    alone = [evaluate(FixedPolicy(2, policy), toy_data, 16, seed=s) for s in (5, 6)]
    assert [r.returns for r in together] == [r.returns for r in alone]
    assert together[0].returns != together[1].returns


def test_pointmaze_success_and_returns(maze_data):
    """Standing still scores nothing; the waypoint controller reaches the goal in every episode."""
    from harness.datasets.pointmaze import WaypointController
    from harness.envs import POINTMAZE_GOAL

    still = evaluate(FixedPolicy(2, lambda obs, g: torch.zeros(len(obs), 2)), maze_data, 3, seed=0)
    assert still.return_mean == 0.0 and still.success_rate == 0.0 and still.normalized_score == 0.0

    env = maze_data.make_eval_env()
    controller = WaypointController(env.unwrapped.maze)
    goal = env.unwrapped.maze.cell_rowcol_to_xy(np.array(POINTMAZE_GOAL["umaze"]))

    def drive(obs, g):
        return torch.as_tensor(np.stack([controller.action(o, goal) for o in obs.numpy()]), dtype=torch.float32)

    expert = evaluate(FixedPolicy(2, drive), maze_data, 4, seed=0)
    assert expert.success_rate == 1.0
    assert expert.normalized_score > 80
