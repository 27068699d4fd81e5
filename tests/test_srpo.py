"""SRPO: each defining term checked white-box against an independent computation, and against the numbers of the
authors' code (thu-ml/SRPO) replayed from tests/golden/srpo_golden.npz (written by tests/golden/make_srpo_golden.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from algos import make_agent, resolve_config
from algos.kit.agent import Batch
from algos.kit.seeds import SeedRandom
from harness.data import TransitionBuffer
from tests.golden.make_srpo_golden import recipe
from tests.helpers import generator_copy, small_agent

GOLDEN = Path(__file__).resolve().parent / "golden" / "srpo_golden.npz"
# float32 tolerance: the reference's and flowbench's networks compute the same products in other groupings
RTOL, ATOL = 2e-5, 1e-6


# -- the reference's numbers --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden():
    data = np.load(GOLDEN)
    return {k: data[k] for k in data.files}, json.loads(str(data["meta"]))


def golden_agent(meta, **overrides):
    """flowbench's SRPO shaped as the golden problem, every parameter set to the reference's (``recipe``)."""
    config = resolve_config("srpo", {"behaviour_blocks": meta["blocks"], "expectile": 0.9,
                                     "actor_hidden_dims": (256,) * meta["policy_layers"], **overrides})
    agent = make_agent("srpo", meta["obs_dim"], meta["act_dim"], config)
    a = meta["act_dim"]

    def put(layer, name, columns=None, member=None):  # torch Linear [out, in] → EnsembleLinear [S, (E,) in, out]
        w = recipe(name + ".weight", (layer.out_features, layer.in_features))
        b = recipe(name + ".bias", (layer.out_features,))
        w = (w if columns is None else w[:, columns]).T
        with torch.no_grad():
            if member is None:
                layer.weight[0].copy_(w)
                layer.bias[0, 0].copy_(b)
            else:
                layer.weight[0, member].copy_(w)
                layer.bias[0, member, 0].copy_(b)

    obs_first = list(range(a, a + meta["obs_dim"])) + list(range(a))  # the reference's Q reads [a, s]
    for module, prefix in ((agent.critic.q, "q0"), (agent.critic.target_q, "q0_target")):
        layers = [m for m in module.net.net if hasattr(m, "in_features")]
        for head in (0, 1):
            for i, layer in enumerate(layers):
                put(layer, f"{prefix}.q{head + 1}.{2 * i}", obs_first if i == 0 else None, member=head)
    for i, layer in enumerate(m for m in agent.critic.value.net.net if hasattr(m, "in_features")):
        put(layer, f"vf.v.{2 * i}")
    for i, layer in enumerate(m for m in agent.actor.net if hasattr(m, "in_features")):
        put(layer, f"SRPO_policy.net.{2 * i}")
    net, p = agent.behaviour, "diffusion_behavior."
    with torch.no_grad():
        net.fourier.weight[0, 0].copy_(recipe(p + "embed.0.W", (32,)))
        for i, layer in enumerate(m for m in net.time_net.net if hasattr(m, "in_features")):
            put(layer, f"{p}cond_model.{2 * i}")
        put(net.net.input, p + "main.fc")
        put(net.net.output, p + "main.out_fc")
        for i, block in enumerate(net.net.blocks):
            put(block.expand, f"{p}main.blocks.{i}.fc1")
            put(block.contract, f"{p}main.blocks.{i}.fc2")
            block.norm.weight[0, 0].copy_(recipe(f"{p}main.blocks.{i}.layer_norm.weight", (256,)))
            block.norm.bias[0, 0].copy_(recipe(f"{p}main.blocks.{i}.layer_norm.bias", (256,)))
    return agent


def golden_batch(values) -> Batch:
    t = {k: torch.tensor(values[f"batch/{k}"])[None] for k in ("s", "a", "r", "s_", "d")}
    return Batch(t["s"], t["a"], t["r"][..., 0], t["s_"], 1.0 - t["d"][..., 0])


def reference_sums(agent, what: str) -> dict[str, float]:
    """flowbench's per-parameter sums of gradients (``grad``) or values, under the reference's names."""
    out = {}

    def add(name, tensor):
        if tensor is not None:
            out[name] = float(tensor.double().sum())

    if what.startswith("policy"):
        for i, layer in enumerate(m for m in agent.actor.net if hasattr(m, "in_features")):
            for kind in ("weight", "bias"):
                p = getattr(layer, kind)
                add(f"net.{2 * i}.{kind}", p.grad if what == "policy/grad" else p.detach())
    elif what.startswith("behaviour"):
        net = agent.behaviour
        names = {"cond_model.0": net.time_net.net[0], "cond_model.2": net.time_net.net[2], "main.fc": net.net.input,
                 "main.out_fc": net.net.output}
        for i, block in enumerate(net.net.blocks):
            names.update({f"main.blocks.{i}.fc1": block.expand, f"main.blocks.{i}.fc2": block.contract,
                          f"main.blocks.{i}.layer_norm": block.norm})
        for name, layer in names.items():
            for kind in ("weight", "bias"):
                p = getattr(layer, kind)
                add(f"{name}.{kind}", p.grad if what == "behaviour/grad" else p.detach())
    else:
        module = {"critic/q_after": agent.critic.q, "critic/target_after": agent.critic.target_q,
                  "critic/v_after": agent.critic.value}[what]
        layers = [m for m in module.net.net if hasattr(m, "in_features")]
        for i, layer in enumerate(layers):
            for kind in ("weight", "bias"):
                p = getattr(layer, kind).detach()
                if what == "critic/v_after":
                    add(f"v.{2 * i}.{kind}", p)
                else:
                    for head in (0, 1):
                        add(f"q{head + 1}.{2 * i}.{kind}", p[0, head])
    return out


def assert_sums(ours: dict[str, float], theirs: dict[str, float], rtol: float = 1e-4, atol: float = 1e-5):
    # flowbench has no counterpart of the blocks' unused ``residual`` Linear (model.py L83, never called when
    # widths agree); the Fourier features' W is a fixed buffer here (requires_grad=False there)
    theirs = {k: v for k, v in theirs.items() if ".residual." not in k and k != "embed.0.W"}
    assert set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))
    for name in theirs:
        assert ours[name] == pytest.approx(theirs[name], rel=rtol, abs=atol), name


def test_behaviour_loss_and_step_are_the_reference_codes(golden):
    values, meta = golden
    agent = golden_agent(meta)
    batch = golden_batch(values)
    t, z = torch.tensor(values["behaviour/t"])[None], torch.tensor(values["behaviour/z"])[None]
    loss = agent.denoising_objective(batch.obs, batch.actions, t, z)
    np.testing.assert_allclose(loss.item(), values["behaviour/loss"], rtol=RTOL)
    agent.minimize(agent.behaviour_opt, loss)  # AdamW 3e-4, weight decay 0.01
    assert_sums(reference_sums(agent, "behaviour/grad"), meta["sums"]["behaviour/grad"])
    assert_sums(reference_sums(agent, "behaviour/after"), meta["sums"]["behaviour/after"])


def test_critic_losses_and_step_are_the_reference_codes(golden):
    values, meta = golden
    agent = golden_agent(meta)
    value_loss, critic_loss, _ = agent.critic_losses(golden_batch(values))
    np.testing.assert_allclose(value_loss.item(), values["critic/v_loss"], rtol=RTOL)
    np.testing.assert_allclose(critic_loss.item(), values["critic/q_loss"], rtol=RTOL)
    agent.minimize(agent.critic_opt, value_loss + critic_loss)
    agent.critic.update_target(agent.config.tau)
    for what in ("critic/q_after", "critic/v_after", "critic/target_after"):
        assert_sums(reference_sums(agent, what), meta["sums"][what])


CASE_CONFIGS = {"vds_regq": {"weighting": "vds", "normalize_q_grad": True},
                "score": {"weighting": "score", "normalize_q_grad": False},
                "stable_noise": {"weighting": "stable", "subtract_noise": True, "normalize_q_grad": False}}


@pytest.mark.parametrize("case", list(CASE_CONFIGS))
def test_policy_loss_gradient_and_step_are_the_reference_codes(golden, case):
    values, meta = golden
    beta = meta["policy_cases"][case][2]
    agent = golden_agent(meta, beta=beta, **CASE_CONFIGS[case])
    batch = golden_batch(values)
    t, z = torch.tensor(values[f"policy/{case}/t"])[None], torch.tensor(values[f"policy/{case}/z"])[None]
    actions = agent.policy(batch.obs)
    np.testing.assert_allclose(actions[0].detach().numpy(), values[f"policy/{case}/actions"], rtol=RTOL, atol=ATOL)
    loss, q = agent.policy_objective(batch.obs, actions, t, z)
    np.testing.assert_allclose(loss.item(), values[f"policy/{case}/loss"], rtol=1e-4, atol=ATOL)
    np.testing.assert_allclose(q.mean().item(), values[f"policy/{case}/q"], rtol=RTOL)
    (grad,) = torch.autograd.grad(loss.sum(), actions, retain_graph=True)
    np.testing.assert_allclose(grad[0].numpy(), values[f"policy/{case}/action_grad"], rtol=1e-4, atol=1e-7)
    agent.minimize(agent.actor_opt, loss)  # Adam 3e-4 (the cosine's first step is at the full rate)
    assert_sums(reference_sums(agent, "policy/grad"), meta["sums"][f"policy/{case}/grad"])
    assert_sums(reference_sums(agent, "policy/after"), meta["sums"][f"policy/{case}/after"])


# -- white-box: the terms one by one ----------------------------------------------------------------------

def test_noise_levels_are_continuous_on_the_vp_sde_and_weighted_by_sigma_squared(maze_data):
    agent, batch = small_agent("srpo", maze_data, beta=0.0)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    loss, _ = agent.actor_loss(batch.obs)
    # the same draws: t ~ U(0.02, 0.98) per state, then z
    t = replay.rand(batch.obs.shape[1:-1]) * 0.96 + 0.02
    z = replay.randn((batch.obs.shape[1], agent.act_dim))
    actions = agent.policy(batch.obs).detach().double().requires_grad_(True)
    td = t.double()
    log_alpha = -0.25 * td**2 * (20.0 - 0.1) - 0.5 * td * 0.1  # β(t) linear from 0.1 to 20
    alpha, sigma = log_alpha.exp(), (1 - (2 * log_alpha).exp()).sqrt()
    with torch.no_grad():
        eps = agent.behaviour(batch.obs, (alpha[..., None] * actions + sigma[..., None] * z.double()).float(),
                              t).double()
    expected = (sigma**2)[..., None] * eps / actions.shape[1]  # ∂/∂a of mean_B σ_t² Σ_d ε_ψ a
    policy_actions = agent.policy(batch.obs).detach().requires_grad_(True)
    objective, _ = agent.policy_objective(batch.obs, policy_actions, t, z)
    (grad,) = torch.autograd.grad(objective.sum(), policy_actions)
    np.testing.assert_allclose(grad.double().numpy(), expected.numpy(), rtol=1e-4, atol=1e-9)
    assert loss.item() == pytest.approx(objective.item(), rel=1e-6)  # actor_loss draws exactly these t, z
    # continuous levels, down to the low noise where the score pins actions to the data (the K = 5 DDPM
    # levels stopped at σ² ≥ 0.196)
    assert len(torch.unique(t)) == t.numel() and (sigma**2).min() < 0.15


@pytest.mark.parametrize("weighting, expected", [("stable", lambda a, s: torch.ones_like(s)),
                                                 ("score", lambda a, s: a / s)])
def test_other_weightings(maze_data, weighting, expected):
    agent, batch = small_agent("srpo", maze_data, beta=0.0, weighting=weighting)
    t = torch.linspace(0.02, 0.98, batch.obs.shape[1])[None]
    z = torch.randn((1, batch.obs.shape[1], agent.act_dim), generator=torch.Generator().manual_seed(3))
    actions = agent.policy(batch.obs).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(agent.policy_objective(batch.obs, actions, t, z)[0].sum(), actions)
    log_alpha = -0.25 * t**2 * 19.9 - 0.05 * t
    alpha, sigma = log_alpha.exp(), (1 - (2 * log_alpha).exp()).sqrt()
    with torch.no_grad():
        eps = agent.behaviour(batch.obs, alpha[..., None] * actions + sigma[..., None] * z, t)
    np.testing.assert_allclose(grad.numpy(), (expected(alpha, sigma)[..., None] * eps / t.shape[1]).numpy(),
                               rtol=1e-4, atol=1e-9)


def test_q_term_is_beta_times_the_per_sample_normalised_gradient_of_the_target_critics_mean(maze_data):
    agent, batch = small_agent("srpo", maze_data, beta=0.3, normalize_q_grad=True)
    with torch.no_grad():  # a target critic apart from the online one, to see which is read
        for p in agent.critic.q.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    b = batch.obs.shape[1]
    t = torch.full((1, b), 0.5)
    z = torch.zeros((1, b, agent.act_dim))
    actions = agent.policy(batch.obs).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(agent.policy_objective(batch.obs, actions, t, z)[0].sum(), actions)
    with torch.no_grad():
        log_alpha = torch.tensor(-0.25 * 0.25 * 19.9 - 0.05 * 0.5)
        score = (1 - (2 * log_alpha).exp()) * agent.behaviour(batch.obs, log_alpha.exp() * actions, t)
    # independent: ∇ₐ of ½(Q̄₁ + Q̄₂) head by head, each row divided by its RMS over the action dims
    a = actions.detach().requires_grad_(True)
    heads = agent.critic.target_q(batch.obs, a)
    g = sum(torch.autograd.grad(heads[:, i].sum(), a, retain_graph=True)[0] for i in (0, 1)) / 2
    g_hat = g / g.pow(2).mean(-1, keepdim=True).sqrt()
    np.testing.assert_allclose(grad.numpy(), ((score - 0.3 * g_hat) / b).numpy(), rtol=1e-4, atol=1e-8)
    # without normalisation: β ∇ₐQ̄ itself
    agent.config.normalize_q_grad = False
    (raw,) = torch.autograd.grad(agent.policy_objective(batch.obs, actions, t, z)[0].sum(), actions)
    np.testing.assert_allclose(raw.numpy(), ((score - 0.3 * g) / b).numpy(), rtol=1e-4, atol=1e-8)


def test_the_behaviour_model_and_critic_learn_nothing_from_the_policy_loss(maze_data):
    agent, batch = small_agent("srpo", maze_data)
    loss, _ = agent.actor_loss(batch.obs)
    for module in (agent.behaviour, agent.critic):
        params = [p for p in module.parameters() if p.requires_grad]
        gs = torch.autograd.grad(loss.sum(), params, allow_unused=True, retain_graph=True)
        assert all(g is None or torch.count_nonzero(g) == 0 for g in gs)


def test_behaviour_loss_draws_t_on_0_001_to_1_and_dropout_from_the_agents_generator(maze_data):
    agent, batch = small_agent("srpo", maze_data)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    loss = agent.behaviour_loss(batch)
    t = replay.rand(batch.actions.shape[1:-1]) * (1 - 1e-3) + 1e-3
    z = replay.randn(batch.actions.shape[1:])
    assert loss.item() == pytest.approx(agent.denoising_objective(batch.obs, batch.actions, t, z, replay).item(),
                                        rel=1e-6)
    without_dropout = agent.denoising_objective(batch.obs, batch.actions, t, z)
    assert without_dropout.item() != pytest.approx(loss.item(), rel=1e-4)  # dropout is on while it trains


def changed(agent, before):
    return {name for name, m in agent.modules().items()
            if any(not torch.equal(before[name][k], v) for k, v in m.state_dict().items())}


def snapshot(agent):
    return {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in agent.modules().items()}


def test_staging_pretrains_behaviour_and_critic_then_trains_the_policy_alone(maze_data):
    agent, _ = small_agent("srpo", maze_data)
    agent.horizon = 30  # the reference's 2M : 1M → the first 20 updates pre-train
    assert agent.pretrain_end == 20
    keys = []
    for i in range(30):
        keys.append(agent.graph_key())
        before = snapshot(agent)
        lr = agent.actor_opt.param_groups[0]["lr"]
        agent.update(transitions(maze_data, i))
        if i < 20:
            assert changed(agent, before) == {"critic", "behaviour"}, i
        else:
            assert changed(agent, before) == {"actor"}, i
            # the cosine over the policy's 10 updates, from the full rate (SRPO.py L16, L60)
            assert lr == pytest.approx(3e-4 * (1 + math.cos(math.pi * (i - 20) / 10)) / 2)
    assert keys == ["pretrain"] * 20 + ["policy"] * 10
    # explicit length, and no staging without a known run length
    assert resolve_config("srpo", {"pretrain_steps": 7}).pretrain_steps == 7
    agent.config.pretrain_steps = 7
    assert agent.pretrain_end == 7
    agent, _ = small_agent("srpo", maze_data)  # horizon None
    assert agent.phase == "joint"
    before = snapshot(agent)
    agent.update(transitions(maze_data, 0))
    assert changed(agent, before) == {"critic", "behaviour", "actor"}


def transitions(data, seed):
    return TransitionBuffer(data).sample(64, torch.Generator().manual_seed(seed))


def test_presets_carry_the_reference_per_task_settings():
    maze = resolve_config("srpo", dataset_id="D4RL/antmaze/medium-play-v1")
    assert (maze.beta, maze.expectile, maze.normalize_q_grad, maze.reward_transform) == (0.08, 0.9, True, "minus_one")
    assert maze.actor_hidden_dims == (256, 256, 256, 256)
    betas = {"umaze": 0.02, "umaze-diverse": 0.04, "medium-diverse": 0.05, "large-play": 0.06, "large-diverse": 0.05}
    for task, beta in betas.items():
        assert resolve_config("srpo", dataset_id=f"D4RL/antmaze/{task}-v1").beta == beta
    hopper = resolve_config("srpo", dataset_id="mujoco/hopper/medium-v0")
    assert (hopper.beta, hopper.expectile, hopper.normalize_q_grad, hopper.reward_transform) == (
        0.05, 0.7, False, "iql_locomotion")
    assert hopper.actor_hidden_dims == (256, 256)
    assert resolve_config("srpo", dataset_id="mujoco/halfcheetah/medium-v0").beta == 0.2
