"""Gymnasium environments that flowbench registers: the evaluation envs of its local datasets.

Registered ids carry an entry point in this module, so a Minari dataset that names one as its
evaluation env recovers it wherever flowbench is installed.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

# gymnasium-robotics prints a notice about Adroit v1 rewards to stderr on import; flowbench uses
# no Adroit v1 env, and the notice would land in every command's output.
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics  # noqa: F401
from gymnasium_robotics.envs.maze.maps import MEDIUM_MAZE, U_MAZE  # noqa: E402
from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv  # noqa: E402

# ----------------------------------------------------------------------------------------------
# toy/bimodal: a one-step 2-D bandit (the FlowQ paper's Figure 1 situation)

BIMODAL_UPPER = np.array([0.0, 0.5])
BIMODAL_LOWER = np.array([0.0, -0.5])
BIMODAL_RADIUS = 0.25


def bimodal_reward(actions: np.ndarray) -> np.ndarray:
    """1.0 inside the upper disc, 0.5 inside the lower disc, 0 elsewhere (vectorised over rows)."""
    actions = np.asarray(actions, dtype=np.float64)
    upper = np.linalg.norm(actions - BIMODAL_UPPER, axis=-1) <= BIMODAL_RADIUS
    lower = np.linalg.norm(actions - BIMODAL_LOWER, axis=-1) <= BIMODAL_RADIUS
    return np.where(upper, 1.0, np.where(lower, 0.5, 0.0))


class BimodalBanditEnv(gym.Env):
    """One step: observe a uniform 2-D point (irrelevant to reward), act in [-1, 1]², get the reward.

    The data puts equal weight on the two modes, so imitation scores ≈ 50 on the normalised scale
    (reference scores 0.5 and 1.0), the upper mode scores 100 and leaving the support scores −100.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward = float(bimodal_reward(action[None])[0])
        obs = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return obs, reward, True, False, {"in_support": reward > 0.0}


BIMODAL_ENV_ID = "flowbench/Bimodal-v0"

gym.register(BIMODAL_ENV_ID, entry_point="harness.envs:BimodalBanditEnv", max_episode_steps=1)


# ----------------------------------------------------------------------------------------------
# PointMaze: D4RL maze2d's task (fixed start, fixed goal, sparse reward) on gymnasium-robotics'
# PointMaze simulator, whose maps and dynamics were ported from D4RL.

POINTMAZE_MAPS = {"umaze": U_MAZE, "medium": MEDIUM_MAZE}
# D4RL maze2d's (row, col) cells, checked open in the maps above and far apart along the maze.
POINTMAZE_START = {"umaze": (3, 1), "medium": (1, 1)}
POINTMAZE_GOAL = {"umaze": (1, 1), "medium": (6, 6)}
POINTMAZE_GOAL_RADIUS = 0.45  # gymnasium-robotics' sparse reward and success radius
# Episode lengths as D4RL's maze2d: the medium maze's shortest path alone takes ~200 steps.
POINTMAZE_EPISODE_STEPS = {"umaze": 300, "medium": 600}
POINTMAZE_ENV_IDS = {
    "umaze": "flowbench/PointMaze-UMaze-Eval-v0",
    "medium": "flowbench/PointMaze-Medium-Eval-v0",
}


class PointMazeEval(gym.ObservationWrapper):
    """PointMaze with fixed start and goal cells; the agent sees only the point's (x, y, vx, vy).

    gymnasium-robotics jitters both the start and the goal by U(±0.25) at reset. The goal is pinned
    back to its cell centre, so the datasets' rewards (relabelled for this goal) and evaluation
    rewards agree exactly; the start keeps its jitter, so evaluation episodes differ.
    """

    def __init__(self, maze: str, render_mode: str | None = None) -> None:
        # continuing_task without reset_target: the goal stays put and reward accrues while the
        # point stays there, as in D4RL maze2d.
        super().__init__(PointMazeEnv(maze_map=POINTMAZE_MAPS[maze], render_mode=render_mode,
                                      continuing_task=True, reset_target=False))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        maze_env = self.env.unwrapped
        self.goal_xy = maze_env.maze.cell_rowcol_to_xy(np.array(POINTMAZE_GOAL[maze]))
        self._cells = {"reset_cell": np.array(POINTMAZE_START[maze]),
                       "goal_cell": np.array(POINTMAZE_GOAL[maze])}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # ``options`` is ignored: the fixed start and goal are the task.
        obs, info = self.env.reset(seed=seed, options=self._cells)
        maze_env = self.env.unwrapped
        maze_env.goal = self.goal_xy.copy()  # the env's reward and success read this
        maze_env.update_target_site_pos()
        distance = np.linalg.norm(obs["achieved_goal"] - self.goal_xy)
        info["success"] = bool(distance <= POINTMAZE_GOAL_RADIUS)  # was against the jittered goal
        return self.observation(obs), info

    def observation(self, observation: dict) -> np.ndarray:
        return observation["observation"].astype(np.float32)


def make_pointmaze_eval(maze: str, render_mode: str | None = None) -> gym.Env:
    """The evaluation env of ``local/pointmaze/<maze>-v0`` (gym.make adds the time limit)."""
    return PointMazeEval(maze, render_mode)


for _maze, _env_id in POINTMAZE_ENV_IDS.items():
    gym.register(_env_id, entry_point="harness.envs:make_pointmaze_eval",
                 kwargs={"maze": _maze}, max_episode_steps=POINTMAZE_EPISODE_STEPS[_maze])


# ----------------------------------------------------------------------------------------------
# OGBench: its single-task manipulation envs (fixed task, r = −#unfinished subtasks, termination on
# success, info["success"]), under ids whose entry point is here so that datasets flowbench builds
# (local/ogbench/*) recover them through Minari. ogbench is imported on use: importing it registers
# every OGBench env and pulls in dm_control, which most flowbench commands never need.

OGBENCH_EVAL_ENV_IDS = {"cube-single-play-singletask-task2-v0": "flowbench/CubeSingle-Task2-Eval-v0"}
OGBENCH_EPISODE_STEPS = {"cube-single-play-singletask-task2-v0": 200}  # OGBench's own time limits


def import_ogbench() -> Any:
    """Imports ogbench without the no-display warning that its viewer import gives on a headless machine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*DISPLAY environment variable")
        import ogbench
        import ogbench.manipspace.envs.env  # noqa: F401  (the module that imports mujoco's viewer)
    return ogbench


def make_ogbench_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` of an OGBench env id (importing ogbench registers them)."""
    import_ogbench()
    return gym.make(env_id, **kwargs)


def make_ogbench_task_env(dataset_name: str) -> gym.Env:
    """The env OGBench evaluates a dataset name in: ``ogbench.make_env_and_datasets(name, env_only=True)``."""
    return import_ogbench().make_env_and_datasets(dataset_name, env_only=True)


def make_ogbench_eval(dataset_name: str) -> gym.Env:
    """The registered entry point: unwrapped, since the registration adds the time limit and checks again."""
    return make_ogbench_task_env(dataset_name).unwrapped


for _name, _env_id in OGBENCH_EVAL_ENV_IDS.items():
    gym.register(_env_id, entry_point="harness.envs:make_ogbench_eval",
                 kwargs={"dataset_name": _name}, max_episode_steps=OGBENCH_EPISODE_STEPS[_name])
