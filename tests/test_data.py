"""Data round trips with real Minari datasets built by real simulators."""

from __future__ import annotations

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari import DataCollector

from harness import datasets
from harness.data import (
    DatasetUnavailable,
    ReferenceScores,
    TransitionBuffer,
    dataset_domain,
    flatten_observations,
    load,
)
from harness.cli import main
from harness.envs import POINTMAZE_GOAL, bimodal_reward
from tests.conftest import MAZE_TRANSITIONS, TOY_TRANSITIONS


def test_toy_round_trip(toy_data):
    assert len(toy_data) == TOY_TRANSITIONS
    assert toy_data.num_episodes == TOY_TRANSITIONS  # one-step episodes
    assert np.all(toy_data.masks == 0.0)  # every step terminates
    np.testing.assert_allclose(toy_data.rewards, bimodal_reward(toy_data.actions), atol=1e-6)
    upper = np.linalg.norm(toy_data.actions - [0, 0.5], axis=1) <= 0.25
    lower = np.linalg.norm(toy_data.actions - [0, -0.5], axis=1) <= 0.25
    assert 0.45 < upper.mean() < 0.55 and (upper | lower).mean() > 0.98
    assert toy_data.reference == ReferenceScores(0.5, 1.0, "minari-metadata")


def test_pointmaze_round_trip(maze_data):
    assert len(maze_data) == MAZE_TRANSITIONS
    assert maze_data.num_episodes == MAZE_TRANSITIONS // 1000
    assert np.all(maze_data.masks == 1.0)  # truncations only: no terminal
    # consecutive transitions within an episode chain
    inner = ~maze_data.episode_ends[:-1]
    np.testing.assert_array_equal(maze_data.next_observations[:-1][inner], maze_data.observations[1:][inner])
    # rewards are relabelled for the evaluation goal
    env = maze_data.make_eval_env()
    goal = env.unwrapped.maze.cell_rowcol_to_xy(np.array(POINTMAZE_GOAL["umaze"]))
    reached = np.linalg.norm(maze_data.next_observations[:, :2] - goal, axis=1) <= 0.45
    np.testing.assert_array_equal(maze_data.rewards, reached.astype(np.float32))
    assert maze_data.rewards.sum() > 0
    assert maze_data.reference.source == "minari-metadata"
    assert maze_data.reference.max > maze_data.reference.min + 50
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and env.spec.max_episode_steps == 300


def test_buffer_samples_from_dataset(toy_data):
    import torch

    buffer = TransitionBuffer(toy_data)
    g = torch.Generator().manual_seed(0)
    batch = buffer.sample(64, g)
    assert batch.obs.shape == (64, 2) and batch.masks.shape == (64,)
    rows = {tuple(r) for r in np.round(toy_data.actions, 5)}
    assert all(tuple(r) in rows for r in np.round(batch.actions.numpy(), 5))


def test_dict_observations_flatten_like_gymnasium():
    env = gym.make("PointMaze_UMaze-v3")
    space = env.observation_space
    samples = [env.reset(seed=s)[0] for s in range(3)]
    # an env that returns its keys in another order than the (sorted) space must not matter
    shuffled = [{k: o[k] for k in reversed(list(o))} for o in samples]
    batch = {k: np.stack([o[k] for o in shuffled]) for k in space.spaces}
    expected = np.stack([gym.spaces.flatten(space, o) for o in samples])
    np.testing.assert_allclose(flatten_observations(space, batch), expected)


def test_box_actions_are_rescaled(minari_root):
    """InvertedPendulum acts in [-3, 3]: dataset actions are mapped to [-1, 1], not clipped."""
    env = DataCollector(gym.make("InvertedPendulum-v5"))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(300):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.create_dataset("mujoco/invertedpendulum/tiny-v0", algorithm_name="random", author="tests",
                       author_email="t@localhost", code_permalink="tests", description="random actions")
    raw = np.concatenate([ep.actions for ep in minari.load_dataset("mujoco/invertedpendulum/tiny-v0").iterate_episodes()])
    data = load("mujoco/invertedpendulum/tiny-v0")
    np.testing.assert_allclose(data.actions[:, 0], raw[:, 0] / 3.0, atol=1e-6)
    assert np.abs(raw).max() > 1.5 and np.abs(data.actions).max() <= 1.0
    np.testing.assert_allclose(data.agent_to_env_actions(data.actions), raw, atol=1e-5)
    assert (data.masks == 0).sum() == sum(ep.terminations.sum() for ep in minari.load_dataset(
        "mujoco/invertedpendulum/tiny-v0").iterate_episodes())


