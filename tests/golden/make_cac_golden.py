"""Writes tests/golden/cac_golden.npz from the CAC authors' code (run by hand; tests/test_cac.py reads the file).

    python tests/golden/make_cac_golden.py /path/to/Consistency_Model_For_Reinforcement_Learning

The path is an exported checkout of quantumiracle/Consistency_Model_For_Reinforcement_Learning (nothing of it is
copied here). It imports with flowbench's venv (torch, numpy): ``agents.ql_consistency`` needs no gym or d4rl.
On a tiny problem (3-D observations, 2-D actions, batch 8) with fixed seeds it builds the code's networks at
width 32 (its MLP's hidden layers are hard-wired to 256: the script swaps in 32-wide layers of the same kind
before the optimisers are made, as its constructor would) and records, with the inputs and random draws:
- two ``Consistency_QL.train`` iterations (ql_consistency.py:L245-347; one call of 2 iterations, so N is 2, then
  107) with the large-antmaze switches on (max-Q backup, ``q_norm``, η 4.5), a gradient-norm clip of 1 that binds
  (two Adam steps, so the clip shows) and the EMA step enabled from update 0: the random draws, the losses and
  every network's parameters before and after;
- the consistency loss at level indices drawn from N = 37 (``Consistency.loss`` with the EMA teacher);
- the K = 2 and K = 5 samplers' outputs for given noise (``Consistency.sample``);
- softmax(min Q of the target critic) over 50 candidates (``sample_action``'s probabilities);
- N of ``timesteps_schedule`` at a few updates of a 50 000-update period.
The script checks its replay of the code's draws against the values the code logged, so the recorded draws are
the ones the iteration used.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

OUT = Path(__file__).resolve().parent / "cac_golden.npz"
OBS, ACT, B, WIDTH, SEED = 3, 2, 8, 32, 0
ETA, GRAD_NORM, K, UPDATES = 4.5, 1.0, 2, 2


class FixedBatch:
    def __init__(self, batch):
        self.batch = batch

    def sample(self, batch_size):
        return self.batch


class Recorder:
    def __init__(self):
        self.values = {}

    def add_scalar(self, name, value, step):
        self.values[name] = value


def narrow(model):
    """The code's MLP (model.py:L10-47) with 32-wide hidden layers of the same kind."""
    in_dim = model.mid_layer[0].in_features
    model.mid_layer = nn.Sequential(nn.Linear(in_dim, WIDTH), nn.Mish(), nn.Linear(WIDTH, WIDTH), nn.Mish(),
                                    nn.Linear(WIDTH, WIDTH), nn.Mish())
    model.final_layer = nn.Linear(WIDTH, ACT)


def params(prefix, module):
    return {f"{prefix}/{k}": v.detach().numpy().copy() for k, v in module.state_dict().items()}


