"""Policy evaluation: E seeded episodes in a vectorised Gymnasium env, one batched ``act`` per step."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch

from algos.base import Agent
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
    """Runs ``episodes`` episodes in parallel envs; env ``i`` is reset with seed ``seed + i``.

    Acting draws its noise from a generator seeded with ``seed`` (never the agent's training
    generator), so evaluating does not change what training does next.
    """
    if episodes <= 0:
        raise ValueError(f"eval episodes must be positive, got {episodes}")
    envs = gym.vector.SyncVectorEnv([data.make_eval_env for _ in range(episodes)])
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    modules = agent.modules().values()
    for m in modules:
        m.eval()
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
        returns = np.zeros(episodes)
        done = np.zeros(episodes, dtype=bool)
        success = np.zeros(episodes, dtype=bool)
        reports_success = False
        while not done.all():
            agent_obs = torch.as_tensor(data.env_to_agent_obs(obs), device=agent.device)
            with torch.no_grad():
                actions = agent.act(agent_obs, generator).cpu().numpy()
            obs, reward, terminated, truncated, info = envs.step(data.agent_to_env_actions(actions))
            live = ~done
            returns[live] += reward[live]
            for key in ("success", "is_success"):
                if key in info:
                    reports_success = True
                    mask = info.get(f"_{key}", np.ones(episodes, dtype=bool))
                    success[live & mask] |= np.asarray(info[key], dtype=bool)[live & mask]
            done |= terminated | truncated
    finally:
        envs.close()
        for m in modules:
            m.train()
    score = float(np.mean(data.reference.normalize(returns))) if data.reference else float("nan")
    return EvalResult(
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        normalized_score=score,
        success_rate=float(success.mean()) if reports_success else float("nan"),
        episodes=episodes,
        returns=returns.tolist(),
    )
