"""CAC: each defining term checked white-box against an independent computation, and the whole update against the
CAC authors' code (tests/golden/cac_golden.npz, written by tests/golden/make_cac_golden.py from
quantumiracle/Consistency_Model_For_Reinforcement_Learning)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from algos import make_agent, resolve_config
from algos.cac import CACDraws, ConsistencyPolicy, consistency_loss, karras_levels, noise_levels_at
from algos.kit.agent import Batch
from algos.kit.networks import EnsembleLinear
from algos.kit.seeds import SeedRandom
from tests.helpers import generator_copy, small_agent

GOLDEN = Path(__file__).resolve().parent / "golden" / "cac_golden.npz"


# -- against the CAC code ------------------------------------------------------------------------------------

def golden_agent(golden, **overrides):
    config = resolve_config("cac", {"actor_hidden_dims": "32,32,32", "value_hidden_dims": "32,32,32",
                                    "sampling_steps": int(golden["K"]), "eta": float(golden["eta"]),
                                    "grad_norm": float(golden["grad_norm"]), "max_q_backup": True, "q_norm": True,
                                    "ema_start": 0, **overrides})
    torch.manual_seed(0)
    agent = make_agent("cac", golden["obs"].shape[1], golden["actions"].shape[1], config)
    for name, stage in (("actor", "actor0"), ("ema_actor", "ema0"), ("critic", "critic0"), ("target_critic", "target0")):
        load(agent.modules()[name], golden, stage)
    return agent


def policy_layers(policy: ConsistencyPolicy) -> dict:
    """The CAC code's MLP layer names (model.py:L23-38) → flowbench's layers."""
    time, net = policy.net.time_features[1].net, policy.net.net.net
    return {"time_mlp.1": time[0], "time_mlp.3": time[2], "mid_layer.0": net[0], "mid_layer.2": net[2],
            "mid_layer.4": net[4], "final_layer": net[6]}


def load(module, golden, stage: str) -> None:
    """The code's parameters (nn.Linear weight [out, in]) into flowbench's layers (weight [S, (E,) in, out])."""
    with torch.no_grad():
        if isinstance(module, ConsistencyPolicy):
            for name, layer in policy_layers(module).items():
                layer.weight.copy_(torch.from_numpy(golden[f"{stage}/{name}.weight"]).T[None])
                layer.bias.copy_(torch.from_numpy(golden[f"{stage}/{name}.bias"])[None, None])
            return
        for i in (0, 2, 4, 6):
            layer = module.net.net[i]
            layer.weight.copy_(torch.stack([torch.from_numpy(golden[f"{stage}/q{h}_model.{i}.weight"]).T
                                            for h in (1, 2)])[None])
            layer.bias.copy_(torch.stack([torch.from_numpy(golden[f"{stage}/q{h}_model.{i}.bias"])[None]
                                          for h in (1, 2)])[None])


def assert_loaded(module, golden, stage: str) -> None:
    """``module``'s parameters equal the code's at ``stage`` (to float32 tolerance)."""
    expected = copy.deepcopy(module)
    load(expected, golden, stage)
    for (name, got), want in zip(module.named_parameters(), expected.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-6, msg=lambda m: f"{stage} {name}: {m}")


def golden_batch(golden) -> Batch:
    t = {k: torch.from_numpy(golden[k])[None] for k in ("obs", "actions", "rewards", "next_obs", "masks")}
    return Batch(t["obs"], t["actions"], t["rewards"], t["next_obs"], t["masks"])


def test_cac_update_is_the_cac_codes_update():
    """Two full updates (critic with max-Q backup over the EMA policy's samples and q_norm, consistency loss against
    the EMA teacher at N = 2 then 107, random-head Q term, binding gradient-norm clips, Adam, EMA, Polyak) from the
    code's parameters and draws give the code's losses and parameters."""
    golden = np.load(GOLDEN)
    agent = golden_agent(golden, noise_levels_period=2)  # the code's train() call of 2 iterations
    batch = golden_batch(golden)
    for i in range(2):
        assert agent.num_levels.item() == golden["num_levels"][i]
        draws = CACDraws([torch.from_numpy(x)[None] for x in golden["next_noise"][i]],
                         [torch.from_numpy(x)[None] for x in golden["policy_noise"][i]],
                         torch.tensor([bool(golden["first_head"][i])]), torch.from_numpy(golden["z"][i])[None],
                         torch.from_numpy(golden["n"][i])[None])
        metrics = agent.train_step(batch, draws)
        agent.advance()
        for key, ref in (("critic_loss", "critic_loss"), ("bc_loss", "bc_loss"), ("q_loss", "q_loss")):
            assert metrics[key].item() == pytest.approx(float(golden[ref][i]), rel=1e-4), (i, key)
    assert golden["actor_grad_norm"] > golden["grad_norm"] and golden["critic_grad_norm"] > golden["grad_norm"]
    for name, stage in (("actor", "actor1"), ("ema_actor", "ema1"), ("critic", "critic1"), ("target_critic", "target1")):
        assert_loaded(agent.modules()[name], golden, stage)


def test_cac_consistency_loss_sampler_and_acting_are_the_cac_codes():
    golden = np.load(GOLDEN)
    agent = golden_agent(golden, noise_levels=37, initial_noise_levels=37)
    obs, actions = (torch.from_numpy(golden[k])[None] for k in ("obs", "actions"))
    levels = agent.level_table[agent.num_levels.item(), :37]
    torch.testing.assert_close(levels, torch.from_numpy(golden["ct_levels"]))
    n, z = torch.from_numpy(golden["ct_n"])[None], torch.from_numpy(golden["ct_z"])[None]
    with torch.no_grad():
        for scale, key in ((True, "ct_loss"), (False, "ct_loss_unscaled")):
            loss = consistency_loss(agent.actor, agent.ema_actor, obs, actions, z, levels[n], levels[n + 1], scale)
            assert loss.item() == pytest.approx(float(golden[key]), rel=1e-5)
    for steps in (2, 5):
        policy = golden_agent(golden, sampling_steps=steps).actor
        noise = [torch.from_numpy(x)[None] for x in golden[f"sample{steps}_noise"]]
        with torch.no_grad():
            torch.testing.assert_close(policy.sample(obs, None, noise), torch.from_numpy(golden[f"sample{steps}"])[None],
                                       rtol=1e-5, atol=1e-6)
    candidates = torch.from_numpy(golden["act_candidates"])[None, None]  # [S, N = 1, 50, act]
    with torch.no_grad():
        probs = torch.softmax(agent.candidate_values(obs[:, :1], candidates), -1)[0, 0]
    torch.testing.assert_close(probs, torch.from_numpy(golden["act_probs"]), rtol=1e-5, atol=1e-7)
    for update, n_levels in zip(golden["schedule_updates"], golden["schedule_n"]):
        assert noise_levels_at(int(update), 50_000, 2, 150) == n_levels


# -- white-box -----------------------------------------------------------------------------------------------

def test_cac_defaults_and_presets_are_the_cac_codes():
    c = resolve_config("cac")
    assert (c.actor_hidden_dims, c.value_hidden_dims, c.activation, c.critic_layer_norm) == \
        ((256, 256, 256), (256, 256, 256), "mish", False)
    assert (c.sampling_steps, c.num_candidates, c.action_selection, c.eta, c.grad_norm) == (2, 50, "softmax", 1.0, 9.0)
    assert (c.initial_noise_levels, c.noise_levels, c.noise_levels_period, c.teacher) == (2, 150, 50_000, "ema")
    assert (c.ema_decay, c.ema_every, c.ema_start, c.edm_inputs, c.init) == (0.995, 5, 1000, False, "torch")
    # offline.py:L51-56
    table = {"umaze-v1": (0.01, 2.0, True, False), "umaze-diverse-v1": (0.01, 3.0, True, True),
             "medium-play-v1": (0.01, 2.0, False, True), "medium-diverse-v1": (0.01, 1.0, True, True),
             "large-play-v1": (4.5, 10.0, True, True), "large-diverse-v1": (3.5, 2.0, True, True)}
    for task, (eta, gn, q_norm, max_q) in table.items():
        c = resolve_config("cac", dataset_id=f"D4RL/antmaze/{task}")
        assert (c.eta, c.grad_norm, c.q_norm, c.max_q_backup, c.sampling_steps, c.reward_transform) == \
            (eta, gn, q_norm, max_q, 2, "cql_antmaze"), task
        assert c.actor_lr == (1e-3 if task == "medium-play-v1" else 3e-4) and c.critic_lr == 3e-4
    walker = resolve_config("cac", dataset_id="mujoco/walker2d/medium-v0")
    assert (walker.sampling_steps, walker.q_norm, walker.grad_norm) == (5, True, 1.0)
    toy = resolve_config("cac", dataset_id="toy/bimodal-v0")  # flowbench's own (results/baselines/cac.md)
    assert (toy.eta, toy.noise_levels_period, toy.ema_start, toy.critic_layer_norm, toy.action_selection) == \
        (1.0, 0, 0, True, "argmax")


def test_cac_policy_is_c_skip_x_plus_c_out_of_the_raw_network(maze_data):
    """f(x, τ, s) = c_skip x + c_out F(x, τ, s): no c_in, the network sees τ itself (consistency.py:L38-56);
    f(x, ε, s) = x; layers start U(±1/√fan_in) as nn.Linear's."""
    agent, batch = small_agent("cac", maze_data)
    x = torch.randn_like(batch.actions)
    tau = torch.rand(1, x.shape[1], 1) * 80 + 0.01
    eps = agent.config.eps
    expected = 0.25 / ((tau - eps) ** 2 + 0.25) * x + 0.5 * (tau - eps) / torch.sqrt(tau**2 + 0.25) * \
        agent.actor.net(batch.obs, x, tau.squeeze(-1))
    torch.testing.assert_close(agent.actor(batch.obs, x, tau), expected)
    torch.testing.assert_close(agent.actor(batch.obs, x, torch.full_like(tau, eps)), x)
    layers = [m for m in [*agent.actor.modules(), *agent.critic.modules()] if isinstance(m, EnsembleLinear)]
    assert len(layers) == 2 + 3 + 3
    for layer in layers:
        bound = 1 / math.sqrt(layer.in_features)
        assert (layer.bias != 0).all() and layer.bias.abs().max() <= bound and layer.weight.abs().max() <= bound


