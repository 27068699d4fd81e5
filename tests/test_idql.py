"""IDQL: each defining term checked white-box against an independent computation of what the authors'
code (philippe-eecs/IDQL, jaxrl5/agents/ddpm_iql/ddpm_iql_learner.py and jaxrl5/networks) computes."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from algos.kit.registry import resolve_config
from algos.kit.residual import ResidualMLP
from algos.kit.seeds import SeedRandom
from tests.helpers import generator_copy, small_agent


def vp_betas(steps: int) -> np.ndarray:
    """jaxrl5/networks/diffusion.py vp_beta_schedule (L25–32), written out."""
    t = np.arange(1, steps + 1)
    return 1 - np.exp(-0.1 / steps - 0.5 * (10.0 - 0.1) * (2 * t - 1) / steps**2)


def mish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


def resnet_by_hand(net: ResidualMLP, x: torch.Tensor, seed: int, masks: list[torch.Tensor] | None = None
                   ) -> torch.Tensor:
    """jaxrl5 MLPResNet (resnet.py L8–48) for one seed from the module's parameters: Dense, then per block
    h + Dense(mish(Dense(LN(dropout(h))))), then Dense(mish(h)); ``masks``: the blocks' dropout keep masks."""
    h = x @ net.input.weight[seed] + net.input.bias[seed]
    for i, block in enumerate(net.blocks):
        y = h if masks is None else torch.where(masks[i], h / (1 - block.dropout), 0.0)
        y = F.layer_norm(y, y.shape[-1:], eps=1e-6) * block.norm.weight[seed] + block.norm.bias[seed]
        y = mish(y @ block.expand.weight[seed] + block.expand.bias[seed])
        h = h + y @ block.contract.weight[seed] + block.contract.bias[seed]
    return mish(h) @ net.output.weight[seed] + net.output.bias[seed]


def noise_net_by_hand(model, obs: torch.Tensor, x: torch.Tensor, k: torch.Tensor, seed: int,
                      masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """jaxrl5 DDPM (diffusion.py L51–67) for one seed: FourierFeatures [cos, sin](2π k W) (L41–49), a
    Dense(128) → mish → Dense(128) condition, the residual network on [x, s, condition]."""
    f = 2 * math.pi * k.double()[:, None] * model.time_features.kernel[seed, 0].double()
    t = torch.cat([f.cos(), f.sin()], -1).to(x.dtype)
    c1, c2 = model.condition.blocks[0][0], model.condition.blocks[1][0]
    cond = mish(t @ c1.weight[seed] + c1.bias[seed]) @ c2.weight[seed] + c2.bias[seed]
    return resnet_by_hand(model.net, torch.cat([x, obs, cond], -1), seed, masks)


# -- the residual network ------------------------------------------------------------------------------

def test_residual_mlp_matches_mlpresnet_with_and_without_dropout():
    torch.manual_seed(0)
    net = ResidualMLP(5, 3, hidden_dim=16, num_blocks=2, dropout=0.25, seeds=2)
    with torch.no_grad():  # nonzero LayerNorm affine parameters and biases, so each is checked
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 7, 5)
    out = net(x)
    for s in range(2):
        torch.testing.assert_close(out[s], resnet_by_hand(net, x[s], s), rtol=1e-5, atol=1e-5)
    # training: each block draws a keep mask with P(keep) = 1 − rate from each seed's generator, in block order
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    replay = [generator_copy(g) for g in gens]
    out = net(x, SeedRandom(gens, "cpu"))
    for s in range(2):
        masks = [torch.rand(7, 16, generator=replay[s]) < 0.75 for _ in range(2)]
        torch.testing.assert_close(out[s], resnet_by_hand(net, x[s], s, masks), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, net(x))  # dropout changed something