def main(reference: Path) -> None:
    sys.path.insert(0, str(reference))
    from agents.consistency import Consistency
    from agents.helpers import kerras_boundaries
    from agents.ql_consistency import Consistency_QL, timesteps_schedule
    from agents.ql_diffusion import Critic

    torch.manual_seed(SEED)
    agent = Consistency_QL(OBS, ACT, 1.0, "cpu", discount=0.99, tau=0.005, max_q_backup=True, eta=ETA,
                           n_timesteps=K, step_start_ema=0, lr=3e-4, lr_decay=False, grad_norm=GRAD_NORM,
                           q_norm=True)
    narrow(agent.model)
    agent.actor_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=3e-4)
    agent.critic = Critic(OBS, ACT, hidden_dim=WIDTH)
    agent.critic_target = copy.deepcopy(agent.critic)
    agent.critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=3e-4)
    # an EMA teacher that differs from the policy (as it does after training): another initialisation
    other = Consistency(OBS, ACT, copy.deepcopy(agent.model), 1.0, n_timesteps=K)
    for p in other.parameters():
        nn.init.normal_(p, std=0.3)
    agent.ema_actor = copy.deepcopy(agent.actor)
    agent.ema_actor.load_state_dict(other.state_dict())
    # and a target critic one Polyak step behind a perturbed critic
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            p.add_(0.05 * torch.randn_like(p))

    g = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(B, OBS, generator=g), torch.randn(B, OBS, generator=g)
    actions = torch.rand(B, ACT, generator=g) * 2 - 1
    rewards = torch.randint(0, 2, (B, 1), generator=g).float() * 4 - 2  # (r − 0.5)·4 of 0/1 rewards
    not_done = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1.0]).reshape(B, 1)

    out = {"obs": obs.numpy(), "actions": actions.numpy(), "rewards": rewards[:, 0].numpy(),
           "next_obs": next_obs.numpy(), "masks": not_done[:, 0].numpy(), "eta": ETA, "grad_norm": GRAD_NORM, "K": K}
    out |= params("actor0", agent.model) | params("ema0", agent.ema_actor.model)
    out |= params("critic0", agent.critic) | params("target0", agent.critic_target)

    # -- two train() iterations, and a replay of their draws (same order, same generator) ----------------------
    torch.manual_seed(SEED + 10)
    np.random.seed(SEED + 10)
    recorder = Recorder()
    metric = agent.train(FixedBatch((obs, actions, next_obs, rewards, not_done)), iterations=UPDATES,
                         batch_size=B, log_writer=recorder)
    torch.manual_seed(SEED + 10)
    np.random.seed(SEED + 10)
    draws = {"next_noise": [], "policy_noise": [], "first_head": [], "z": [], "n": [], "num_levels": []}
    for itr in range(UPDATES):
        draws["next_noise"].append(np.stack([torch.randn(B * 10, ACT).numpy() for _ in range(K)]))  # ema_actor(s′ ×10)
        draws["policy_noise"].append(np.stack([torch.randn(B, ACT).numpy() for _ in range(K)]))  # actor(s)
        draws["first_head"].append(np.random.uniform() > 0.5)  # the Q term's head
        n_levels = timesteps_schedule(itr, UPDATES, initial_timesteps=2, final_timesteps=150)
        draws["num_levels"].append(n_levels)
        draws["z"].append(torch.randn(B, ACT).numpy())  # the consistency loss's noise
        draws["n"].append(torch.randint(0, n_levels - 1, (B, 1)).numpy())  # its level indices
    out |= {k: np.stack(v) for k, v in draws.items()}
    out |= {"critic_loss": np.array(metric["critic_loss"]), "bc_loss": np.array(metric["bc_loss"]),
            "q_loss": np.array(metric["ql_loss"]), "actor_grad_norm": recorder.values["Actor Grad Norm"],
            "critic_grad_norm": recorder.values["Critic Grad Norm"]}
    out |= params("actor1", agent.model) | params("ema1", agent.ema_actor.model)
    out |= params("critic1", agent.critic) | params("target1", agent.critic_target)
    next_noise = [torch.from_numpy(x) for x in draws["next_noise"][0]]

    # check the replay: the critic loss from the replayed next-action draws is the one the code logged
    ema, critic, target = copy.deepcopy(agent.ema_actor), Critic(OBS, ACT, WIDTH), Critic(OBS, ACT, WIDTH)
    ema.model.load_state_dict({k.split("/", 1)[1]: torch.from_numpy(v) for k, v in out.items() if k.startswith("ema0/")})
    critic.load_state_dict({k.split("/", 1)[1]: torch.from_numpy(v) for k, v in out.items() if k.startswith("critic0/")})
    target.load_state_dict({k.split("/", 1)[1]: torch.from_numpy(v) for k, v in out.items() if k.startswith("target0/")})
    with torch.no_grad():
        rpt = next_obs.repeat_interleave(10, 0)
        x = ema.predict_consistency(rpt, next_noise[0] * ema.max_T, float(ema.t_seq[::-1][0]))
        for t, noise in zip(ema.t_seq[::-1][1:], next_noise[1:]):
            x = ema.predict_consistency(rpt, x + np.sqrt(t**2 - ema.eps**2) * noise, float(t))
        q1, q2 = target(rpt, x.clamp(-1, 1))
        y = torch.min(q1.view(B, 10).max(1, keepdim=True)[0], q2.view(B, 10).max(1, keepdim=True)[0])
        y = rewards + not_done * 0.99 * y
        y = y / (y.std() + 1e-6)
        c1, c2 = critic(obs, actions)
        replayed = (F.mse_loss(c1, y) + F.mse_loss(c2, y)).item()
    assert abs(replayed - out["critic_loss"][0]) < 1e-5 * max(1.0, abs(replayed)), (replayed, out["critic_loss"])
    assert out["actor_grad_norm"] > GRAD_NORM and out["critic_grad_norm"] > GRAD_NORM, "the clip should bind"

    # -- the consistency loss at N = 37, given indices and z, with the EMA teacher ------------------------------
    actor0 = copy.deepcopy(agent.actor)
    actor0.model.load_state_dict({k.split("/", 1)[1]: torch.from_numpy(v) for k, v in out.items() if k.startswith("actor0/")})
    n_levels = 37
    boundaries = kerras_boundaries(7.0, 0.002, n_levels, actor0.max_T)
    gen = torch.Generator().manual_seed(2)
    idx = torch.randint(0, n_levels - 1, (B, 1), generator=gen)
    z37 = torch.randn(B, ACT, generator=gen)
    t1, t2 = boundaries[idx], boundaries[idx + 1]
    with torch.no_grad():
        loss37 = actor0.loss(obs, actions, z37, t1, t2, ema)
        scaled37 = (100.0 / (t2 - t1) * loss37).mean().item()
    out |= {"ct_levels": boundaries.numpy(), "ct_n": idx.numpy(), "ct_z": z37.numpy(), "ct_loss": scaled37,
            "ct_loss_unscaled": loss37.mean().item()}

    # -- the samplers (K = 2 and 5) for given noise --------------------------------------------------------------
    for steps in (2, 5):
        sampler = Consistency(OBS, ACT, actor0.model, 1.0, n_timesteps=steps)
        torch.manual_seed(100 + steps)
        with torch.no_grad():
            sampled = sampler.sample(obs)
        torch.manual_seed(100 + steps)
        out |= {f"sample{steps}_noise": np.stack([torch.randn(B, ACT).numpy() for _ in range(steps)]),
                f"sample{steps}": sampled.numpy()}

    # -- acting: softmax over the target critic's min Q of 50 candidates of one state (sample_action) ------------
    state_rpt = obs[:1].repeat_interleave(50, 0)
    torch.manual_seed(7)
    with torch.no_grad():
        candidates = actor0.sample(state_rpt)
        probs = F.softmax(target.q_min(state_rpt, candidates).flatten(), dim=0)
    out |= {"act_candidates": candidates.numpy(), "act_probs": probs.numpy()}

    # -- N of the schedule (one 50 000-update train() call) -------------------------------------------------------
    updates = np.array([0, 1, 10, 100, 1000, 12345, 25000, 49999])
    out |= {"schedule_updates": updates, "schedule_n": np.array([timesteps_schedule(int(i), 50_000) for i in updates])}

    np.savez_compressed(OUT, **{k: np.asarray(v) for k, v in out.items()})
    print(f"wrote {OUT}: critic loss {out['critic_loss']}, bc {out['bc_loss']}, q {out['q_loss']}, N "
          f"{out['num_levels']}, last grad norms actor {out['actor_grad_norm']:.3f} critic {out['critic_grad_norm']:.3f}, "
          f"head 1: {out['first_head']}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve())
