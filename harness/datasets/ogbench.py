"""``local/ogbench/cube-single-v0``: OGBench cube-single "play" data, collected here with OGBench's oracle.

OGBench's recipe for its play datasets (data_gen_scripts/generate_manipspace.py): ``cube-single-v0``
in ``mode='data_collection'`` with ``terminate_at_goal=False`` draws a random cube target, the
non-Markovian plan oracle (keyframe plan with temporally correlated noise) carries the cube there,
and when its plan is done ``set_new_target()`` draws the next one. Every episode starts from a fresh
random scene and is cut after 1000 transitions (OGBench stores 1001 states per episode).

Rewards and masks are relabelled for the evaluation task (``cube-single-play-singletask-task2-v0``,
FQL's default) by OGBench's own ``relabel_dataset``, with the goal of the evaluation env:
r = −(number of cubes not at their goal), terminal where all are. OGBench's single-task envs score
the state *before* the action (``success_timing='pre'``), so a transition's reward and termination
belong to its observation. They are stored as terminations inside episodes that carry on (OGBench's
play data does not stop at the task goal); the loader turns them into masks. The states' qpos and
qvel are kept in the episode infos, as OGBench keeps them, so the data can be relabelled or replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer

from harness.datasets.registry import register_builder, write_dataset
from harness.envs import OGBENCH_EVAL_ENV_IDS, make_ogbench_env
from harness.seeding import global_numpy_seed  # OGBench's oracles draw from numpy's global RNG

TASK = "cube-single-play-singletask-task2-v0"  # the OGBench dataset name whose task the data is labelled for
EVAL_ENV_ID = OGBENCH_EVAL_ENV_IDS[TASK]
TASK_ENV = "cube-single-singletask-task2-v0"  # the OGBench env that name evaluates in
EPISODE_LENGTH = 1000
PLAN_NOISE, PLAN_NOISE_SMOOTHING = 0.1, 0.5  # OGBench's play-data settings
REF_EPISODES = 10


def relabel(qpos: np.ndarray, eval_env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """(rewards, masks) of states ``qpos`` for the task of ``eval_env``, by OGBench's own relabelling."""
    from ogbench.relabel_utils import relabel_dataset

    data = {"qpos": qpos}
    relabel_dataset(TASK_ENV, eval_env, data)  # resets eval_env to read its goal
    return data["rewards"], data["masks"]


class TaskOracle:
    """OGBench's noise-free Markov cube oracle, aimed at the goal of a single-task env.

    The oracles read their target from keys that only data-collection envs report; they are filled in
    from the task env's goal (the target mocap body, which stands upright).
    """

    def __init__(self, env: gym.Env) -> None:
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

        self.env = env.unwrapped
        self.oracle = CubeMarkovOracle(env=env)

    def _with_goal(self, info: dict) -> dict:
        goal = self.env._data.mocap_pos[self.env._cube_target_mocap_ids[0]].copy()
        return {**info, "privileged/target_block": 0, "privileged/target_block_pos": goal,
                "privileged/target_block_yaw": np.zeros(1)}

    def reset(self, info: dict) -> None:
        self.oracle.reset(None, self._with_goal(info))

    def __call__(self, info: dict) -> np.ndarray:
        return np.clip(self.oracle.select_action(None, self._with_goal(info)), -1.0, 1.0).astype(np.float32)


def rollout(env: gym.Env, seed: int, policy: Callable[[dict], np.ndarray],
            reset: Callable[[dict], None] = lambda info: None) -> tuple[float, bool]:
    """(undiscounted return, success) of one seeded episode of ``policy(info)``."""
    _, info = env.reset(seed=seed)
    reset(info)
    ret, done, success = 0.0, False, False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy(info))
        ret, success, done = ret + float(reward), success or bool(info["success"]), terminated or truncated
    return ret, success


