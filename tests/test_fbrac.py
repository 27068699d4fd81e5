"""FBRAC's per-task presets: the values of the reference's command lines (chongyi-zheng/value-flows README.md,
"FBRAC", offline RL), and the defaults where it carries none."""

from __future__ import annotations

import pytest

from algos import resolve_config


@pytest.mark.parametrize("dataset_id, alpha, discount", [
    ("ogbench/cube-triple-play-singletask-task1-v0", 100.0, 0.995),  # README.md:L188
    ("ogbench/cube-triple-play-singletask-task5-v0", 100.0, 0.995),
    ("ogbench/visual-antmaze-medium-navigate-singletask-task3-v0", 100.0, 0.99),  # L193
    ("ogbench/visual-antmaze-teleport-navigate-singletask-task2-v0", 100.0, 0.99),  # L194
    ("ogbench/visual-cube-double-play-singletask-task1-v0", 100.0, 0.995),  # L195
    ("ogbench/visual-scene-play-singletask-task4-v0", 100.0, 0.99),  # L196
    ("ogbench/visual-puzzle-3x3-play-singletask-task1-v0", 100.0, 0.99),  # L197
    # no value of its own: get_config()'s α 10 (agents/fbrac.py:L255), the FQL code's γ and antmaze r − 1
    ("ogbench/cube-double-play-singletask-task2-v0", 10.0, 0.99),
    ("ogbench/antmaze-giant-navigate-singletask-task1-v0", 10.0, 0.995),
    ("D4RL/antmaze/large-play-v1", 10.0, 0.99),
])
def test_fbrac_presets_resolve_to_the_reference_values(dataset_id, alpha, discount):
    config = resolve_config("fbrac", dataset_id=dataset_id)
    assert (config.alpha, config.discount) == (alpha, discount)
    assert (config.q_agg, config.normalize_q_loss, config.sampling_steps) == ("mean", False, 10)
    assert config.reward_transform == ("minus_one" if dataset_id.startswith("D4RL/antmaze/") else "none")


def test_fbrac_explicit_overrides_win_over_presets():
    config = resolve_config("fbrac", {"alpha": 3.0}, dataset_id="ogbench/cube-triple-play-singletask-task1-v0")
    assert (config.alpha, config.discount) == (3.0, 0.995)


def test_fbrac_toy_and_pointmaze_defaults_are_unchanged():
    assert resolve_config("fbrac", dataset_id="toy/bimodal-v0").alpha == 0.1
    assert resolve_config("fbrac", dataset_id="local/pointmaze/umaze-v0").alpha == 10.0
