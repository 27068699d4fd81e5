"""Shared fixtures: a private Minari root with small, real, locally built datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the two cores: one thread each, here and in the processes the tests start (runs,
    # sweeps, SLURM jobs inherit the environment); several multi-threaded torch processes on the same
    # cores slow each other down many times over.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

TOY_TRANSITIONS = 2_000
MAZE_TRANSITIONS = 5_000


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Points Minari at a fresh directory for the whole session and builds the small datasets once."""
    root = tmp_path_factory.mktemp("minari")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    from harness import datasets

    datasets.build("toy/bimodal-v0", TOY_TRANSITIONS, seed=0)
    datasets.build("local/pointmaze/umaze-v0", MAZE_TRANSITIONS, seed=0)
    yield root
    if previous is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture(scope="session")
def toy_data(minari_root: Path):
    from harness.data import load

    return load("toy/bimodal-v0")


@pytest.fixture(scope="session")
def maze_data(minari_root: Path):
    from harness.data import load

    return load("local/pointmaze/umaze-v0")


@pytest.fixture
def float64():
    """Float64 by default for one test (the seed-equality checks compare to 1e-9)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
