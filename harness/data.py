"""Offline datasets: any Minari id → flat transitions the agents train on, plus what evaluation needs.

``ogbench/<OGBench dataset name>`` ids load through ``ogbench.make_env_and_datasets`` instead.

- Episodes are flattened to transitions; ``masks = 1 - terminations`` (a truncation is not terminal).
- Box actions with other bounds are rescaled to [-1, 1] for training and back for the environment.
- Dict observations are flattened through the dataset's observation space, key by key in the
  space's order (never in the order an env happens to return them).
- Rewards as the dataset has them; each algorithm's config names the transform its published numbers
  used (``REWARD_TRANSFORMS``, applied by ``TransitionBuffer``); optional observation normalisation.
- Actions clipped to ±(1 − 1e-5), as the FQL code does.
- Reference scores come from the dataset's metadata, else from the D4RL table, and say which.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import minari
import numpy as np
import torch
from minari.dataset.minari_dataset import parse_dataset_id

import harness.envs  # registers flowbench's evaluation envs
from algos.kit.agent import Batch
from algos.kit.seeds import SeedRandom
from harness import datasets as builders

# d4rl/infos.py: the random (min) and expert (max) returns its normalised scores use, per env.
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

ADROIT_TASKS = ("pen", "door", "hammer", "relocate")
OGBENCH_PREFIX = "ogbench/"


class DatasetUnavailable(RuntimeError):
    """The dataset is neither local nor downloadable from here."""


class DatasetCorrupt(DatasetUnavailable):
    """A local dataset's files cannot be read (truncated, overwritten, half-copied)."""


def corrupt_dataset(dataset_id: str, error: BaseException) -> DatasetCorrupt:
    """Names the dataset, its unreadable file(s) and how to get a good copy."""
    data_dir = Path(minari.storage.get_dataset_path(dataset_id)) / "data"
    files = ", ".join(str(f) for f in sorted(data_dir.glob("*"))) or str(data_dir)
    fix = (f"rebuild it: flowbench data build {dataset_id} --force" if dataset_id in builders.BUILDERS
           else f"delete {data_dir.parent} and download or copy it again")
    return DatasetCorrupt(f"dataset {dataset_id!r} is unreadable: {files} ({type(error).__name__}: {error}); {fix}")


@dataclass(frozen=True)
class ReferenceScores:
    min: float
    max: float
    source: str  # "minari-metadata" or "d4rl-table"

    def normalize(self, returns: np.ndarray | float) -> np.ndarray | float:
        """Normalised score on the 0–100 scale (0 = min reference, 100 = max reference)."""
        return 100.0 * (np.asarray(returns) - self.min) / (self.max - self.min)


def dataset_domain(dataset_id: str) -> str:
    """The task family a dataset belongs to; presets and reward processing key on it."""
    parts = dataset_id.lower().split("/")
    if parts[0] == "ogbench" or parts[:2] == ["local", "ogbench"]:
        # ogbench-cube, ogbench-antmaze, ...: the OGBench env family (pixel variants with their state twins)
        return "ogbench-" + parts[-1].removeprefix("visual-").split("-")[0]
    if parts[0] == "d4rl" and len(parts) > 1:
        return "adroit" if parts[1] in ADROIT_TASKS else parts[1]
    if parts[0] == "mujoco":
        return "locomotion"
    if parts[0] == "local" and len(parts) > 1:
        return parts[1]
    return parts[0]


