"""``toy/bimodal-v0``: one-step bandit data with two equally weighted action modes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer

from harness.datasets.registry import register_builder, write_dataset
from harness.envs import BIMODAL_ENV_ID, BIMODAL_LOWER, BIMODAL_UPPER, bimodal_reward

BIMODAL_STD = 0.08


def bimodal_actions(n: int, rng: np.random.Generator) -> np.ndarray:
    """The behaviour policy: pick a mode with probability 1/2, add N(0, 0.08²) noise, clip to [-1, 1]."""
    upper = rng.random(n) < 0.5
    centres = np.where(upper[:, None], BIMODAL_UPPER, BIMODAL_LOWER)
    return np.clip(centres + BIMODAL_STD * rng.standard_normal((n, 2)), -1.0, 1.0).astype(np.float32)


@register_builder("toy/bimodal-v0", default_transitions=5_000,
                  description="one-step 2-D bandit, two action modes (reward 1.0 upper, 0.5 lower)")
def build_bimodal(dataset_id: str, transitions: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1.0, 1.0, size=(transitions, 2)).astype(np.float32)
    next_obs = rng.uniform(-1.0, 1.0, size=(transitions, 2)).astype(np.float32)
    actions = bimodal_actions(transitions, rng)
    rewards = bimodal_reward(actions)
    # Every episode is one step long and terminates.
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=np.stack([obs[i], next_obs[i]]),
            actions=actions[i : i + 1],
            rewards=rewards[i : i + 1],
            terminations=np.ones(1, dtype=bool),
            truncations=np.zeros(1, dtype=bool),
            infos={},
        )
        for i in range(transitions)
    ]
    space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    write_dataset(
        dataset_id,
        buffers,
        eval_env_id=BIMODAL_ENV_ID,
        observation_space=space,
        action_space=space,
        ref_min_score=0.5,
        ref_max_score=1.0,
        description=__doc__.strip(),
        algorithm_name="two-mode Gaussian behaviour policy (sigma 0.08)",
        extra_metadata={"builder_seed": seed},
    )
