"""Offline-to-online fine-tuning: after a run's offline updates, one environment step before each update.

The FQL code's protocol (its ``main.py`` online phase): the replay buffer starts as the dataset; before each
update the current policy takes one step in the environment (``act``, stochastic as in evaluation) and the
transition is appended; minibatches are drawn uniformly from the dataset and everything appended since;
evaluation keeps the offline schedule. flowbench keeps one environment and one list of online transitions
per seed, so seed ``i`` of a batched run sees exactly what a one-seed run of it sees.

Online rewards go through the algorithm's reward transform with the *dataset's* statistics
(``harness.data.reward_map``), terminations become masks, and time limits end an episode without one.

Exact resume across a crash: a checkpoint holds each seed's online transitions, its acting generator, its
episode count and the reset seed and first transition of its current episode. The environment's state is
rebuilt by resetting with that seed and replaying the episode's stored actions (the simulation and the
time limit are deterministic given them), and the replayed observations are checked against the stored
ones: a mismatch stops the run with an error rather than continuing from a different state.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from algos.kit.agent import Batch
from algos.kit.config import AgentConfig
from algos.kit.seeds import SeedRandom
from harness.data import ACTION_CLIP_EPS, OfflineData, TransitionBuffer, reward_map


class OnlineResumeMismatch(RuntimeError):
    """Replaying a checkpoint's online episode did not reproduce the observations it recorded."""


def check_online(algo: str, config: AgentConfig, offline_steps: int, online_steps: int) -> None:
    """Raises ``ValueError`` (saying which ``--set`` lifts it) if ``config`` cannot fine-tune online for
    ``online_steps`` updates after ``offline_steps``; nothing to check without an online phase.

    A learning rate whose cosine decay reaches 0 before the run ends (Diffusion-QL's, IQL's actor on
    locomotion) would leave the online phase with nothing learning; the schedule is part of the published
    offline setting, so flowbench refuses rather than changing it silently."""
    if not online_steps:
        return
    fields = config.to_dict()
    decayed = []
    for name, value in fields.items():
        if name.endswith("_lr_schedule") and value == "cosine":
            lr = name.removesuffix("_schedule")
            horizon = int(fields.get(f"{lr}_decay_steps", 0) or offline_steps)
            if horizon < offline_steps + online_steps:
                decayed.append(name)
    if decayed:
        sets = " ".join(f"--set {name}=constant" for name in decayed)
        raise ValueError(f"{algo} cannot fine-tune online: {', '.join(decayed)} = cosine decays that learning rate "
                         f"to 0 by step {offline_steps}, so nothing would learn online; to fine-tune, run offline and "
                         f"online with {sets}")


def episode_reset_seed(seed: int, episode: int) -> int:
    """The reset seed of online episode ``episode`` of run seed ``seed`` (apart from evaluation's)."""
    return 2_000_000_000 + seed * 1_000_000 + episode


