"""OGBench: the locally built cube-single play dataset, its task relabelling, and ``ogbench/...`` ids."""

from __future__ import annotations

import urllib.error

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from harness.data import DatasetUnavailable, dataset_domain, load, ogbench_to_offline
from harness.datasets import build
from harness.datasets import ogbench as cube
from harness.evaluation import evaluate
from tests.test_evaluation import FixedPolicy

# One worker runs this file: its tests share module fixtures (see pyproject.toml).
pytestmark = [pytest.mark.xdist_group("ogbench"), pytest.mark.slow]  # builds OGBench play data

DATASET = "local/ogbench/cube-single-v0"
TRANSITIONS = 1_500  # one full 1000-step episode and a cut one; seed 0 reaches the task goal in it


@pytest.fixture(scope="module")
def cube_data(minari_root):
    build(DATASET, TRANSITIONS, seed=0)
    return load(DATASET)


@pytest.fixture(scope="module")
def eval_env():
    env = gym.make(cube.EVAL_ENV_ID)
    yield env
    env.close()


def test_build_and_load(cube_data):
    assert len(cube_data) == TRANSITIONS and cube_data.num_episodes == 2
    assert (cube_data.obs_dim, cube_data.act_dim) == (28, 5)
    assert np.abs(cube_data.actions).max() <= 1.0
    assert cube_data.domain == "ogbench-cube"
    assert cube_data.info()["eval_env"] == cube.EVAL_ENV_ID
    ref = cube_data.reference
    assert ref.min == -200.0 and -200.0 < ref.max < -20.0  # random never succeeds; the oracle succeeds fast


def test_rewards_and_masks_are_the_eval_envs(cube_data, eval_env):
    """−1/0 rewards, terminal exactly at success, and the eval env's own reward on every stored state."""
    rewards, masks = cube_data.rewards, cube_data.masks
    assert set(np.unique(rewards)) == {-1.0, 0.0}
    np.testing.assert_array_equal(masks == 0.0, rewards == 0.0)
    eval_env.reset(seed=0)
    task_env = eval_env.unwrapped
    replayed = []
    for ep in minari.load_dataset(DATASET).iterate_episodes():
        for qpos, qvel in zip(ep.infos["qpos"][:-1], ep.infos["qvel"][:-1]):
            task_env.set_state(qpos.astype(np.float64), qvel.astype(np.float64))
            replayed.append(task_env.compute_reward())
    np.testing.assert_array_equal(replayed, rewards)


def test_relabelling_matches_eval_env_steps(eval_env):
    """In the eval env, the reward and termination of each step are the relabelling of the state acted in."""
    oracle = cube.TaskOracle(eval_env)
    _, info = eval_env.reset(seed=1)
    oracle.reset(info)
    states, rewards, terminated, done = [], [], [], False
    while not done:
        _, reward, term, trunc, info = eval_env.step(oracle(info))
        states.append(info["prev_qpos"])
        rewards.append(reward)
        terminated.append(term)
        done = term or trunc
    assert terminated[-1] and info["success"]
    relabelled, masks = cube.relabel(np.array(states, dtype=np.float32), eval_env)
    np.testing.assert_array_equal(relabelled, rewards)
    np.testing.assert_array_equal(masks == 0.0, terminated)


def test_eval_env_is_ogbenchs_task(cube_data, eval_env):
    import ogbench  # noqa: F401  (registers OGBench's envs)

    assert eval_env.spec.max_episode_steps == gym.spec("cube-single-singletask-task2-v0").max_episode_steps
    assert eval_env.unwrapped.cur_task_info["task_name"] == "task2_vertical1"
    result = evaluate(FixedPolicy(5, lambda obs, g: torch.rand(len(obs), 5, generator=g) * 2 - 1), cube_data, 2, 0)
    assert result.success_rate == 0.0 and result.return_mean == -200.0 and result.normalized_score == 0.0


def test_ogbench_ids(monkeypatch, eval_env):
    import ogbench.utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(ogbench.utils, "download_datasets", offline)
    with pytest.raises(DatasetUnavailable, match="flowbench data build local/ogbench/cube-single-v0"):
        load("ogbench/cube-single-play-singletask-v0")
    with pytest.raises(DatasetUnavailable, match="singletask"):
        load("ogbench/cube-single-play-v0")
    assert dataset_domain("ogbench/antmaze-large-navigate-singletask-v0") == "ogbench-antmaze"
    assert dataset_domain("ogbench/visual-cube-double-play-singletask-task1-v0") == "ogbench-cube"


def test_ogbench_dict_converts_as_is(eval_env):
    """OGBench's relabelled train dict keeps its rewards and masks; its terminals become episode ends."""
    rng = np.random.default_rng(0)
    train = {"observations": rng.standard_normal((4, 28)), "next_observations": rng.standard_normal((4, 28)),
             "actions": rng.uniform(-1, 1, (4, 5)), "rewards": np.array([-1.0, 0.0, -1.0, -1.0]),
             "masks": np.array([1.0, 0.0, 1.0, 1.0]), "terminals": np.array([0.0, 1.0, 0.0, 1.0])}
    data = ogbench_to_offline("ogbench/cube-single-play-singletask-task2-v0", train, eval_env)
    np.testing.assert_array_equal(data.masks, train["masks"])
    np.testing.assert_array_equal(data.rewards, train["rewards"])
    assert data.num_episodes == 2 and data.reference is None and data.domain == "ogbench-cube"
    np.testing.assert_allclose(data.actions, train["actions"], atol=1e-6)
    env = data.make_eval_env()
    assert env.spec.id == "cube-single-singletask-task2-v0"
    env.close()
