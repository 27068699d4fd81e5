"""The compiled CPU training step (harness/compiling.py) trains exactly as the eager one: every agent, every
code path, same metrics and weights to float tolerance, and the test fails if a code path silently ran eagerly."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from algos import REGISTRY, make_agent, resolve_config
from algos.kit.agent import Agent
from algos.kit.seeds import SeedRandom
from algos.kit.traced_optim import adam_step
from harness.compiling import CompileFallbackWarning, CompiledSteps
from harness.online import OnlineReplay
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


def small_config(name: str):
    """The cpu profile with 16-wide networks and K = 2 (compiles quickly), plus the path-changing overrides."""
    config = resolve_config(name, PATH_OVERRIDES.get(name, {}), profile="cpu")
    small = {f: WIDTH for f in ("actor_hidden_dims", "value_hidden_dims") if f in config.field_names()}
    if "sampling_steps" in config.field_names():
        small["sampling_steps"] = 2
    return config.replace(**small)


def train(name: str, compile: str, steps: int = STEPS, online: bool = False):
    """``steps`` updates from a synthetic dataset's buffer, or (``online``) from an ``OnlineReplay`` over it that
    gains one transition before every update; returns the agent, the ``TrainingStep``, the code path and the
    metrics of every update."""
    torch.manual_seed(0)
    agent = make_agent(name, OBS, ACT, small_config(name), "cpu")
    agent.generators[0].manual_seed(1)
    agent.horizon = steps
    buffer = synthetic_buffer(500, OBS, ACT, torch.device("cpu"), torch.Generator().manual_seed(2))
    if online:
        buffer, transitions = OnlineReplay(buffer, 1, steps), torch.Generator().manual_seed(4)
    step = TrainingStep(agent, buffer, BATCH, SeedRandom([torch.Generator().manual_seed(3)], "cpu"),
                        cuda_graph="off", compile=compile)
    keys, metrics = [], []
    for _ in range(steps):
        if online:
            obs, next_obs = torch.randn(2, 1, OBS, generator=transitions)
            buffer.add(obs, torch.rand(1, ACT, generator=transitions) * 2 - 1, torch.ones(1) * 10, next_obs,
                       torch.ones(1), torch.zeros(1, dtype=torch.bool))
        keys.append(agent.graph_key())
        step()
        metrics.append(step.read_means()[0])
    return agent, step, keys, metrics


def assert_same_training(eager, compiled, eager_step, step, eager_metrics, metrics) -> None:
    """Metrics of every update and final weights to float tolerance; the agents' and the minibatch samplers'
    generators in the same state (the same draws, in the same number)."""
    for i, (a, b) in enumerate(zip(eager_metrics, metrics)):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (i, k)
    reference = weights(eager)
    for k, v in weights(compiled).items():
        torch.testing.assert_close(v, reference[k], rtol=1e-4, atol=1e-5, msg=k)
    for g_eager, g_compiled in zip([*eager.generators, *eager_step.sampler.generators],
                                   [*compiled.generators, *step.sampler.generators]):
        assert torch.equal(g_eager.get_state(), g_compiled.get_state())


def weights(agent) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v for m, module in agent.modules().items() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_compiled_training_matches_eager_on_every_code_path(name):
    eager, eager_step, eager_keys, eager_metrics = train(name, "off")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompileFallbackWarning)
        compiled, step, keys, metrics = train(name, "on")
    assert keys == eager_keys
    paths: CompiledSteps = step.compiled
    # no code path falls back to eager, and every one that ran twice or more ran compiled (its first call
    # records the random draws)
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, CompileFallbackWarning)]
    assert not fallbacks, fallbacks
    for key in set(keys):
        expected = keys.count(key) - 1
        assert paths.paths[key].compiled_calls == expected, (key, paths.paths[key].compiled_calls, expected)
    assert step.mode == "compiled"
    assert_same_training(eager, compiled, eager_step, step, eager_metrics, metrics)


def test_compiled_step_draws_its_minibatch_from_a_growing_online_replay_as_eager_does():
    """The minibatch's gathers compile with the step: from the offline-to-online replay too, whose online part
    fills between updates (a compiled step that kept a stale copy of it, or of its size, would train on other
    transitions than the eager one)."""
    eager, eager_step, _, eager_metrics = train("iql", "off", online=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        compiled, step, _, metrics = train("iql", "on", online=True)
    assert step.compiled.compiled_calls == STEPS - 1
    assert_same_training(eager, compiled, eager_step, step, eager_metrics, metrics)


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


@pytest.mark.parametrize("kind", ["adam", "adam_l2", "adamw"])
def test_traced_adam_step_is_torchs_fused_adam(kind):
    """``adam_step`` (the optimiser step of a compiled update) against ``torch.optim.Adam``/``AdamW`` (fused, as
    ``Agent.adam`` builds them) over steps with gradients, a skipped parameter and a zero-gradient (coast) step,
    at a learning rate a schedule has changed."""
    torch.manual_seed(0)
    shapes = [(3, 4, 5), (3, 1, 5), (3, 7)]
    eager = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    traced = [torch.nn.Parameter(p.detach().clone()) for p in eager]

    def optimizer(params):
        groups = [{"params": params[:2], "lr": 1e-2}, {"params": params[2:], "lr": 3e-3}]
        if kind == "adamw":
            return torch.optim.AdamW(groups, weight_decay=0.1, fused=True)
        return torch.optim.Adam(groups, weight_decay=0.01 if kind == "adam_l2" else 0.0, fused=True)
    eager_opt, traced_opt = optimizer(eager), optimizer(traced)
    for step in range(6):
        grads = [torch.randn(s) if step != 3 else torch.zeros(s) for s in shapes]
        skip = 1 if step == 2 else None  # a parameter without a gradient on this step
        if step == 4:
            for opt in (eager_opt, traced_opt):
                Agent.set_lr(opt, 5e-3)
        for i, p in enumerate(eager):
            p.grad = None if i == skip else grads[i].clone()
        eager_opt.step()
        if step == 0:  # the first step runs eagerly in a compiled run too: it creates the optimiser state
            for i, p in enumerate(traced):
                p.grad = grads[i].clone()
            traced_opt.step()
            for group in traced_opt.param_groups:  # as harness.compiling.tensor_learning_rates makes them
                group["lr"] = torch.tensor(group["lr"])
            continue
        adam_step(traced_opt, {id(p): grads[i].clone() for i, p in enumerate(traced) if i != skip})
        for a, b in zip(eager, traced):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