def _one(obs: Any) -> Any:
    """A single env observation as a batch of one (the layout ``env_to_agent_obs`` reads)."""
    if isinstance(obs, dict):
        return {k: _one(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_one(v) for v in obs)
    return np.asarray(obs)[None]


class OnlineReplay:
    """The dataset (shared by every seed) followed by each seed's own online transitions, on the training
    device. ``sample`` has ``TransitionBuffer.sample``'s interface and draws uniformly over both; the
    buffer's size is a device tensor, so a CUDA graph of the training step stays valid as it grows."""

    def __init__(self, dataset: TransitionBuffer, num_seeds: int, capacity: int):
        self.dataset = dataset
        device, dtype = dataset.obs.device, dataset.obs.dtype
        zeros = lambda *shape: torch.zeros((num_seeds, capacity, *shape), device=device, dtype=dtype)  # noqa: E731
        obs_dim, act_dim = dataset.obs.shape[1], dataset.actions.shape[1]
        self.obs, self.next_obs = zeros(obs_dim), zeros(obs_dim)
        self.actions, self.next_actions = zeros(act_dim), zeros(act_dim)
        self.rewards, self.masks = zeros(), zeros()
        self.ended = torch.zeros((num_seeds, capacity), dtype=torch.bool, device=device)
        self.capacity, self.count = capacity, 0
        self.total = torch.full((), dataset.size, dtype=torch.float64, device=device)

    FIELDS = ("obs", "actions", "rewards", "next_obs", "masks", "next_actions", "ended")

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
            masks: torch.Tensor, ended: torch.Tensor) -> None:
        """Appends one transition per seed (each argument ``[S, ...]``)."""
        if self.count >= self.capacity:
            raise RuntimeError(f"online replay is full ({self.capacity} transitions per seed)")
        i = self.count
        for name, value in zip(self.FIELDS, (obs, actions, rewards, next_obs, masks, actions, ended)):
            getattr(self, name)[:, i] = value
        if i:  # the previous transition's next action, where its episode goes on (else its own, as the dataset's)
            goes_on = ~self.ended[:, i - 1]
            self.next_actions[goes_on, i - 1] = actions[goes_on]
        self.count += 1
        self.total.fill_(self.dataset.size + self.count)

    def sample(self, batch_size: int, rng: SeedRandom) -> Batch:
        """``[S, B, ...]``: each seed's batch from the dataset and that seed's online transitions."""
        n = self.dataset.size
        idx = (rng.rand((batch_size,), dtype=torch.float64).to(self.total.device) * self.total).long()
        in_data = idx < n
        rows = idx.clamp(max=n - 1)
        online = (idx - n).clamp(min=0, max=self.capacity - 1)

        def pick(data_field: torch.Tensor, online_field: torch.Tensor) -> torch.Tensor:
            from_online = online_field.gather(1, online.reshape(*online.shape, *([1] * (online_field.dim() - 2)))
                                              .expand(*online.shape, *online_field.shape[2:]))
            mask = in_data.reshape(*in_data.shape, *([1] * (online_field.dim() - 2)))
            return torch.where(mask, data_field[rows], from_online)

        d = self.dataset
        return Batch(pick(d.obs, self.obs), pick(d.actions, self.actions), pick(d.rewards, self.rewards),
                     pick(d.next_obs, self.next_obs), pick(d.masks, self.masks),
                     pick(d.next_actions, self.next_actions))

    def seed_state(self, i: int) -> dict[str, torch.Tensor]:
        """Seed ``i``'s online transitions (CPU tensors) for its checkpoint."""
        return {name: getattr(self, name)[i, : self.count].cpu().clone() for name in self.FIELDS}

    def load_seed_states(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        counts = {len(s["rewards"]) for s in states}
        if len(counts) != 1:
            raise ValueError(f"online checkpoints of different lengths {sorted(counts)} cannot resume together")
        self.count = counts.pop()
        for i, state in enumerate(states):
            for name in self.FIELDS:
                getattr(self, name)[i, : self.count] = state[name].to(getattr(self, name).device)
        self.total.fill_(self.dataset.size + self.count)


class OnlineEnvs:
    """One environment per seed, stepped by the agent's actions; transitions go to an ``OnlineReplay``."""

    def __init__(self, data: OfflineData, seeds: Sequence[int], replay: OnlineReplay, reward_transform: str,
                 device: torch.device):
        self.data, self.seeds, self.replay, self.device = data, list(seeds), replay, device
        self.reward_scale, self.reward_shift = reward_map(data, reward_transform)
        self.envs: list[gym.Env] = [data.make_eval_env() for _ in self.seeds]
        self.generators = [torch.Generator(device=device).manual_seed(episode_reset_seed(s, 0)) for s in self.seeds]
        self.episodes = [0] * len(self.seeds)  # finished online episodes
        self.episode_start = [0] * len(self.seeds)  # the current episode's first transition in the replay
        self.returns: list[list[float]] = [[] for _ in self.seeds]  # finished episodes' returns since last read
        self.current_return = [0.0] * len(self.seeds)
        self.obs = np.zeros((len(self.seeds), data.obs_dim), dtype=np.float32)

    def start(self) -> None:
        for i, env in enumerate(self.envs):
            self.obs[i] = self._reset(i)

    def _reset(self, i: int) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=episode_reset_seed(self.seeds[i], self.episodes[i]))
        return self.data.env_to_agent_obs(_one(obs))[0]

    def step(self, agent: Any) -> None:
        """Each seed acts once (its own acting generator) and appends the transition to the replay."""
        obs = torch.as_tensor(self.obs, device=self.device, dtype=torch.get_default_dtype())
        with torch.no_grad():
            actions = agent.act(obs[:, None], self.generators)[:, 0]
        bound = 1.0 - ACTION_CLIP_EPS  # stored as the dataset's actions are: inside the open box
        actions = actions.clamp(-bound, bound).cpu().numpy()
        next_obs = np.empty_like(self.obs)
        rewards, terminated, ended = (np.zeros(len(self.seeds), dtype=np.float32) for _ in range(3))
        for i, env in enumerate(self.envs):
            raw, reward, term, trunc, _ = env.step(self.data.agent_to_env_actions(actions[i]))
            next_obs[i] = self.data.env_to_agent_obs(_one(raw))[0]
            rewards[i], terminated[i], ended[i] = reward, term, term or trunc
            self.current_return[i] += float(reward)
        as_tensor = lambda x: torch.as_tensor(x, device=self.device, dtype=torch.get_default_dtype())  # noqa: E731
        self.replay.add(as_tensor(self.obs), as_tensor(actions), as_tensor(rewards * self.reward_scale + self.reward_shift),
                        as_tensor(next_obs), as_tensor(1.0 - terminated), as_tensor(ended).bool())
        self.obs = next_obs
        for i in np.flatnonzero(ended):
            self.returns[i].append(self.current_return[i])
            self.current_return[i] = 0.0
            self.episodes[i] += 1
            self.episode_start[i] = self.replay.count
            self.obs[i] = self._reset(i)

    def read_returns(self) -> list[float | None]:
        """Each seed's mean return of the online episodes finished since the last read (None: none)."""
        means = [float(np.mean(r)) if r else None for r in self.returns]
        self.returns = [[] for _ in self.seeds]
        return means

    def seed_state(self, i: int) -> dict[str, Any]:
        return {"episodes": self.episodes[i], "episode_start": self.episode_start[i],
                "current_return": self.current_return[i], "unread_returns": list(self.returns[i]),
                "generator": self.generators[i].get_state()}

    def restore(self, states: Sequence[dict[str, Any]]) -> None:
        """Rebuilds each env's state from the checkpoint: reset with the current episode's seed, then replay
        its stored actions, checking every observation against the stored one."""
        for i, state in enumerate(states):
            self.episodes[i], self.episode_start[i] = int(state["episodes"]), int(state["episode_start"])
            self.current_return[i], self.returns[i] = float(state["current_return"]), list(state["unread_returns"])
            self.generators[i].set_state(state["generator"].cpu())
            obs = self._reset(i)
            for row in range(self.episode_start[i], self.replay.count):
                stored = self.replay.obs[i, row].cpu().numpy()
                if not np.array_equal(obs, stored):
                    raise OnlineResumeMismatch(  # the env is not in the state this checkpoint recorded
                        f"seed {self.seeds[i]}: replaying online episode {self.episodes[i]} to transition {row} gave "
                        f"a different observation than the checkpoint holds; this environment is not deterministic "
                        f"given its reset seed and actions, so the online phase cannot resume exactly")
                raw, *_ = self.envs[i].step(self.data.agent_to_env_actions(self.replay.actions[i, row].cpu().numpy()))
                obs = self.data.env_to_agent_obs(_one(raw))[0]
            last = self.replay.count - 1
            if self.episode_start[i] <= last and not np.array_equal(obs, self.replay.next_obs[i, last].cpu().numpy()):
                raise OnlineResumeMismatch(f"seed {self.seeds[i]}: replaying online episode {self.episodes[i]} did not reach "
                                   f"the checkpoint's last observation; the online phase cannot resume exactly")
            self.obs[i] = obs

    def close(self) -> None:
        for env in self.envs:
            env.close()
