"""Policy evaluation: E seeded episodes per seed in vectorised Gymnasium envs, one batched ``act`` per step."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from algos.kit.agent import Agent
from harness.data import OfflineData


@dataclass
class EvalResult:
    return_mean: float
    return_std: float
    normalized_score: float  # 0–100 scale; NaN when the dataset has no reference scores
    success_rate: float  # NaN when the env reports no success
    episodes: int
    returns: list[float]

    def row(self) -> dict[str, float]:
        out = asdict(self)
        del out["returns"], out["episodes"]
        return out


def evaluate(agent: Agent, data: OfflineData, episodes: int, seed: int) -> EvalResult:
    """``evaluate_seeds`` for a one-seed agent."""
    return evaluate_seeds(agent, data, episodes, [seed])[0]


def evaluate_seeds(agent: Agent, data: OfflineData, episodes: int, seeds: Sequence[int]) -> list[EvalResult]:
    """Evaluates each of the agent's S seeds in ``episodes`` parallel envs of its own; seed i's env ``j``
    is reset with seed ``seeds[i] + j``, and one batched ``act`` per env step serves every seed.

    Acting draws each seed's noise from a generator seeded with ``seeds[i]`` (never the agent's training
    generators), so evaluating does not change what training does next, and seed i's result is what a
    one-seed run of it gets.
    """
    if episodes <= 0:
        raise ValueError(f"eval episodes must be positive, got {episodes}")
    if len(seeds) != agent.num_seeds:
        raise ValueError(f"{len(seeds)} evaluation seeds for an agent of {agent.num_seeds} seeds")
    n = len(seeds)
    envs = [gym.vector.SyncVectorEnv([data.make_eval_env for _ in range(episodes)]) for _ in seeds]
    generators = [torch.Generator(device=agent.device).manual_seed(seed) for seed in seeds]
    modules = agent.modules().values()
    for m in modules:
        m.eval()
    try:
        obs = [env.reset(seed=[seed + i for i in range(episodes)])[0] for env, seed in zip(envs, seeds)]
        returns = np.zeros((n, episodes))
        done = np.zeros((n, episodes), dtype=bool)
        success = np.zeros((n, episodes), dtype=bool)
        reports_success = False
        while not done.all():
            agent_obs = torch.as_tensor(np.stack([data.env_to_agent_obs(o) for o in obs]), device=agent.device,
                                        dtype=torch.get_default_dtype())
            with torch.no_grad():
                actions = agent.act(agent_obs, generators).cpu().numpy()
            for s, env in enumerate(envs):
                if done[s].all():
                    continue  # this seed's episodes are over; its actions are drawn but not used
                obs[s], reward, terminated, truncated, info = env.step(data.agent_to_env_actions(actions[s]))
                live = ~done[s]
                returns[s, live] += reward[live]
                for key in ("success", "is_success"):
                    if key in info:
                        reports_success = True
                        mask = info.get(f"_{key}", np.ones(episodes, dtype=bool))
                        success[s, live & mask] |= np.asarray(info[key], dtype=bool)[live & mask]
                done[s] |= terminated | truncated
    finally:
        for env in envs:
            env.close()
        for m in modules:
            m.train()
    return [EvalResult(
        return_mean=float(returns[s].mean()),
        return_std=float(returns[s].std()),
        normalized_score=float(np.mean(data.reference.normalize(returns[s]))) if data.reference else float("nan"),
        success_rate=float(success[s].mean()) if reports_success else float("nan"),
        episodes=episodes,
        returns=returns[s].tolist(),
    ) for s in range(n)]
