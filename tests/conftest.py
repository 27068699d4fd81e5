"""Shared fixtures: a private Minari root with small, real, locally built datasets."""

from __future__ import annotations

import os
import re
import subprocess
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
def toy_data_full(minari_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """``toy/bimodal-v0`` at its default size (5000 transitions, built in a Minari root of its own): the data the
    reference code's toy numbers were measured on (DESIGN.md §9), for the checks whose bar those numbers set."""
    from harness import datasets
    from harness.data import load

    root = tmp_path_factory.mktemp("minari-toy-full")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        datasets.build("toy/bimodal-v0", seed=0)
        return load("toy/bimodal-v0")
    finally:
        os.environ["MINARI_DATASETS_PATH"] = str(minari_root)


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


@pytest.fixture(scope="session")
def slurm_cluster():
    """The single-node SLURM with fake GPUs and accounting; stopped at the end if this session started it.
    If it cannot start, the tests that need it fail (they are never skipped)."""
    from tests.helpers import REPO

    result = subprocess.run(["bash", str(REPO / "slurm" / "start-local-cluster.sh")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"SLURM did not start:\n{result.stdout}\n{result.stderr}"
    match = re.search(r"export SLURM_CONF=(\S+)", result.stdout)
    assert match, result.stdout
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = match.group(1)
    yield match.group(1)
    if previous is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = previous
    if "already running" not in result.stderr:
        subprocess.run(["bash", str(REPO / "slurm" / "stop-local-cluster.sh")], capture_output=True, timeout=120)


# The fast subset for local iteration is `python -m pytest -q -m "not slow"`; CI runs everything. Slow:
# whatever runs the real SLURM cluster (marked here, by fixture), learning checks, kill/requeue/disk-full
# scenarios and the demo (marked where they are defined).
SLOW_FIXTURES = {"slurm_cluster", "tiny_slurm"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Slow tests first (a stable sort: each module's order is kept): the two workers then finish on short tests
    # instead of one of them starting a five-minute toy panel when the other is nearly done.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
