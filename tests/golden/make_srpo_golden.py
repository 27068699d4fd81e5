"""Writes the golden numbers of the official SRPO code (thu-ml/SRPO) that tests/test_srpo.py replays through
flowbench's SRPO: its behaviour loss, its IQL critic's step and its policy loss with the score regulariser.

Run by hand with flowbench's own venv (PyTorch; the reference's d4rl/gym/wandb imports are stubbed, nothing of
them is used), on an exported checkout of the reference read from the given path, never copied here:

    git --git-dir=PATH/TO/SRPO.git archive HEAD | tar -x -C /work/ref/srpo      # an export of thu-ml/SRPO
    python tests/golden/make_srpo_golden.py /work/ref/srpo --commit HASH

It builds the reference's unmodified classes (model.py ``ScoreNet_IDQL``, ``TwinQ``, ``ValueFunction``,
``Dirac_Policy``; SRPO.py ``SRPO``, ``SRPO_Behavior``, ``IQL_Critic``, whose constructors hard-code CUDA, are
assembled attribute by attribute on the CPU as their ``__init__`` would) on a tiny problem — obs_dim 3,
act_dim 2, batch 8, one residual block, a 4-layer policy — and calls their own update methods
(``update_behavior``, ``update_q0``, ``update_SRPO_policy``) once. Parameters are not stored (the networks are
256 wide): every parameter is set from ``recipe(name, shape)`` below, which the test recomputes. The random
draws an update makes (t, z) are replayed from the global seed set before the call and stored. The behaviour
model's dropout is switched off (the masks come from torch's global generator, which flowbench's per-seed
generators do not replay); dropout itself is tested white-box.

The file ``srpo_golden.npz`` holds numbers only (``meta`` is JSON): the batch, the draws, the losses, the
gradient of the policy loss with respect to the policy's actions, per-parameter sums of gradients and of the
parameters after the optimiser steps.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch

OBS_DIM, ACT_DIM, BATCH, BLOCKS, POLICY_LAYERS = 3, 2, 8, 1, 4
# (--WT, --regq, β) of the policy cases: the maze setting (VDS, normalised ∇Q), the score weighting, and the
# stable weighting with the noise subtracted
POLICY_CASES = {"vds_regq": ("VDS", 1, 0.05), "score": ("score", 0, 0.3), "stable_noise": ("stablenoise", 0, 0.1)}
GOLDEN = Path(__file__).resolve().parent / "srpo_golden.npz"


def recipe(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The value of the reference parameter ``name`` (a torch state-dict key) of ``shape``: uniform draws from a
    generator seeded by the name, scaled as torch's Linear init (±1/√fan_in); LayerNorm scales near 1, the
    Fourier features' W at the reference's scale 30."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    u = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    if name.endswith("embed.0.W"):
        return (30.0 * u).float()
    if "layer_norm" in name:
        return (1.0 + 0.1 * u).float() if name.endswith("weight") else (0.1 * u).float()
    fan_in = shape[1] if len(shape) == 2 else 16
    return (u / fan_in**0.5).float()


def set_recipe(module: torch.nn.Module, prefix: str) -> None:
    with torch.no_grad():
        for name, p in module.state_dict().items():
            p.copy_(recipe(prefix + name, tuple(p.shape)))


def sums(module: torch.nn.Module, grads: bool) -> dict[str, float]:
    out = {}
    for name, p in module.named_parameters():
        value = p.grad if grads else p.detach()
        if value is not None:
            out[name] = float(value.double().sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ref", help="an exported checkout of thu-ml/SRPO")
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args()
    for stub in ("d4rl", "gym", "wandb", "tqdm"):  # imported by utils.py / the scripts, unused here
        sys.modules.setdefault(stub, types.ModuleType(stub))
    sys.path.insert(0, args.ref)
    import SRPO as ref  # noqa: N813
    import utils

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch = {"s": rng.normal(size=(BATCH, OBS_DIM)), "a": rng.uniform(-0.9, 0.9, size=(BATCH, ACT_DIM)),
             "r": rng.normal(size=(BATCH, 1)), "s_": rng.normal(size=(BATCH, OBS_DIM)),
             "d": (rng.uniform(size=(BATCH, 1)) < 0.3).astype(np.float64)}
    data = {k: torch.tensor(v, dtype=torch.float32) for k, v in batch.items()}
    marginal = functools.partial(utils.marginal_prob_std, device="cpu", beta_1=20.0)
    out: dict[str, np.ndarray] = {f"batch/{k}": v.numpy() for k, v in data.items()}

    def run_args(wt: str = "VDS", regq: int = 0, beta: float = 0.05) -> types.SimpleNamespace:
        return types.SimpleNamespace(device="cpu", actor_blocks=BLOCKS, q_layer=2, policy_layer=POLICY_LAYERS,
                                     env="antmaze-umaze-v2", WT=wt, regq=regq, beta=beta, n_policy_epochs=100)

    # -- behaviour model (SRPO_Behavior.update_behavior, SRPO.py L75–94) ----------------------------------
    behaviour = ref.SRPO_Behavior.__new__(ref.SRPO_Behavior)
    torch.nn.Module.__init__(behaviour)
    behaviour.diffusion_behavior = ref.ScoreNet_IDQL(OBS_DIM + ACT_DIM, ACT_DIM, marginal, embed_dim=64, args=run_args())
    behaviour.diffusion_optimizer = torch.optim.AdamW(behaviour.diffusion_behavior.parameters(), lr=3e-4)
    behaviour.marginal_prob_std, behaviour.args, behaviour.output_dim, behaviour.step = marginal, run_args(), ACT_DIM, 0
    set_recipe(behaviour.diffusion_behavior, "diffusion_behavior.")
    for block in behaviour.diffusion_behavior.main.blocks:
        block.dropout = None  # see the module docstring
    torch.manual_seed(11)
    t = torch.rand(BATCH) * (1.0 - 1e-3) + 1e-3
    z = torch.randn(BATCH, ACT_DIM)
    torch.manual_seed(11)
    behaviour.update_behavior(data)
    out.update({"behaviour/t": t.numpy(), "behaviour/z": z.numpy(), "behaviour/loss": np.float64(behaviour.loss.item())})
    meta_sums = {"behaviour/grad": sums(behaviour.diffusion_behavior, True),
                 "behaviour/after": sums(behaviour.diffusion_behavior, False)}

    # -- critic (IQL_Critic.update_q0, SRPO.py L141–187) ----------------------------------------------------
    def make_critic() -> ref.IQL_Critic:
        critic = ref.IQL_Critic.__new__(ref.IQL_Critic)
        torch.nn.Module.__init__(critic)
        critic.q0 = ref.TwinQ(ACT_DIM, OBS_DIM, layers=2)
        set_recipe(critic.q0, "q0.")
        critic.q0_target = copy.deepcopy(critic.q0)
        set_recipe(critic.q0_target, "q0_target.")  # a target apart from the critic, to see which one is read
        critic.vf = ref.ValueFunction(OBS_DIM)
        set_recipe(critic.vf, "vf.")
        critic.q_optimizer = torch.optim.Adam(critic.q0.parameters(), lr=3e-4)
        critic.v_optimizer = torch.optim.Adam(critic.vf.parameters(), lr=3e-4)
        critic.discount, critic.args, critic.tau = 0.99, run_args(), 0.9  # "maze" in env: τ 0.9 (L153)
        return critic

    critic = make_critic()
    critic.update_q0(data)
    out.update({"critic/v_loss": np.float64(critic.v_loss.item()), "critic/q_loss": np.float64(critic.q_loss.item())})
    meta_sums.update({"critic/q_after": sums(critic.q0, False), "critic/v_after": sums(critic.vf, False),
                      "critic/target_after": sums(critic.q0_target, False)})

    # -- policy (SRPO.update_SRPO_policy, SRPO.py L25–60) ------------------------------------------------------
    for case, (wt, regq, beta) in POLICY_CASES.items():
        agent = ref.SRPO.__new__(ref.SRPO)
        torch.nn.Module.__init__(agent)
        agent.args = run_args(wt, regq, beta)
        agent.diffusion_behavior = ref.ScoreNet_IDQL(OBS_DIM + ACT_DIM, ACT_DIM, marginal, embed_dim=64, args=agent.args)
        set_recipe(agent.diffusion_behavior, "diffusion_behavior.")
        agent.SRPO_policy = ref.Dirac_Policy(ACT_DIM, OBS_DIM, layer=POLICY_LAYERS)
        set_recipe(agent.SRPO_policy, "SRPO_policy.")
        agent.SRPO_policy_optimizer = torch.optim.Adam(agent.SRPO_policy.parameters(), lr=3e-4)
        agent.SRPO_policy_lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            agent.SRPO_policy_optimizer, T_max=agent.args.n_policy_epochs * 10000, eta_min=0.)
        agent.marginal_prob_std, agent.output_dim, agent.step = marginal, ACT_DIM, 0
        agent.q = [make_critic()]
        captured = {}

        def capture(module, inputs, output, captured=captured):
            captured["a"] = output
            output.register_hook(lambda g: captured.__setitem__("grad", g))

        hook = agent.SRPO_policy.register_forward_hook(capture)
        backward = torch.Tensor.backward

        def recording_backward(loss, *a, captured=captured, backward=backward, **k):
            captured["loss"] = loss.detach().clone()
            return backward(loss, *a, **k)

        torch.manual_seed(23)
        t = torch.rand(BATCH) * 0.96 + 0.02
        z = torch.randn(BATCH, ACT_DIM)
        torch.manual_seed(23)
        torch.Tensor.backward = recording_backward
        try:
            agent.update_SRPO_policy(data)
        finally:
            torch.Tensor.backward = backward
            hook.remove()
        out.update({f"policy/{case}/t": t.numpy(), f"policy/{case}/z": z.numpy(),
                    f"policy/{case}/loss": np.float64(captured["loss"].item()),
                    f"policy/{case}/actions": captured["a"].detach().numpy(),
                    f"policy/{case}/action_grad": captured["grad"].numpy(),
                    f"policy/{case}/q": np.float64(agent.SRPO_policy.q.item())})
        meta_sums[f"policy/{case}/grad"] = sums(agent.SRPO_policy, True)
        meta_sums[f"policy/{case}/after"] = sums(agent.SRPO_policy, False)

    meta = {"reference": "thu-ml/SRPO", "commit": args.commit, "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
            "batch": BATCH, "blocks": BLOCKS, "policy_layers": POLICY_LAYERS, "policy_cases": POLICY_CASES,
            "sums": meta_sums, "torch": torch.__version__}
    np.savez(GOLDEN, meta=np.array(json.dumps(meta)), **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