def test_residual_mlp_initialises_as_flax():
    torch.manual_seed(0)
    net = ResidualMLP(40, 6, hidden_dim=256, num_blocks=3, seeds=2)
    # blocks' Dense: flax default lecun_normal, a normal truncated at ±2 scale, variance 1/fan_in
    for block in net.blocks:
        for linear in (block.expand, block.contract):
            w, fan_in = linear.weight, linear.weight.shape[-2]
            assert w.std().item() == pytest.approx(fan_in**-0.5, rel=0.03)
            assert w.abs().max().item() <= 2 * fan_in**-0.5 / 0.87962566103423978 + 1e-6
            assert torch.count_nonzero(linear.bias) == 0
    # input and output Dense: xavier_uniform (resnet.py L42, L47)
    for linear, (fan_in, fan_out) in ((net.input, (40, 256)), (net.output, (256, 6))):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert linear.weight.abs().max().item() <= bound and linear.weight.abs().max().item() > 0.95 * bound
    assert not torch.equal(net.blocks[0].expand.weight[0], net.blocks[0].expand.weight[1])  # seeds differ
    # SRPO's torch MLPResNet: torch.nn.Linear's default, uniform in ±1/√fan_in for weights and biases
    torch_net = ResidualMLP(40, 6, hidden_dim=64, num_blocks=1, seeds=1, init="torch", layer_norm_eps=1e-5)
    b = torch_net.blocks[0].expand
    assert b.bias.abs().max().item() <= 64**-0.5 and b.bias.abs().max().item() > 0.9 * 64**-0.5
    assert torch_net.blocks[0].norm.eps == 1e-5


# -- behaviour model -----------------------------------------------------------------------------------

def test_idql_noise_network_is_the_reference_ddpm_module(maze_data):
    agent, batch = small_agent("idql", maze_data)
    model = agent.behaviour
    obs, x = batch.obs[:, :9], batch.actions[:, :9]
    k = torch.arange(9).remainder(agent.schedule.steps)[None]
    with torch.no_grad():
        got = model(obs, x, k)[0]
    torch.testing.assert_close(got, noise_net_by_hand(model, obs[0], x[0], k[0], 0), rtol=1e-5, atol=1e-5)
    assert model.time_features.kernel.shape == (1, 1, 32)  # time_dim 64 (ddpm_iql.py L100)
    assert len(model.net.blocks) == 2 and model.net.blocks[0].dropout == 0.1  # SMALL: two blocks of 32


def test_idql_behaviour_loss_sums_over_action_dimensions_with_dropout(maze_data):
    agent, batch = small_agent("idql", maze_data)
    replay = generator_copy(agent)
    loss = agent.behaviour_loss(batch)
    b, d = batch.actions.shape[1:]
    k = torch.randint(agent.schedule.steps, (b,), generator=replay)
    noise = torch.randn(b, d, generator=replay)
    ab = torch.tensor(np.cumprod(1 - vp_betas(agent.schedule.steps)), dtype=torch.float32)[k][:, None]
    x = ab.sqrt() * batch.actions[0] + (1 - ab).sqrt() * noise
    masks = [torch.rand(b, 32, generator=replay) < 0.9 for _ in range(2)]
    eps = noise_net_by_hand(agent.behaviour, batch.obs[0], x, k, 0, masks)
    expected = ((eps - noise) ** 2).sum(-1).mean()  # ddpm_iql.py L341 (weights 1: actor_objective 'bc')
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_idql_ema_behaviour_model_follows_at_rate_0_001(maze_data):
    agent, batch = small_agent("idql", maze_data)
    assert agent.config.ema_decay == 0.999
    ema = [p.clone() for p in agent.behaviour_ema.parameters()]
    online = [p.clone() for p in agent.behaviour.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ema, online))  # starts as the behaviour model (L165–168)
    agent.update(batch)
    for before, new, after in zip(ema, agent.behaviour.parameters(), agent.behaviour_ema.parameters()):
        torch.testing.assert_close(after, 0.999 * before + 0.001 * new)  # L350–352, toward the new params
    assert any(not torch.equal(a, b) for a, b in zip(online, agent.behaviour.parameters()))


# -- acting: N candidates from the EMA model, the best by the target critic's min over heads -------------