def test_cac_samples_at_linspace_levels_from_t_times_noise(maze_data):
    """a = f(T z_1, t_1), a = f(a + √(t_k² − ε²) z_k, t_k), t = linspace(2, T, K) reversed, clipped."""
    agent, batch = small_agent("cac", maze_data, sampling_steps=3)
    replay = SeedRandom([generator_copy(agent)], "cpu")
    with torch.no_grad():
        got = agent.actor.sample(batch.obs, agent.rng)
        shape = batch.actions.shape[1:]
        a = agent.actor(batch.obs, 80.0 * replay.randn(shape), torch.tensor(80.0).reshape(1, 1, 1))
        for t in (41.0, 2.0):
            a = agent.actor(batch.obs, a + math.sqrt(t**2 - 0.002**2) * replay.randn(shape),
                            torch.tensor(t).reshape(1, 1, 1))
    torch.testing.assert_close(got, a.clamp(-1, 1))


def test_cac_noise_levels_grow_from_2_to_150_over_each_period(maze_data):
    agent, batch = small_agent("cac", maze_data, noise_levels_period=10)
    seen = []
    for _ in range(21):
        seen.append(agent.num_levels.item())
        agent.advance()
    expected = [noise_levels_at(i % 10, 10, 2, 150) for i in range(21)]
    assert seen == expected and expected[0] == 2 and expected[10] == 2 and max(expected) > 100
    # the loss reads row N of the table: Karras's N levels from ε to T
    n = agent.num_levels.item()
    torch.testing.assert_close(agent.level_table[n, :n], torch.tensor(karras_levels(n, 0.002, 80.0, 7.0)))
    # over the run (period 0): from 2 at the first update once the harness sets the run's length
    run, _ = small_agent("cac", maze_data, noise_levels_period=0)
    run.horizon = 10
    assert run.num_levels.item() == 2
    # a resumed agent reads the same row
    state = agent.state_dict()
    other, _ = small_agent("cac", maze_data, noise_levels_period=10)
    other.load_state_dict(state)
    assert other.num_levels.item() == n


