"""The compiled CPU training step (harness/compiling.py) trains exactly as the eager one: every agent, every
code path, same metrics and weights to float tolerance, and the test fails if a code path silently ran eagerly."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from algos import REGISTRY, make_agent, resolve_config
from algos.kit.seeds import SeedRandom
from harness.compiling import CompileFallbackWarning, CompiledSteps
from harness.timing import synthetic_buffer
from harness.training import TrainingStep
from tests.helpers import flowbench

OBS, ACT, BATCH, STEPS = 5, 2, 32, 10
WIDTH = (16, 16)
# Small schedules so that each agent's code paths (graph_key) all occur, each at least twice, within STEPS.
PATH_OVERRIDES: dict[str, dict] = {
    "qipo": {"bc_warmup_steps": 3, "critic_warmup_steps": 2, "renew_every": 2},
    "qipo_diff": {"bc_warmup_steps": 3, "critic_warmup_steps": 2, "renew_every": 2},
    "diffusion_ql": {"ema_start": 3, "ema_every": 2},
    "cac": {"ema_start": 3, "ema_every": 2},
    "srpo": {"pretrain_steps": 5},
}
# Code paths that cannot run compiled, and why (a substring of the reason): each must fall back, with a warning
# naming it; every other code path must run compiled.
EAGER_PATHS: dict[str, dict] = {
    # the actor step backpropagates twice through one compiled forward graph (critic and actor losses)
    "rebrac": {True: "backward through the graph a second time"},
    # a guard on a frame's stack object (after torch.autograd.grad) fails every call: it keeps recompiling
    "srpo": {"policy": "recompiled"},
}


def small_config(name: str):
    """The cpu profile with 16-wide networks and K = 2 (compiles quickly), plus the path-changing overrides."""
    config = resolve_config(name, PATH_OVERRIDES.get(name, {}), profile="cpu")
    small = {f: WIDTH for f in ("actor_hidden_dims", "value_hidden_dims") if f in config.field_names()}
    if "sampling_steps" in config.field_names():
        small["sampling_steps"] = 2
    return config.replace(**small)


def train(name: str, compile: str, steps: int = STEPS):
    torch.manual_seed(0)
    agent = make_agent(name, OBS, ACT, small_config(name), "cpu")
    agent.generators[0].manual_seed(1)
    agent.horizon = steps
    buffer = synthetic_buffer(500, OBS, ACT, torch.device("cpu"), torch.Generator().manual_seed(2))
    step = TrainingStep(agent, buffer, BATCH, SeedRandom([torch.Generator().manual_seed(3)], "cpu"),
                        cuda_graph="off", compile=compile)
    keys, metrics = [], []
    for _ in range(steps):
        keys.append(agent.graph_key())
        step()
        metrics.append(step.read_means()[0])
    return agent, step, keys, metrics


def weights(agent) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v for m, module in agent.modules().items() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_compiled_training_matches_eager_on_every_code_path(name):
    eager, _, eager_keys, eager_metrics = train(name, "off")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompileFallbackWarning)
        compiled, step, keys, metrics = train(name, "on")
    assert keys == eager_keys
    paths: CompiledSteps = step.compiled
    fallbacks = {key: path.fallback_reason for key, path in paths.paths.items() if path.fallback_reason}
    expected_eager = EAGER_PATHS.get(name, {})
    assert fallbacks.keys() == expected_eager.keys(), fallbacks
    for key, reason in expected_eager.items():
        assert reason in fallbacks[key] and any(reason in str(w.message) for w in caught), fallbacks[key]
    # every other code path that ran twice or more ran compiled (its first call records the random draws)
    for key in set(keys) - set(expected_eager):
        expected = keys.count(key) - 1
        assert paths.paths[key].compiled_calls == expected, (key, paths.paths[key].compiled_calls, expected)
    assert step.mode == ("compiled (partly)" if expected_eager else "compiled")
    for i, (a, b) in enumerate(zip(eager_metrics, metrics)):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (i, k)
    reference = weights(eager)
    for k, v in weights(compiled).items():
        torch.testing.assert_close(v, reference[k], rtol=1e-4, atol=1e-5, msg=k)
    for g_eager, g_compiled in zip(eager.generators, compiled.generators):
        assert torch.equal(g_eager.get_state(), g_compiled.get_state())  # the same draws, in the same number


def test_compile_on_is_recorded_in_config_and_summary_and_a_bad_value_exits_2(minari_root, tmp_path):
    out = tmp_path / "run"
    args = ["run", "bc", "toy/bimodal-v0", "--profile", "cpu", "--steps", "4", "--eval-every", "4",
            "--eval-episodes", "1", "--device", "cpu", "--out", str(out)]
    done = flowbench(*args, "--compile", "on")
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["compile"] == "on" and config["training_compile"] == "on"
    assert json.loads((out / "summary.json").read_text())["training_step"] == "compiled"
    assert "compiled" in done.stdout
    bad = flowbench(*args[:-1], str(tmp_path / "bad"), "--compile", "maybe")
    assert bad.returncode == 2 and "--compile" in bad.stderr
