"""Conventions of the code behind the published numbers, each pinned so that the old
behaviour fails: layer order, GELU form, LayerNorm ε, target-update order, ReBRAC's output-layer
init and delayed actor, per-algorithm reward transforms, IQL's learning-rate floor, Diffusion-QL's
EMA start, action clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from algos import make_agent, resolve_config
from algos.kit.networks import ACTIVATIONS, MLP
from harness.data import REWARD_TRANSFORMS, ActionScaler, TransitionBuffer, episode_returns, training_rewards

SMALL = {"actor_hidden_dims": "32,32", "value_hidden_dims": "32,32"}
TINY = {"actor_hidden_dims": "16,16", "value_hidden_dims": "16,16"}


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """flax's ``nn.gelu`` (approximate=True), written out."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def test_gelu_is_flax_tanh_approximation():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(ACTIVATIONS["gelu"]()(x), gelu_tanh(x))
    assert (ACTIVATIONS["gelu"]()(x) - F.gelu(x)).abs().max() > 1e-4  # the erf form is another function


def test_hidden_layer_is_linear_activation_then_layer_norm(float64):
    """The FQL code's MLP: Dense → activation → LayerNorm (ε 1e-6); output layer plain."""
    torch.manual_seed(0)
    mlp = MLP(5, (16, 16), 3, activation="gelu", layer_norm=True)
    with torch.no_grad():
        for p in mlp.parameters():  # LayerNorm affine parameters away from (1, 0)
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 7, 5)
    linears = [m for m in mlp.net if type(m).__name__ == "EnsembleLinear"]
    norms = [m for m in mlp.net if type(m).__name__ == "EnsembleLayerNorm"]

    def by_hand(order: str, eps: float = 1e-6) -> torch.Tensor:
        h = x[0]
        for lin, ln in zip(linears[:-1], norms):
            h = h @ lin.weight[0] + lin.bias[0]
            if order == "act-ln":
                h = F.layer_norm(gelu_tanh(h), h.shape[-1:], eps=eps) * ln.weight[0] + ln.bias[0]
            else:
                h = gelu_tanh(F.layer_norm(h, h.shape[-1:], eps=eps) * ln.weight[0] + ln.bias[0])
        return h @ linears[-1].weight[0] + linears[-1].bias[0]

    out = mlp(x)[0]
    torch.testing.assert_close(out, by_hand("act-ln"), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(out, by_hand("ln-act"), atol=1e-3)
    assert norms[0].eps == 1e-6


def test_rebrac_actor_output_layer_has_variance_scale_001():
    """flax variance_scaling(0.01, fan_avg, uniform): std = sqrt(0.01 · 2 / (in + out)), 0.1× Xavier's."""
    torch.manual_seed(0)
    config = resolve_config("rebrac", {"actor_hidden_dims": "512,512", "value_hidden_dims": "32"})
    agent = make_agent("rebrac", 20, 8, config)
    last = agent.actor.net.net[-1].weight
    expected_std = math.sqrt(0.01 * 2.0 / (512 + 8))
    assert last.std().item() == pytest.approx(expected_std, rel=0.05)
    assert last.abs().max().item() <= math.sqrt(3) * expected_std + 1e-9


@pytest.mark.parametrize("name, overrides", [("fql", SMALL), ("ifql", SMALL),
                                             ("iql", {**SMALL, "update_order": "joint"})])
def test_target_critic_moves_toward_the_pre_step_critic(maze_data, name, overrides):
    """The FQL code's target_update reads the parameters from before the gradient step."""
    torch.manual_seed(0)
    config = resolve_config(name, overrides)
    agent = make_agent(name, maze_data.obs_dim, maze_data.act_dim, config)
    critic, target = (agent.critic, agent.target_critic) if name == "fql" else (agent.critic.q, agent.critic.target_q)
    buffer, g = TransitionBuffer(maze_data), torch.Generator().manual_seed(0)
    agent.update(buffer.sample(64, g))  # target and critic differ from here on
    before = [p.detach().clone() for p in critic.parameters()]
    target_before = [p.detach().clone() for p in target.parameters()]
    agent.update(buffer.sample(64, g))
    for t, t0, c0, c1 in zip(target.parameters(), target_before, before, critic.parameters()):
        torch.testing.assert_close(t, (1 - config.tau) * t0 + config.tau * c0)
    assert any(not torch.allclose(t, (1 - config.tau) * t0 + config.tau * c1)
               for t, t0, c1 in zip(target.parameters(), target_before, critic.parameters()))


def test_rebrac_delays_its_actor_as_the_fql_code(maze_data):
    """Actor (and targets) on the 2nd, 4th, ... update; in between the actor's Adam steps on its momentum."""
    torch.manual_seed(0)
    agent = make_agent("rebrac", maze_data.obs_dim, maze_data.act_dim, resolve_config("rebrac", SMALL))
    buffer, g = TransitionBuffer(maze_data), torch.Generator().manual_seed(0)
    moves, target_moves = [], []
    for _ in range(4):
        actor0 = [p.detach().clone() for p in agent.actor.parameters()]
        target0 = [p.detach().clone() for p in agent.target_critic.parameters()]
        agent.update(buffer.sample(64, g))
        moves.append(any(not torch.equal(a, b) for a, b in zip(actor0, agent.actor.parameters())))
        target_moves.append(any(not torch.equal(a, b) for a, b in zip(target0, agent.target_critic.parameters())))
    assert target_moves == [False, True, False, True]
    # update 1: no actor gradient yet and zero momentum, so it stays; update 3 coasts on update 2's momentum
    assert moves == [False, True, True, True]


def test_reward_transform_reaches_only_its_algorithms_batches(maze_data):
    """Each algorithm's presets name its convention; the buffer it trains from applies that one alone."""
    antmaze = "D4RL/antmaze/umaze-v1"
    transforms = {name: resolve_config(name, dataset_id=antmaze).reward_transform
                  for name in ("fql", "iql", "rebrac", "diffusion_ql", "flowq")}
    assert transforms == {"fql": "minus_one", "iql": "minus_one", "rebrac": "times_100",
                          "diffusion_ql": "cql_antmaze", "flowq": "minus_one"}
    assert resolve_config("fql", dataset_id="local/pointmaze/umaze-v0").reward_transform == "none"
    raw = maze_data.rewards.copy()
    expected = {"minus_one": raw - 1.0, "times_100": raw * 100.0, "cql_antmaze": (raw - 0.5) * 4.0}
    for name, transform in transforms.items():
        buffer = TransitionBuffer(maze_data, reward_transform=transform)
        np.testing.assert_allclose(buffer.rewards.numpy(), expected[transform], rtol=1e-6)
    np.testing.assert_array_equal(maze_data.rewards, raw)  # the dataset itself is untouched
    np.testing.assert_array_equal(TransitionBuffer(maze_data).rewards.numpy(), raw)


def test_iql_locomotion_scaling_uses_the_dataset_return_range():
    rewards = np.array([1.0, 2.0, 3.0, 0.5, 0.5, 4.0], dtype=np.float32)
    ends = np.array([False, False, True, False, True, True])
    np.testing.assert_allclose(episode_returns(rewards, ends), [6.0, 1.0, 4.0])
    scale, shift = REWARD_TRANSFORMS["iql_locomotion"](rewards, ends)
    np.testing.assert_allclose(rewards * scale + shift, rewards * 1000.0 / 5.0, rtol=1e-6)
    assert resolve_config("iql", dataset_id="mujoco/hopper/medium-v0").reward_transform == "iql_locomotion"


def test_unknown_reward_transform_is_refused(maze_data):
    with pytest.raises(ValueError, match="unknown reward_transform 'times_7'; valid: none, minus_one"):
        training_rewards(maze_data, "times_7")


def test_iql_actor_lr_stays_at_the_floor_after_the_run_length(maze_data):
    """Cosine decay over the run (``horizon``) to 0, and 0 at 2× T (CosineAnnealingLR would rise back)."""
    torch.manual_seed(0)
    config = resolve_config("iql", SMALL)
    assert config.actor_lr_schedule == "cosine" and config.actor_lr_decay_steps == 0
    agent = make_agent("iql", maze_data.obs_dim, maze_data.act_dim, config)
    agent.horizon = 4
    buffer, g = TransitionBuffer(maze_data), torch.Generator().manual_seed(0)
    lrs = []
    for _ in range(8):
        agent.update(buffer.sample(16, g))
        lrs.append(float(agent.actor_opt.param_groups[0]["lr"]))
    assert lrs[1] == pytest.approx(config.actor_lr / 2)  # t = 2 of T = 4
    assert lrs[3:] == [0.0] * 5  # from T on, through 2T


def test_diffusion_ql_ema_stays_the_initial_policy_before_ema_start(maze_data):
    torch.manual_seed(0)
    config = resolve_config("diffusion_ql", {**TINY, "ema_start": 7, "ema_every": 5,
                                             "num_candidates": 2})
    agent = make_agent("diffusion_ql", maze_data.obs_dim, maze_data.act_dim, config)
    initial = [p.detach().clone() for p in agent.ema_actor.parameters()]
    buffer, g = TransitionBuffer(maze_data), torch.Generator().manual_seed(0)
    for _ in range(10):  # updates 0 … 9: step 0 and 5 are multiples of 5 but before ema_start
        agent.update(buffer.sample(16, g))
    assert all(torch.equal(p, q) for p, q in zip(agent.ema_actor.parameters(), initial))
    actor = [p.detach().clone() for p in agent.actor.parameters()]
    agent.update(buffer.sample(16, g))  # update 10: the first Polyak step, toward the actor after its step
    decay = config.ema_decay
    moved = [decay * q + (1 - decay) * a for q, a in zip(initial, agent.actor.parameters())]
    for p, expected in zip(agent.ema_actor.parameters(), moved):
        torch.testing.assert_close(p, expected)
    assert any(not torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))


