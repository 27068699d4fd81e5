"""``local/pointmaze/{umaze,medium}-v0``: D4RL maze2d-style PointMaze data, collected here.

D4RL's maze2d recipe on gymnasium-robotics' PointMaze: a waypoint planner (BFS over the maze's
cells) and a PD controller with Gaussian action noise drive the point to random goal cells, a new
one each time the current one is reached, in one long stream that is never reset and is cut into
fixed-length truncated episodes. The stream runs in the evaluation env itself (without its time
limit), so the stored rewards are that env's sparse rewards for the fixed evaluation goal, i.e. the
behaviour's random goals relabelled to the evaluation task. The goal is pinned to its cell centre
(gymnasium-robotics would jitter it at reset); see ``harness.envs.PointMazeEval``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium_robotics.envs.maze.maze_v4 import Maze
from minari.data_collector import EpisodeBuffer

from harness.datasets.registry import register_builder, write_dataset
from harness.envs import POINTMAZE_ENV_IDS, make_pointmaze_eval

ACTION_NOISE_STD = 0.5  # D4RL maze2d's noisy behaviour
EPISODE_LENGTH = 1000  # several behaviour goals per episode, like D4RL's long maze2d stream
GOAL_REACHED = 0.2  # how close the stream must come to a behaviour goal before drawing the next
P_GAIN, D_GAIN = 10.0, -1.0  # D4RL's waypoint controller gains
REF_EPISODES = 20


def _neighbours(cell: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    i, j = cell
    return (i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)


class WaypointController:
    """Drives the point to a goal: PD towards the next cell centre on a shortest path over cells.

    Shortest-path distances to every open cell are computed once by BFS, so an action is a lookup
    plus the PD law. Heading for the next cell's centre (the goal itself inside the goal's cell)
    keeps the point clear of wall corners.
    """

    def __init__(self, maze: Maze) -> None:
        self.maze = maze
        grid = np.array(maze.maze_map, dtype=object) != 1
        self.open_cells = [tuple(c) for c in np.argwhere(grid)]
        self.dist = {goal: self._bfs(grid, goal) for goal in self.open_cells}

    @staticmethod
    def _bfs(grid: np.ndarray, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
        dist, queue = {goal: 0}, deque([goal])
        while queue:
            cell = queue.popleft()
            for n in _neighbours(cell):
                if grid[n] and n not in dist:  # the maps' border is wall, so n stays on the grid
                    dist[n] = dist[cell] + 1
                    queue.append(n)
        return dist

    def action(self, state: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        """The clipped PD action for point state (x, y, vx, vy) heading for ``goal_xy``."""
        pos, vel = state[:2], state[2:]
        cell = tuple(self.maze.cell_xy_to_rowcol(pos))
        dist = self.dist[tuple(self.maze.cell_xy_to_rowcol(goal_xy))]
        if dist[cell] == 0:
            waypoint = goal_xy
        else:
            nxt = min(_neighbours(cell), key=lambda n: dist.get(n, np.inf))  # walls are not in dist
            waypoint = self.maze.cell_rowcol_to_xy(np.array(nxt))
        return np.clip(P_GAIN * (waypoint - pos) + D_GAIN * vel, -1.0, 1.0)


def _mean_return(env_id: str, policy: Callable[[np.ndarray], np.ndarray], episodes: int,
                 rng: np.random.Generator) -> float:
    """Mean undiscounted return of ``policy(state)`` over seeded episodes of the evaluation env."""
    env = gym.make(env_id)
    returns = []
    for _ in range(episodes):
        state, _ = env.reset(seed=int(rng.integers(2**31)))
        done, ret = False, 0.0
        while not done:
            state, reward, terminated, truncated, _ = env.step(policy(state))
            ret += float(reward)
            done = terminated or truncated
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


def build_pointmaze(maze: str, dataset_id: str, transitions: int, seed: int) -> None:
    """Collects ``transitions`` noisy controller steps in ``maze`` and writes the dataset."""
    rng = np.random.default_rng(seed)
    env = make_pointmaze_eval(maze)  # no time limit: one unbroken stream
    controller = WaypointController(env.unwrapped.maze)
    cells = controller.open_cells
    states = np.empty((transitions + 1, 4), dtype=np.float32)
    actions = np.empty((transitions, 2), dtype=np.float32)
    rewards = np.empty(transitions)
    states[0], _ = env.reset(seed=seed)
    k = int(rng.integers(len(cells)))
    goal_xy, reached = env.unwrapped.maze.cell_rowcol_to_xy(np.array(cells[k])), 0
    for t in range(transitions):
        if np.linalg.norm(states[t, :2] - goal_xy) < GOAL_REACHED:
            k = (k + int(rng.integers(1, len(cells)))) % len(cells)  # any cell but the current one
            goal_xy, reached = env.unwrapped.maze.cell_rowcol_to_xy(np.array(cells[k])), reached + 1
        noise = ACTION_NOISE_STD * rng.standard_normal(2)
        actions[t] = np.clip(controller.action(states[t], goal_xy) + noise, -1.0, 1.0)
        states[t + 1], rewards[t], *_ = env.step(actions[t])
    env.close()
    buffers = []
    for i, start in enumerate(range(0, transitions, EPISODE_LENGTH)):
        end = min(start + EPISODE_LENGTH, transitions)
        truncations = np.zeros(end - start, dtype=bool)
        truncations[-1] = True
        buffers.append(EpisodeBuffer(
            id=i, observations=states[start : end + 1], actions=actions[start:end],
            rewards=rewards[start:end], terminations=np.zeros(end - start, dtype=bool),
            truncations=truncations, infos={},
        ))
    env_id = POINTMAZE_ENV_IDS[maze]
    ref_min = _mean_return(env_id, lambda s: rng.uniform(-1.0, 1.0, 2).astype(np.float32),
                           REF_EPISODES, rng)
    ref_max = _mean_return(env_id, lambda s: controller.action(s, env.goal_xy).astype(np.float32),
                           REF_EPISODES, rng)
    write_dataset(
        dataset_id,
        buffers,
        eval_env_id=env_id,
        observation_space=env.observation_space,
        action_space=env.action_space,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        description=__doc__.strip(),
        algorithm_name=f"BFS waypoints + PD controller (p {P_GAIN}, d {D_GAIN}), "
                       f"N(0, {ACTION_NOISE_STD}^2) action noise",
        extra_metadata={"builder_seed": seed, "action_noise_std": ACTION_NOISE_STD,
                        "episode_length": EPISODE_LENGTH, "behaviour_goals_reached": reached},
    )


@register_builder("local/pointmaze/umaze-v0", default_transitions=100_000,
                  description="PointMaze U-maze, D4RL maze2d-style noisy waypoint-controller data")
def build_umaze(dataset_id: str, transitions: int, seed: int) -> None:
    build_pointmaze("umaze", dataset_id, transitions, seed)


@register_builder("local/pointmaze/medium-v0", default_transitions=200_000,
                  description="PointMaze medium, D4RL maze2d-style noisy waypoint-controller data")
def build_medium(dataset_id: str, transitions: int, seed: int) -> None:
    build_pointmaze("medium", dataset_id, transitions, seed)