def test_cac_consistency_target_is_the_ema_policy_at_the_adjacent_lower_level(maze_data):
    """L_CT = mean 100/(τ_{n+1} − τ_n) ‖f_θ(a + τ_{n+1} z, τ_{n+1}) − f_θ⁻(a + τ_n z, τ_n)‖², n ~ U{0 … N−2}, θ⁻ the
    EMA policy; the actor's Q term: −mean Q_i / sg(mean |Q_j|), heads drawn at random."""
    agent, batch = small_agent("cac", maze_data, noise_levels_period=10)
    for _ in range(7):
        agent.advance()
    with torch.no_grad():  # a teacher that differs from the policy
        for p in agent.ema_actor.parameters():
            p.add_(0.1 * torch.randn_like(p))
    n_levels = agent.num_levels.item()
    replay = SeedRandom([generator_copy(agent)], "cpu")
    losses = agent.actor_losses(batch)
    shape, b = batch.actions.shape[1:], batch.actions.shape[1]
    noise = [replay.randn(shape) for _ in range(agent.config.sampling_steps)]
    first_head = replay.rand((1,)).squeeze(-1) > 0.5
    z = replay.randn(shape)
    n = (replay.rand((b, 1)) * (n_levels - 1)).long()
    levels = torch.tensor(karras_levels(n_levels, 0.002, 80.0, 7.0))
    low, high = levels[n], levels[n + 1]
    with torch.no_grad():
        online = agent.actor(batch.obs, batch.actions + high * z, high)
        target = agent.ema_actor(batch.obs, batch.actions + low * z, low)
        expected = (100.0 / (high - low) * (online - target) ** 2).mean()
        q = agent.critic(batch.obs, agent.actor.sample(batch.obs, None, noise))
        i, j = (0, 1) if first_head.item() else (1, 0)
        expected_q = -q[0, i].mean() / q[0, j].abs().mean()
    assert n.max().item() <= n_levels - 2 and len(set(n.flatten().tolist())) > 5
    assert losses["bc"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses["q"].item() == pytest.approx(expected_q.item(), rel=1e-5)
    grads = torch.autograd.grad(losses["bc"].sum(), list(agent.actor.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("overrides", [{}, {"max_q_backup": True, "q_norm": True}])
def test_cac_critic_backs_up_the_ema_policy(maze_data, overrides):
    """y = r + γ m min_i Q_φ̄ᵢ(s′, a′), a′ from the EMA policy; with the max-Q backup min_i max_j over 10 samples,
    with q_norm y / (std y + 1e-6); L_Q = Σ_i mean (Q_i − y)² (ql_consistency.py:L250-270)."""
    agent, batch = small_agent("cac", maze_data, **overrides)
    with torch.no_grad():  # an EMA policy and a target critic that differ from the online ones
        for p in [*agent.ema_actor.parameters(), *agent.target_critic.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    replay = SeedRandom([generator_copy(agent)], "cpu")
    loss, _ = agent.critic_loss(batch)
    b, samples = batch.obs.shape[1], 10 if overrides else 1
    repeated = batch.next_obs.repeat_interleave(samples, dim=1)
    with torch.no_grad():
        next_actions = agent.ema_actor.sample(repeated, replay)
        qs = agent.target_critic(repeated, next_actions)[0].reshape(2, b, samples)
        y = batch.rewards[0] + 0.99 * batch.masks[0] * torch.minimum(qs[0].max(-1).values, qs[1].max(-1).values)
        if overrides:
            y = y / (y.std() + 1e-6)
        q = agent.critic(batch.obs, batch.actions)[0]
        expected = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cac_ema_policy_starts_at_step_1000_every_5_updates(maze_data):
    agent, batch = small_agent("cac", maze_data, ema_start=3)
    initial = [p.clone() for p in agent.ema_actor.parameters()]
    for step in range(7):
        ema_before = [p.clone() for p in agent.ema_actor.parameters()]
        agent.train_step(batch)
        stepped = step >= 3 and step % 5 == 0  # the EMA moves toward the policy after its update
        for e, e0, a in zip(agent.ema_actor.parameters(), ema_before, agent.actor.parameters()):
            torch.testing.assert_close(e, 0.995 * e0 + 0.005 * a if stepped else e0)
        if step < 3:
            assert all(torch.equal(e, i) for e, i in zip(agent.ema_actor.parameters(), initial))
        agent.advance()
    assert resolve_config("cac").ema_start == 1000


def test_cac_clips_each_gradient_norm(maze_data):
    """After one update Adam's first moment is (1 − β₁) × the clipped gradient: norm 0.1 × grad_norm."""
    agent, batch = small_agent("cac", maze_data, grad_norm=1e-3)
    agent.update(Batch(*(x[0] for x in batch)))
    for opt in (agent.actor_opt, agent.critic_opt):
        moments = [opt.state[p]["exp_avg"] for group in opt.param_groups for p in group["params"]]
        assert torch.sqrt(sum((m**2).sum() for m in moments)).item() == pytest.approx(1e-4, rel=1e-3)


def test_cac_acts_by_softmax_of_target_min_q_over_50_candidates(maze_data):
    for selection in ("softmax", "argmax"):
        agent, batch = small_agent("cac", maze_data, **({} if selection == "softmax" else {"action_selection": selection}))
        with torch.no_grad():
            for p in agent.target_critic.parameters():
                p.mul_(30.0)  # Q spread enough that softmax prefers some candidates
        obs = batch.obs[:, :4]
        g = torch.Generator().manual_seed(3)
        actions = agent.act(obs, generator_copy(g))
        replay = SeedRandom([generator_copy(g)], "cpu")
        with torch.no_grad():
            repeated = obs.repeat_interleave(50, dim=1)
            candidates = agent.actor.sample(repeated, replay)[0].reshape(4, 50, -1)
            q = torch.minimum(*agent.target_critic(repeated, candidates.reshape(1, 200, -1))[0]).reshape(4, 50)
            if selection == "argmax":
                chosen = q.argmax(-1)
            else:
                chosen = torch.multinomial(torch.softmax(q, -1), 1, generator=replay.generators[0]).squeeze(-1)
        torch.testing.assert_close(actions[0], candidates[torch.arange(4), chosen])


def test_cac_q_gradient_reaches_every_sampling_step(maze_data):
    agent, batch = small_agent("cac", maze_data, sampling_steps=3)
    outputs = []
    hook = agent.actor.net.register_forward_hook(lambda m, i, o: outputs.append(o))
    losses = agent.actor_losses(batch)
    hook.remove()
    sampler_outputs = outputs[:3]  # the sampler runs first; the consistency loss's student pass after it
    assert len(outputs) == 4  # the teacher is the EMA policy, another module
    grads = torch.autograd.grad(losses["q"].sum(), sampler_outputs, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("overrides", [{"teacher": "online", "edm_inputs": True, "q_head": "mean",
                                        "init": "xavier", "initial_noise_levels": 40, "noise_levels": 40,
                                        "actor_lr_schedule": "cosine", "critic_lr_schedule": "cosine"}])
def test_cac_other_readings_still_train(maze_data, overrides):
    agent, batch = small_agent("cac", maze_data, **overrides)
    agent.horizon = 10
    for _ in range(3):
        metrics = agent.update(Batch(*(x[0] for x in batch)))
        assert all(torch.isfinite(v) for v in metrics.values())
    assert agent.num_levels.item() == 40
    assert agent.actor_opt.param_groups[0]["lr"] < agent.config.actor_lr