def episode_returns(rewards: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """The return of each episode (``episode_ends`` marks the last transition of each)."""
    starts = np.concatenate([[0], np.flatnonzero(episode_ends)[:-1] + 1])
    return np.add.reduceat(rewards.astype(np.float64), starts)


def iql_locomotion_scale(rewards: np.ndarray, episode_ends: np.ndarray) -> tuple[float, float]:
    """IQL's locomotion scaling: r · 1000 / (max − min episode return of the dataset)."""
    returns = episode_returns(rewards, episode_ends)
    spread = returns.max() - returns.min()
    if spread <= 0:
        raise ValueError("iql_locomotion reward scaling needs episodes with different returns")
    return 1000.0 / float(spread), 0.0


def standardize_scale(rewards: np.ndarray, episode_ends: np.ndarray) -> tuple[float, float]:
    std = float(rewards.std())
    return 1.0 / std, -float(rewards.mean()) / std


# How an algorithm's published numbers turned the dataset's rewards into training rewards; an agent's
# config names one (``reward_transform``), set per benchmark by its presets. Each is affine, r ↦ a·r + b,
# with (a, b) computed once from the whole dataset's rewards and episode ends, so that rewards collected
# online later (``harness.online``) go through the same map as the dataset's.
REWARD_TRANSFORMS: dict[str, Callable[[np.ndarray, np.ndarray], tuple[float, float]]] = {
    "none": lambda r, ends: (1.0, 0.0),
    # IQL / FQL code, D4RL antmaze: 0/1 rewards become −1/0
    "minus_one": lambda r, ends: (1.0, -1.0),
    # IQL paper (and Diffusion-QL's 'iql_locomotion'): rewards × 1000 / (max − min episode return)
    "iql_locomotion": iql_locomotion_scale,
    # Diffusion-QL code, antmaze ('cql_antmaze'): (r − 0.5) · 4
    "cql_antmaze": lambda r, ends: (4.0, -2.0),
    # Diffusion-QL code, adroit pen ('normalize'): standardised over the dataset
    "standardize": standardize_scale,
    # CORL's ReBRAC, antmaze: rewards × 100 (with its γ = 0.999 and critic lr 5e-5)
    "times_100": lambda r, ends: (100.0, 0.0),
}


def check_reward_transform(name: str) -> None:
    if name not in REWARD_TRANSFORMS:
        raise ValueError(f"unknown reward_transform {name!r}; valid: {', '.join(REWARD_TRANSFORMS)}")


def reward_map(data: "OfflineData", transform: str) -> tuple[float, float]:
    """(a, b) of the algorithm's reward map r ↦ a·r + b on this dataset."""
    check_reward_transform(transform)
    return REWARD_TRANSFORMS[transform](data.rewards, data.episode_ends)


def training_rewards(data: "OfflineData", transform: str) -> np.ndarray:
    """The rewards an algorithm trains on: the dataset's, through its config's ``reward_transform``."""
    scale, shift = reward_map(data, transform)
    return (data.rewards.astype(np.float64) * scale + shift).astype(np.float32)


# The FQL code clips dataset actions to ±(1 − 1e-5) (envs/env_utils.py, action_clip_eps), which keeps
# log-probabilities of tanh-squashed policies finite at the box's edge; every algorithm trains on these.
ACTION_CLIP_EPS = 1e-5


@dataclass
class ActionScaler:
    """Maps a Box's [low, high] to [-1, 1] and back."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def for_space(cls, space: gym.Space) -> "ActionScaler":
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"flowbench needs a Box action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"action space {space} has infinite bounds; cannot rescale to [-1, 1]")
        return cls(space.low.astype(np.float64).ravel(), space.high.astype(np.float64).ravel())

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        """Dataset actions → [−1 + ε, 1 − ε] (ε = ``ACTION_CLIP_EPS``)."""
        bound = 1.0 - ACTION_CLIP_EPS
        return np.clip(2.0 * (actions - self.low) / (self.high - self.low) - 1.0, -bound, bound)

    def from_unit(self, actions: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)


def flatten_observations(space: gym.Space, obs: Any) -> np.ndarray:
    """Batch of observations (leading axis) → ``[N, D]``, the layout ``gymnasium.spaces.flatten`` gives per row."""
    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([flatten_observations(s, obs[k]) for k, s in space.spaces.items()], axis=-1)
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([flatten_observations(s, o) for s, o in zip(space.spaces, obs)], axis=-1)
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(obs, dtype=np.float32)
        return arr.reshape(arr.shape[0], -1)
    raise ValueError(f"unsupported observation space {space}")


@dataclass
class OfflineData:
    """A dataset flattened to transitions, with what training and evaluation need to use it."""

    dataset_id: str
    domain: str
    observations: np.ndarray
    actions: np.ndarray  # in [-1, 1]
    rewards: np.ndarray
    next_observations: np.ndarray
    masks: np.ndarray  # 1 - terminal
    episode_ends: np.ndarray  # True on the last transition of each episode (terminal or truncated)
    observation_space: gym.Space
    action_scaler: ActionScaler
    reference: ReferenceScores | None
    minari_dataset: minari.MinariDataset | None = field(repr=False)  # None for OGBench ids
    obs_mean: np.ndarray | None = None
    obs_std: np.ndarray | None = None
    # Sources other than Minari (OGBench) bring their evaluation env as a factory.
    eval_env_id: str | None = None
    eval_env_fn: Callable[[], gym.Env] | None = field(default=None, repr=False)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.sum())

    def __len__(self) -> int:
        return len(self.rewards)

    def normalize_observations(self, eps: float = 1e-3) -> None:
        """Standardises observations with dataset statistics (applied to env observations too)."""
        self.obs_mean = self.observations.mean(0)
        self.obs_std = self.observations.std(0) + eps
        self.observations = (self.observations - self.obs_mean) / self.obs_std
        self.next_observations = (self.next_observations - self.obs_mean) / self.obs_std

    def env_to_agent_obs(self, obs: Any) -> np.ndarray:
        """Raw (batched) env observations → the agent's input layout and scale."""
        flat = flatten_observations(self.observation_space, obs)
        if self.obs_mean is not None:
            flat = (flat - self.obs_mean) / self.obs_std
        return flat.astype(np.float32)

    def agent_to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        return self.action_scaler.from_unit(actions).astype(np.float32)

    def make_eval_env(self) -> gym.Env:
        if self.eval_env_fn is not None:
            return self.eval_env_fn()
        return self.minari_dataset.recover_environment(eval_env=True)

    def info(self) -> dict[str, Any]:
        """A summary for ``flowbench data info`` and run provenance."""
        meta = self.minari_dataset.storage.metadata if self.minari_dataset is not None else {}
        return {
            "dataset_id": self.dataset_id,
            "domain": self.domain,
            "transitions": len(self),
            "episodes": self.num_episodes,
            "terminals": int((self.masks == 0).sum()),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "reward_mean": float(self.rewards.mean()),
            "reward_min": float(self.rewards.min()),
            "reward_max": float(self.rewards.max()),
            "reference_scores": None if self.reference is None else vars(self.reference),
            "eval_env": self.eval_env_id or (json.loads(meta["eval_env_spec"])["id"] if "eval_env_spec" in meta
                                             else None),
            "description": meta.get("description"),
        }


def open_minari(dataset_id: str, download: bool = True, build_missing: bool = True) -> minari.MinariDataset:
    """Opens a local Minari dataset; builds flowbench's own datasets, downloads anything else."""
    try:
        parse_dataset_id(dataset_id)
    except ValueError as e:
        raise DatasetUnavailable(f"{e} Example ids: toy/bimodal-v0, D4RL/antmaze/umaze-v1.") from None
    if builders.is_local(dataset_id):
        try:
            return minari.load_dataset(dataset_id)
        except Exception as e:  # noqa: BLE001 — h5py/json errors of a broken file: say which, and what to do
            raise corrupt_dataset(dataset_id, e) from None
    namespace = parse_dataset_id(dataset_id)[0] or ""
    if dataset_id in builders.BUILDERS:
        if not build_missing:
            raise DatasetUnavailable(f"{dataset_id} is not built yet; run `flowbench data build {dataset_id}`")
        builder = builders.get_builder(dataset_id)
        print(f"building {dataset_id} ({builder.default_transitions} transitions) ...", flush=True)
        builders.build(dataset_id)
        return minari.load_dataset(dataset_id)
    if namespace.split("/")[0] in {n.split("/")[0] for n in builders.builder_namespaces()}:
        raise DatasetUnavailable(
            f"unknown dataset {dataset_id!r}; flowbench builds: {', '.join(sorted(builders.BUILDERS))}"
        )
    if not download:
        raise DatasetUnavailable(f"{dataset_id} is not a local Minari dataset")
    try:
        return minari.load_dataset(dataset_id, download=True)
    except Exception as e:  # noqa: BLE001 — any download failure gets the same advice
        raise DatasetUnavailable(
            f"could not load or download Minari dataset {dataset_id!r} ({type(e).__name__}: {e}). "
            f"If this machine cannot reach the dataset host, build a local dataset with "
            f"`flowbench data build NAME` (buildable: {', '.join(sorted(builders.BUILDERS))}) or copy the "
            f"dataset into the Minari root ({builders.minari_root()})."
        ) from None


def reference_scores(dataset: minari.MinariDataset) -> ReferenceScores | None:
    meta = dataset.storage.metadata
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        return ReferenceScores(float(meta["ref_min_score"]), float(meta["ref_max_score"]), "minari-metadata")
    parts = dataset.spec.dataset_id.split("/")
    if parts[0] == "mujoco" and len(parts) > 1 and parts[1] in D4RL_REFERENCE_SCORES:
        lo, hi = D4RL_REFERENCE_SCORES[parts[1]]
        return ReferenceScores(lo, hi, "d4rl-table")
    return None


def load(dataset_id: str, normalize_obs: bool = False, download: bool = True,
         build_missing: bool = True) -> OfflineData:
    """Loads a Minari dataset id, or an ``ogbench/...`` id, into flat transitions (see the module docstring).

    ``download`` and ``build_missing`` concern Minari ids; OGBench downloads what it lacks itself.
    """
    if dataset_id.startswith(OGBENCH_PREFIX):
        data = load_ogbench(dataset_id)
    else:
        data = _load_minari(dataset_id, download, build_missing)
    if normalize_obs:
        data.normalize_observations()
    return data


def _load_minari(dataset_id: str, download: bool, build_missing: bool) -> OfflineData:
    dataset = open_minari(dataset_id, download=download, build_missing=build_missing)
    obs_space = dataset.observation_space
    scaler = ActionScaler.for_space(dataset.action_space)
    obs, next_obs, actions, rewards, terms, ends = [], [], [], [], [], []
    try:
        episodes = list(dataset.storage.get_episodes(range(dataset.total_episodes)))
    except Exception as e:  # noqa: BLE001 — a file truncated after its metadata was read
        raise corrupt_dataset(dataset_id, e) from None
    for ep in episodes:
        flat = flatten_observations(obs_space, ep["observations"])
        n = len(ep["rewards"])
        obs.append(flat[:-1])
        next_obs.append(flat[1:])
        actions.append(np.asarray(ep["actions"], dtype=np.float64).reshape(n, -1))
        rewards.append(np.asarray(ep["rewards"], dtype=np.float32))
        terms.append(np.asarray(ep["terminations"], dtype=bool))
        end = np.zeros(n, dtype=bool)
        end[-1] = True
        ends.append(end)
    if not obs:
        raise DatasetUnavailable(f"dataset {dataset_id!r} has no episodes")
    return OfflineData(
        dataset_id=dataset_id,
        domain=dataset_domain(dataset_id),
        observations=np.concatenate(obs).astype(np.float32),
        actions=scaler.to_unit(np.concatenate(actions)).astype(np.float32),
        rewards=np.concatenate(rewards),
        next_observations=np.concatenate(next_obs).astype(np.float32),
        masks=1.0 - np.concatenate(terms).astype(np.float32),
        episode_ends=np.concatenate(ends),
        observation_space=obs_space,
        action_scaler=scaler,
        reference=reference_scores(dataset),
        minari_dataset=dataset,
    )


def load_ogbench(dataset_id: str) -> OfflineData:
    """``ogbench/<name>``: OGBench's train split and its evaluation env, via ``ogbench.make_env_and_datasets``.

    Single-task datasets come relabelled by OGBench (locomotion r = success − 1, manipulation
    r = −#unfinished subtasks, mask = 1 − success), so rewards and masks are used as they are.
    """
    ogbench = harness.envs.import_ogbench()
    name = dataset_id.removeprefix(OGBENCH_PREFIX)
    if "singletask" not in name.split("-"):
        raise DatasetUnavailable(f"{dataset_id!r} has no rewards; flowbench needs an OGBench "
                                 f"'-singletask-' dataset, e.g. ogbench/cube-single-play-singletask-task2-v0")
    try:
        env, train, _ = ogbench.make_env_and_datasets(name)
    except Exception as e:  # noqa: BLE001 — a missing file and a failed download get the same advice
        builds = " or ".join(f"`flowbench data build {i}`" for i in sorted(builders.BUILDERS)
                             if i.startswith("local/ogbench/"))
        raise DatasetUnavailable(
            f"could not load or download OGBench dataset {name!r} ({type(e).__name__}: {e}). If this machine "
            f"cannot reach the dataset host, copy OGBench's .npz files into {ogbench.utils.DEFAULT_DATASET_DIR} "
            f"or build an OGBench-style dataset here: {builds}."
        ) from None
    return ogbench_to_offline(dataset_id, train, env)


def ogbench_to_offline(dataset_id: str, train: dict[str, np.ndarray], env: gym.Env) -> OfflineData:
    """OGBench's dataset dict (observations, actions, rewards, masks, terminals, next_observations) → ``OfflineData``.

    OGBench's ``terminals`` mark episode ends (time limits included); its ``masks`` mark the task's terminals.
    """
    scaler = ActionScaler.for_space(env.action_space)
    obs_space = env.observation_space
    return OfflineData(
        dataset_id=dataset_id,
        domain=dataset_domain(dataset_id),
        observations=flatten_observations(obs_space, train["observations"]),
        actions=scaler.to_unit(np.asarray(train["actions"], dtype=np.float64)).astype(np.float32),
        rewards=np.asarray(train["rewards"], dtype=np.float32),
        next_observations=flatten_observations(obs_space, train["next_observations"]),
        masks=np.asarray(train["masks"], dtype=np.float32),
        episode_ends=np.asarray(train["terminals"], dtype=bool),
        observation_space=obs_space,
        action_scaler=scaler,
        reference=None,  # OGBench defines no reference returns; its headline metric is the success rate
        minari_dataset=None,
        eval_env_id=env.spec.id,
        eval_env_fn=functools.partial(harness.envs.make_ogbench_task_env, dataset_id.removeprefix(OGBENCH_PREFIX)),
    )


class TransitionBuffer:
    """The dataset's transitions as tensors on the training device; uniform minibatches drawn there.
    Rewards pass through ``reward_transform`` (the training algorithm's convention).

    ``sample`` draws one minibatch per seed from that seed's generator (``SeedRandom``; device
    generators, so nothing crosses to the host and the draw can be part of a CUDA graph) and
    returns them stacked on a leading seed axis: ``[S, B, ...]``.
    """

    def __init__(self, data: OfflineData | Batch, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                 reward_transform: str = "none"):
        """From a dataset, or from transitions already as tensors ``[N, ...]`` (a ``Batch``, taken as they are:
        timing's random transitions)."""
        if isinstance(data, Batch):
            self.device = data.obs.device
            self.obs, self.actions, self.rewards, self.next_obs, self.masks, self.next_actions = data
            self.size = len(data.obs)
            return
        self.device = torch.device(device)
        dtype = dtype or torch.get_default_dtype()
        as_tensor = lambda x: torch.as_tensor(x, dtype=dtype, device=self.device)  # noqa: E731
        self.obs = as_tensor(data.observations)
        self.actions = as_tensor(data.actions)
        self.rewards = as_tensor(training_rewards(data, reward_transform))
        self.next_obs = as_tensor(data.next_observations)
        self.masks = as_tensor(data.masks)
        following = np.minimum(np.arange(len(data)) + 1, len(data) - 1)
        following = np.where(data.episode_ends, np.arange(len(data)), following)
        self.next_actions = as_tensor(data.actions[following])
        self.size = len(data)

    def sample(self, batch_size: int, rng: SeedRandom | torch.Generator) -> Batch:
        """``[S, B, ...]`` from a ``SeedRandom``; a one-seed batch ``[B, ...]`` from a plain generator."""
        if isinstance(rng, torch.Generator):
            return Batch(*(x[0] for x in self.sample(batch_size, SeedRandom([rng], rng.device))))
        idx = rng.randint(self.size, (batch_size,)).to(self.device)
        return Batch(self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.masks[idx],
                     self.next_actions[idx])
