"""The registry of local dataset builders and how a build is written (atomically, in Minari format)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import minari
from minari.dataset.minari_dataset import parse_dataset_id
from minari.namespace import create_namespace, list_local_namespaces
from minari.storage.datasets_root_dir import get_dataset_path

BUILDER_AUTHOR = "flowbench"


@dataclass(frozen=True)
class Builder:
    """A registered local dataset: ``build(dataset_id, transitions, seed)`` writes it."""

    dataset_id: str
    build: Callable[[str, int, int], None]
    default_transitions: int
    description: str


BUILDERS: dict[str, Builder] = {}


def register_builder(dataset_id: str, default_transitions: int, description: str):
    def wrap(fn: Callable[[str, int, int], None]) -> Callable[[str, int, int], None]:
        BUILDERS[dataset_id] = Builder(dataset_id, fn, default_transitions, description)
        return fn

    return wrap


class UnknownDataset(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_builder(dataset_id: str) -> Builder:
    try:
        return BUILDERS[dataset_id]
    except KeyError:
        raise UnknownDataset(
            f"no local builder for {dataset_id!r}; buildable datasets: {', '.join(sorted(BUILDERS))}"
        ) from None


def builder_namespaces() -> set[str]:
    return {parse_dataset_id(i)[0] or "" for i in BUILDERS}


def minari_root() -> Path:
    return Path(get_dataset_path())


def is_local(dataset_id: str) -> bool:
    return (Path(get_dataset_path(dataset_id)) / "data").exists()


def build_settings(dataset_id: str) -> dict[str, int | None]:
    """The settings a local dataset was built with: ``transitions`` and the builder's ``seed`` (None
    where the dataset does not record it)."""
    metadata = minari.load_dataset(dataset_id).storage.metadata
    transitions = metadata.get("flowbench_transitions", metadata.get("total_steps"))
    seed = metadata.get("flowbench_builder_seed")
    return {"transitions": None if transitions is None else int(transitions), "seed": None if seed is None else int(seed)}


def requested_settings(dataset_id: str, transitions: int | None = None, seed: int = 0) -> dict[str, int]:
    """What ``build`` would build: the builder's default size unless ``transitions`` is given."""
    n = get_builder(dataset_id).default_transitions if transitions is None else int(transitions)
    if n <= 0:
        raise ValueError(f"--transitions must be positive, got {n}")
    return {"transitions": n, "seed": int(seed)}


def already_built(dataset_id: str, transitions: int | None = None, seed: int = 0) -> bool:
    """Whether the local dataset exists, built with these settings (``build`` would leave it as it is)."""
    return is_local(dataset_id) and build_settings(dataset_id) == requested_settings(dataset_id, transitions, seed)


def build(dataset_id: str, transitions: int | None = None, seed: int = 0, force: bool = False) -> Path:
    """Builds a registered dataset (atomically) and returns its directory. A dataset already built with
    the same settings is left as it is; one built with other settings is rebuilt only with ``force``."""
    builder = get_builder(dataset_id)
    wanted = requested_settings(dataset_id, transitions, seed)
    n = wanted["transitions"]
    target = Path(get_dataset_path(dataset_id))
    if not force and already_built(dataset_id, transitions, seed):
        return target
    if is_local(dataset_id) and not force:
        existing = build_settings(dataset_id)
        differences = ", ".join(f"{k} {existing[k]} (asked: {wanted[k]})" for k in wanted if existing[k] != wanted[k])
        raise FileExistsError(
            f"dataset {dataset_id!r} already exists at {target} with other settings: {differences}; "
            f"pass --force to rebuild it"
        )
    root = minari_root()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        with _minari_root(staging), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            builder.build(dataset_id, n, seed)
            minari.load_dataset(dataset_id).storage.update_metadata({"flowbench_transitions": n,
                                                                     "flowbench_builder_seed": seed})
        built = staging / dataset_id
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace, description="Datasets built locally by flowbench")
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = staging / ".old"
            os.replace(target, old)
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def write_dataset(
    dataset_id: str,
    buffers: list,
    eval_env_id: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    ref_min_score: float,
    ref_max_score: float,
    description: str,
    algorithm_name: str,
    extra_metadata: dict[str, Any] | None = None,
) -> None:
    """Writes Minari episode buffers as a dataset whose evaluation env is ``eval_env_id``."""
    dataset = minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=eval_env_id,
        eval_env=eval_env_id,
        algorithm_name=algorithm_name,
        author=BUILDER_AUTHOR,
        author_email="flowbench@localhost",
        code_permalink="harness/datasets",
        observation_space=observation_space,
        action_space=action_space,
        ref_min_score=float(ref_min_score),
        ref_max_score=float(ref_max_score),
        description=description,
        requirements=["flowbench"],
    )
    if extra_metadata:
        dataset.storage.update_metadata({f"flowbench_{k}": v for k, v in extra_metadata.items()})