def test_d4rl_reference_table_used_when_metadata_has_none(minari_root):
    env = DataCollector(gym.make("Hopper-v5"))
    env.reset(seed=0)
    for _ in range(50):
        env.step(env.action_space.sample())
    env.create_dataset("mujoco/hopper/tiny-v0", algorithm_name="random", author="tests",
                       author_email="t@localhost", code_permalink="tests", description="random actions")
    data = load("mujoco/hopper/tiny-v0")
    assert data.reference == ReferenceScores(-20.272305, 3234.3, "d4rl-table")
    assert data.reference.normalize(3234.3) == pytest.approx(100.0)


def test_domains():
    assert dataset_domain("D4RL/antmaze/umaze-v1") == "antmaze"
    assert dataset_domain("D4RL/pen/human-v2") == "adroit"
    assert dataset_domain("mujoco/hopper/medium-v0") == "locomotion"
    assert dataset_domain("local/pointmaze/umaze-v0") == "pointmaze"


def test_observation_normalisation(maze_data):
    from harness.data import load as load_again

    data = load_again("local/pointmaze/umaze-v0", normalize_obs=True)
    np.testing.assert_allclose(data.observations.mean(0), 0.0, atol=1e-3)
    raw = maze_data.observations[:5]
    np.testing.assert_allclose(data.env_to_agent_obs(raw), data.observations[:5], atol=1e-5)


def test_unknown_local_dataset_lists_buildable(minari_root):
    with pytest.raises(DatasetUnavailable, match="toy/bimodal-v0"):
        load("toy/nonexistent-v0")
    with pytest.raises(DatasetUnavailable, match="Malformed"):
        load("not a dataset id")


def test_failed_download_points_at_data_build(minari_root):
    """A remote id goes down Minari's real download path (its Hugging Face remote, installed with flowbench); with no
    route to the host, the error names the connection failure and how to build a dataset locally."""
    with pytest.raises(DatasetUnavailable, match="flowbench data build") as failure:
        load("D4RL/antmaze/umaze-v1")
    assert "not installed" not in str(failure.value)  # the download path itself is importable
    assert "ConnectError" in str(failure.value) or "Connection" in str(failure.value), failure.value


def test_build_is_atomic_and_refuses_overwrite(minari_root):
    with pytest.raises(FileExistsError, match=rf"transitions {TOY_TRANSITIONS} \(asked: 100\).*--force"):
        datasets.build("toy/bimodal-v0", 100)
    assert len(load("toy/bimodal-v0")) == TOY_TRANSITIONS
    assert not [p for p in minari_root.iterdir() if p.name.startswith(".staging")]


def test_data_build_twice_with_the_same_settings_rebuilds_nothing(minari_root, capsys):
    files = sorted((minari_root / "toy" / "bimodal-v0").rglob("*"))
    stamps = [(f, f.stat().st_mtime_ns) for f in files if f.is_file()]
    assert main(["data", "build", "toy/bimodal-v0", "--transitions", str(TOY_TRANSITIONS)]) == 0
    assert f"already built toy/bimodal-v0 at {minari_root / 'toy' / 'bimodal-v0'}, {TOY_TRANSITIONS} transitions" \
        in capsys.readouterr().out
    assert [(f, f.stat().st_mtime_ns) for f, _ in stamps] == stamps
    # other settings without --force: exit 2 naming the difference, nothing touched
    assert main(["data", "build", "toy/bimodal-v0", "--transitions", str(TOY_TRANSITIONS), "--seed", "3"]) == 2
    assert "seed 0 (asked: 3)" in capsys.readouterr().err
    assert [(f, f.stat().st_mtime_ns) for f, _ in stamps] == stamps