def reference_chain(agent, model, obs: torch.Tensor, g: torch.Generator, k: int) -> tuple[torch.Tensor, bool]:
    """jaxrl5 ddpm_sampler (diffusion.py L69–104) for one seed, drawing noise from ``g`` as the agent does
    (the initial noise, then z at every step but the last): x ← (x − (1 − α_t)/√(1 − ᾱ_t) ε)/√α_t + √β_t z,
    clipped to [-1, 1] after every step. Also returns whether an intermediate clip changed anything."""
    betas = vp_betas(agent.schedule.steps)
    alphas, alpha_hats = 1 - betas, np.cumprod(1 - betas)
    n = obs.shape[0]
    repeated = obs.repeat_interleave(k, 0)
    x = torch.randn(n * k, agent.act_dim, generator=g)
    clipped = False
    for t in reversed(range(agent.schedule.steps)):
        eps = model(repeated[None], x[None], torch.full((1, n * k), t))[0]
        x = (x - (1 - alphas[t]) / math.sqrt(1 - alpha_hats[t]) * eps) / math.sqrt(alphas[t])
        if t > 0:
            x = x + math.sqrt(betas[t]) * torch.randn(n * k, agent.act_dim, generator=g)
        clipped |= t > 0 and bool((x.abs() > 1).any())
        x = x.clamp(-1, 1)
    return x.reshape(n, k, -1), clipped


def trained_small_agent(maze_data, **overrides):
    """A small agent after 150 updates on one batch, with a fast EMA so that its candidates are spread
    over the box (an untrained noise network drives every sample to a corner); the target critic, the EMA
    and the online networks all differ."""
    agent, batch = small_agent("idql", maze_data, **{"ema_decay": 0.5, "actor_lr": 3e-3,
                                                      "actor_lr_schedule": "constant", **overrides})
    for _ in range(150):
        agent.update(batch)
    return agent, batch


def test_idql_acts_by_the_argmax_of_the_target_critics_min_over_ema_candidates(maze_data):
    agent, batch = trained_small_agent(maze_data, num_candidates=16)
    assert agent.config.action_selection == "argmax_q"
    with torch.no_grad():  # make the online critic and the behaviour model rank/sample differently
        for p in agent.critic.q.parameters():
            p.add_(torch.randn_like(p))
        for p in agent.behaviour.parameters():
            p.add_(torch.randn_like(p))
    obs = batch.obs[:, :6]
    actions = agent.act(obs, torch.Generator().manual_seed(5))[0]
    with torch.no_grad():
        candidates, clipped = reference_chain(agent, agent.behaviour_ema, obs[0], torch.Generator().manual_seed(5), 16)
        q = torch.stack([agent.critic.target_q(obs[:, [i]].expand(1, 16, -1), candidates[None, i])[0].T
                         for i in range(6)])  # [state, candidate, head]
    assert clipped  # the per-step clipping was exercised
    assert candidates.std(1).min() > 0.01  # distinct candidates to choose from
    best = q.min(-1).values.argmax(-1)
    torch.testing.assert_close(actions, candidates[torch.arange(6), best], rtol=1e-5, atol=1e-5)
    # the online critic would pick other candidates (so the test tells the two apart)
    with torch.no_grad():
        q_online = torch.stack([agent.critic.q(obs[:, [i]].expand(1, 16, -1), candidates[None, i])[0].min(0).values for i in range(6)])
    assert (q_online.argmax(-1) != best).any()


def test_idql_candidate_sampler_options(maze_data):
    """``clip_every_step`` off: only the final clip; ``act_with_ema`` off: the online model."""
    agent, batch = trained_small_agent(maze_data, num_candidates=1, clip_every_step=False, act_with_ema=False)
    obs = batch.obs[:, :50]
    with torch.no_grad():
        got = agent.act(obs, torch.Generator().manual_seed(2))[0]
        betas = vp_betas(agent.schedule.steps)
        alphas, alpha_hats = 1 - betas, np.cumprod(1 - betas)
        g = torch.Generator().manual_seed(2)
        x = torch.randn(50, agent.act_dim, generator=g)
        for t in reversed(range(agent.schedule.steps)):
            eps = agent.behaviour(obs, x[None], torch.full((1, 50), t))[0]
            x = (x - (1 - alphas[t]) / math.sqrt(1 - alpha_hats[t]) * eps) / math.sqrt(alphas[t])
            if t > 0:
                x = x + math.sqrt(betas[t]) * torch.randn(50, agent.act_dim, generator=g)
    torch.testing.assert_close(got, x.clamp(-1, 1), rtol=1e-5, atol=1e-5)


