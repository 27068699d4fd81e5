"""N seeds as one batched model: seed i of a batched agent is exactly a one-seed agent of seed i."""

from __future__ import annotations

import pytest
import torch

from algos import REGISTRY, resolve_config
from algos.kit.registry import make_seeded_agent
from algos.kit.seeds import SeedRandom, seed_state, stack_seed_states
from harness.data import TransitionBuffer

ALGOS = sorted(REGISTRY)
SEEDS = [0, 1, 2, 3]
UPDATES = 50
# Short phases so that 50 updates pass through every code path: QIPO's warm-ups, improvement and
# renewals, Diffusion-QL's EMA copies and EMA steps.
PATHS = {
    "qipo": {"bc_warmup_steps": 10, "critic_warmup_steps": 10, "renew_every": 10},
    "qipo_diff": {"bc_warmup_steps": 10, "critic_warmup_steps": 10, "renew_every": 10},
    "diffusion_ql": {"ema_start": 20},
    "iql": {"actor_lr_schedule": "cosine", "actor_lr_decay_steps": 40},
    "cac": {"ema_start": 20, "noise_levels_period": 20},  # through the EMA's start and a changing N
    "srpo": {"pretrain_steps": 20},  # through both phases: pre-training, then the policy alone
}


def small_config(name: str):
    config = resolve_config(name, PATHS.get(name, {}), profile="cpu")
    for field in ("actor_hidden_dims", "value_hidden_dims"):
        if field in config.field_names():
            config = config.replace(**{field: (32, 32)})
    return config


def train(name: str, seeds: list[int], buffer: TransitionBuffer, obs: torch.Tensor):
    """50 updates of a batched agent of ``seeds``: per-step metrics, final state, actions for ``obs``."""
    agent = make_seeded_agent(name, buffer.obs.shape[1], buffer.actions.shape[1], small_config(name), seeds)
    sampler = SeedRandom([torch.Generator().manual_seed(1000 + s) for s in seeds], "cpu")
    history = []
    for _ in range(UPDATES):
        metrics = agent.update(buffer.sample(32, sampler))
        assert all(isinstance(v, torch.Tensor) and v.shape == (len(seeds),) for v in metrics.values()), metrics
        history.append(metrics)
    actions = agent.act(obs.expand(len(seeds), *obs.shape),
                        [torch.Generator().manual_seed(7 + s) for s in seeds])
    return agent, history, actions


@pytest.mark.parametrize("name", ALGOS)
def test_batched_seeds_equal_one_seed_runs(name, maze_data, float64):
    buffer = TransitionBuffer(maze_data)
    assert buffer.obs.dtype == torch.float64
    obs = buffer.obs[:16]
    batched, history, actions = train(name, SEEDS, buffer, obs)
    state = batched.state_dict()
    for i, seed in enumerate(SEEDS):
        single, single_history, single_actions = train(name, [seed], buffer, obs)
        for step, (b, s) in enumerate(zip(history, single_history)):
            assert set(b) == set(s)
            for k in b:
                torch.testing.assert_close(b[k][i], s[k][0], rtol=1e-9, atol=1e-9,
                                           msg=lambda m: f"seed {seed}, update {step + 1}, {k}: {m}")
        one = single.state_dict()
        mine = seed_state(state, i)
        for module, params in one["modules"].items():
            for key, value in params.items():
                torch.testing.assert_close(mine["modules"][module][key], value, rtol=1e-9, atol=1e-9,
                                           msg=lambda m: f"seed {seed}, {module}.{key}: {m}")
        torch.testing.assert_close(actions[i], single_actions[0], rtol=1e-9, atol=1e-9)
        assert torch.equal(mine["generators"][0], one["generators"][0])  # same number of draws
    # the seeds really differ (no seed sharing another's weights or noise)
    assert not torch.allclose(actions[0], actions[1])


def test_seed_states_round_trip(maze_data):
    buffer = TransitionBuffer(maze_data)
    agent = make_seeded_agent("fql", buffer.obs.shape[1], buffer.actions.shape[1], small_config("fql"), [3, 5])
    sampler = SeedRandom([torch.Generator().manual_seed(s) for s in (3, 5)], "cpu")
    for _ in range(3):
        agent.update(buffer.sample(16, sampler))
    state = agent.state_dict()
    parts = [seed_state(state, i) for i in range(2)]
    assert all(len(p["generators"]) == 1 for p in parts)
    assert parts[0]["modules"]["critic"]["net.net.0.weight"].shape[:2] == (1, 2)
    restacked = stack_seed_states(parts)
    for module, params in state["modules"].items():
        for key, value in params.items():
            assert torch.equal(restacked["modules"][module][key], value)
    with pytest.raises(ValueError, match="different steps"):
        stack_seed_states([parts[0], {**parts[1], "step": 7}])