def collect_play(transitions: int, seed: int) -> tuple[list[dict[str, np.ndarray]], int]:
    """Noisy plan-oracle play in cube-single, OGBench's way: per-episode arrays, and how many new targets."""
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

    env = make_ogbench_env("cube-single-v0", terminate_at_goal=False, mode="data_collection",
                           max_episode_steps=EPISODE_LENGTH)
    oracle = CubePlanOracle(env=env, noise=PLAN_NOISE, noise_smoothing=PLAN_NOISE_SMOOTHING)
    episodes, targets = [], 0
    for start in range(0, transitions, EPISODE_LENGTH):
        ob, info = env.reset(seed=seed if start == 0 else None)  # later resets continue the seeded stream
        oracle.reset(ob, info)
        steps = [(ob, info["qpos"], info["qvel"])]
        actions = []
        for _ in range(min(EPISODE_LENGTH, transitions - start)):
            actions.append(np.clip(oracle.select_action(ob, info), -1.0, 1.0))
            ob, _, _, _, info = env.step(actions[-1])
            if oracle.done:  # the plan is through (target reached or not): draw the next target
                oracle.reset(*env.unwrapped.set_new_target())
                targets += 1
            steps.append((ob, info["qpos"], info["qvel"]))
        obs, qpos, qvel = (np.array(x, dtype=np.float32) for x in zip(*steps))
        episodes.append({"observations": obs, "actions": np.array(actions, dtype=np.float32),
                         "qpos": qpos, "qvel": qvel})
    env.close()
    return episodes, targets


@register_builder("local/ogbench/cube-single-v0", default_transitions=100_000,
                  description="OGBench cube-single play data (plan oracle), relabelled for singletask task2")
def build_cube_single(dataset_id: str, transitions: int, seed: int) -> None:
    with global_numpy_seed(seed):
        episodes, targets = collect_play(transitions, seed)
        eval_env = gym.make(EVAL_ENV_ID)
        # Relabelled with the float32 qpos that is stored, so replaying the stored states agrees exactly.
        rewards, masks = relabel(np.concatenate([ep["qpos"][:-1] for ep in episodes]), eval_env)
        rng = np.random.default_rng(seed)
        uniform = lambda info: rng.uniform(-1.0, 1.0, 5).astype(np.float32)  # noqa: E731
        random_runs = [rollout(eval_env, seed + i, uniform) for i in range(REF_EPISODES)]
        oracle = TaskOracle(eval_env)
        oracle_runs = [rollout(eval_env, seed + i, oracle, oracle.reset) for i in range(REF_EPISODES)]
        eval_env.close()
    buffers, start = [], 0
    for i, ep in enumerate(episodes):
        n = len(ep["actions"])
        truncations = np.zeros(n, dtype=bool)
        truncations[-1] = True
        buffers.append(EpisodeBuffer(
            id=i, observations=ep["observations"], actions=ep["actions"], rewards=rewards[start : start + n],
            terminations=masks[start : start + n] == 0.0, truncations=truncations,
            infos={"qpos": ep["qpos"], "qvel": ep["qvel"]},
        ))
        start += n
    write_dataset(
        dataset_id,
        buffers,
        eval_env_id=EVAL_ENV_ID,
        observation_space=gym.spaces.Box(-np.inf, np.inf, shape=episodes[0]["observations"].shape[1:],
                                         dtype=np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32),
        ref_min_score=np.mean([r for r, _ in random_runs]),
        ref_max_score=np.mean([r for r, _ in oracle_runs]),
        description=__doc__.strip(),
        algorithm_name=f"OGBench CubePlanOracle (noise {PLAN_NOISE}, smoothing {PLAN_NOISE_SMOOTHING}), "
                       f"new target when the plan is done",
        extra_metadata={
            "builder_seed": seed, "episode_length": EPISODE_LENGTH, "plan_noise": PLAN_NOISE,
            "plan_noise_smoothing": PLAN_NOISE_SMOOTHING, "ogbench_task": TASK,
            "ogbench_version": version("ogbench"), "targets_drawn": targets,
            "task_successes": int((masks == 0.0).sum()), "reference_episodes": REF_EPISODES,
            "reference_min_policy": "uniform random actions",
            "reference_max_policy": "OGBench CubeMarkovOracle, noise-free, aimed at the task goal",
            "reference_max_success_rate": float(np.mean([s for _, s in oracle_runs])),
        },
    )
