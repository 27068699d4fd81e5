"""Seeding libraries that draw from NumPy's global random state (OGBench's oracles, rliable's bootstrap)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def global_numpy_seed(seed: int) -> Iterator[None]:
    """Seeds NumPy's global random state for the block, then puts the caller's state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