# -- critic, value and the order of the updates ----------------------------------------------------------

def test_idql_update_order_value_then_critic_with_the_new_value_then_target(maze_data):
    agent, batch = trained_small_agent(maze_data)
    c = agent.config
    before = copy.deepcopy(agent.critic)
    metrics = agent.update(batch)
    with torch.no_grad():
        # L_V from the target critic's min over heads and the pre-step V (L230–250)
        u = before.target_q(batch.obs, batch.actions).min(1).values - before.value(batch.obs)
        expected_v = (torch.where(u > 0, c.expectile, 1 - c.expectile) * u**2).mean()
        # L_Q: mean over heads and batch, TD target from the V after its step (L259–275)
        target = batch.rewards + c.discount * batch.masks * agent.critic.value(batch.next_obs)
        expected_q = ((before.q(batch.obs, batch.actions) - target[:, None]) ** 2).mean()
    assert metrics["value_loss"].item() == pytest.approx(expected_v.item(), rel=1e-5)
    assert metrics["critic_loss"].item() == pytest.approx(expected_q.item(), rel=1e-5)
    # the target moves toward the critic after its step (L282–285)
    for old, new, tgt in zip(before.target_q.parameters(), agent.critic.q.parameters(),
                             agent.critic.target_q.parameters()):
        torch.testing.assert_close(tgt, (1 - c.tau) * old + c.tau * new)


def test_idql_behaviour_optimiser_is_adamw_with_a_cosine_lr():
    config = resolve_config("idql")
    from algos.kit.registry import make_agent

    agent = make_agent("idql", 3, 2, config)
    group = agent.behaviour_opt.param_groups[0]
    assert group["weight_decay"] == 1e-4 and group["decoupled_weight_decay"]  # optax.adamw defaults (L163)
    for opt in (agent.value_opt, agent.critic_opt):
        assert opt.param_groups[0]["weight_decay"] == 0  # optax.adam (L174, L186)
    agent.horizon = 10
    agent.advance()
    assert group["lr"] == pytest.approx(3e-4 * (1 + math.cos(math.pi / 10)) / 2)


# -- the other acting rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["expectile_resample", "tau_resample"])
def test_idql_resampling_options_draw_by_their_weights(maze_data, rule):
    agent, _ = trained_small_agent(maze_data, num_candidates=4, action_selection=rule)
    obs = torch.zeros(1, 1, maze_data.obs_dim).expand(1, 4000, -1).contiguous()
    actions = agent.act(obs, torch.Generator().manual_seed(11))[0]
    replay = SeedRandom([torch.Generator().manual_seed(11)], "cpu")
    with torch.no_grad():
        candidates = agent.sample_candidates(obs, replay)
        q = agent.critic.target_q(obs.repeat_interleave(4, 1), candidates.reshape(1, -1, maze_data.act_dim))
        q = q.min(1).values.reshape(1, 4000, 4)[0]
        v = agent.critic.value(obs)[0][:, None]
    tau = agent.config.expectile
    weights = torch.where(q < v, 1 - tau, tau)
    if rule == "expectile_resample":  # the paper's Eq. 7: |τ − 1(Q < V)| / |Q − V|
        weights = weights / ((q - v).abs() + 1e-6)
    chosen = (candidates[0] == actions[:, None]).all(-1).float()
    assert (chosen.sum(-1) >= 1).all()  # every action is one of its state's candidates
    probs = weights / weights.sum(-1, keepdim=True)
    taken = (chosen / chosen.sum(-1, keepdim=True) * probs).sum(-1)  # the taken candidate's probability
    # drawing by probs, the taken candidate's probability averages Σ p²
    assert taken.mean().item() == pytest.approx((probs**2).sum(-1).mean().item(), abs=0.02)
    assert (probs**2).sum(-1).mean().item() > 0.25 + 0.03  # and differs from a uniform pick's 1/4


# -- defaults and presets: the authors' launcher ------------------------------------------------------------