def test_dataset_actions_are_clipped_inside_the_box():
    import gymnasium as gym

    scaler = ActionScaler.for_space(gym.spaces.Box(-2.0, 2.0, (2,)))
    np.testing.assert_allclose(scaler.to_unit(np.array([[2.0, -2.5]])), [[1 - 1e-5, -(1 - 1e-5)]])


def test_diffusion_ql_max_q_backup_is_min_over_heads_of_the_max_over_ten_samples(maze_data):
    torch.manual_seed(0)
    config = resolve_config("diffusion_ql", {**TINY, "max_q_backup": True, "num_candidates": 2})
    agent = make_agent("diffusion_ql", maze_data.obs_dim, maze_data.act_dim, config)
    batch = agent.with_seed_axis(TransitionBuffer(maze_data).sample(8, torch.Generator().manual_seed(0)))
    state = agent.generators[0].get_state()
    with torch.no_grad():  # the same draws the critic step makes: 10 EMA-policy samples per next state
        repeated = batch.next_obs.repeat_interleave(10, dim=1)
        next_qs = agent.target_critic(repeated, agent.sample(agent.ema_actor, repeated, agent.rng))  # [1, 2, 80]
        y = batch.rewards + config.discount * batch.masks * next_qs.reshape(1, 2, 8, 10).amax(-1).amin(1)
        expected = ((agent.critic(batch.obs, batch.actions) - y[:, None]) ** 2).mean(-1).sum(-1)
        mean_backup = batch.rewards + config.discount * batch.masks * next_qs.reshape(1, 2, 8, 10).mean(-1).amin(1)
    agent.generators[0].set_state(state)
    loss, _ = agent.critic_step(batch)
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(y, mean_backup)
    assert resolve_config("diffusion_ql", dataset_id="D4RL/antmaze/large-play-v1").max_q_backup
    assert not resolve_config("diffusion_ql", dataset_id="D4RL/antmaze/umaze-v1").max_q_backup


def test_every_optimiser_step_goes_through_agent_minimize():
    """One place steps the optimisers (``Agent.minimize``, and ``Agent.coast`` for ReBRAC's zero-gradient
    step): no agent zeroes, backpropagates or steps inline, so every agent clips and sums per seed alike."""
    import inspect

    import algos.kit.critics
    from algos import REGISTRY

    modules = {inspect.getmodule(cls) for cls in REGISTRY.values()} | {algos.kit.critics}
    for module in modules:
        source = inspect.getsource(module)
        for call in (".zero_grad(", ".backward(", "opt.step(", "clip_grad_norm"):
            assert call not in source, f"{module.__name__} calls {call} outside Agent.minimize"