def test_idql_defaults_and_presets_are_the_reference_launchers():
    c = resolve_config("idql")
    assert (c.num_candidates, c.sampling_steps, c.ema_decay, c.batch_size, c.expectile) == (64, 5, 0.999, 512, 0.7)
    assert (c.actor_hidden_dims, c.actor_dropout, c.actor_layer_norm, c.actor_activation) == ((256,) * 3, 0.1,
                                                                                               True, "mish")
    assert (c.value_hidden_dims, c.critic_layer_norm, c.activation) == ((256, 256), False, "relu")
    assert (c.action_selection, c.candidate_critic, c.clip_every_step, c.act_with_ema) == ("argmax_q", "target",
                                                                                          True, True)
    assert (c.actor_lr, c.critic_lr, c.value_lr, c.actor_lr_schedule, c.discount, c.tau) == (
        3e-4, 3e-4, 3e-4, "cosine", 0.99, 0.005)
    antmaze = resolve_config("idql", dataset_id="D4RL/antmaze/large-play-v1")
    assert (antmaze.expectile, antmaze.reward_transform) == (0.9, "minus_one")
    hopper = resolve_config("idql", dataset_id="mujoco/hopper/medium-v0")
    assert (hopper.expectile, hopper.reward_transform) == (0.7, "iql_locomotion")


# -- golden: the authors' JAX behaviour model (tests/golden/make_idql_golden.py) ------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden" / "idql_network.npz"


def flowbench_names(model) -> dict[str, torch.Tensor]:
    """flowbench's parameter for each flax parameter path of jaxrl5's DDPM(ln_resnet)."""
    names = {"FourierFeatures_0/kernel": model.time_features.kernel}
    for i, layer in enumerate((model.condition.blocks[0][0], model.condition.blocks[1][0])):
        names[f"MLP_0/Dense_{i}/kernel"], names[f"MLP_0/Dense_{i}/bias"] = layer.weight, layer.bias
    net = model.net
    for i, layer in enumerate((net.input, net.output)):
        names[f"MLPResNet_0/Dense_{i}/kernel"], names[f"MLPResNet_0/Dense_{i}/bias"] = layer.weight, layer.bias
    for b, block in enumerate(net.blocks):
        prefix = f"MLPResNet_0/MLPResNetBlock_{b}"
        names[f"{prefix}/LayerNorm_0/scale"], names[f"{prefix}/LayerNorm_0/bias"] = block.norm.weight, block.norm.bias
        for i, layer in enumerate((block.expand, block.contract)):
            names[f"{prefix}/Dense_{i}/kernel"], names[f"{prefix}/Dense_{i}/bias"] = layer.weight, layer.bias
    return names


def test_idql_behaviour_model_is_the_jax_codes_on_its_parameters():
    from algos.kit.diffusion import ResidualNoisePredictor, VPSchedule

    golden = np.load(GOLDEN)
    torch.manual_seed(0)
    model = ResidualNoisePredictor(3, 2, hidden_dim=32)  # the golden file's sizes: width 32, 3 blocks, time features 64
    names = flowbench_names(model)
    reference = {k[len("param:"):]: golden[k] for k in golden.files if k.startswith("param:")}
    assert set(names) == set(reference)
    for name, param in names.items():
        value = torch.from_numpy(reference[name])
        if name == "FourierFeatures_0/kernel":
            value = value.T  # flax [dim/2, 1], flowbench [1, dim/2]
        # initialisation: the same distribution per layer (flowbench's own draw, before loading)
        ref_std, own_std = value.std().item(), param.detach().std().item()
        assert own_std == pytest.approx(ref_std, rel=0.15, abs=1e-6), name
        with torch.no_grad():
            param.copy_(value.reshape(param.shape))
    with torch.no_grad():
        eps = model(torch.from_numpy(golden["obs"])[None], torch.from_numpy(golden["actions"])[None],
                    torch.from_numpy(golden["time"]).long()[None])[0]
    np.testing.assert_allclose(eps.numpy(), golden["eps"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(VPSchedule(5).betas.numpy(), golden["betas"], rtol=1e-6)
