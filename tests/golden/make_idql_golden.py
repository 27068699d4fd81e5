"""Writes tests/golden/idql_network.npz from the IDQL authors' JAX code (philippe-eecs/IDQL).

Run by hand with a Python that has jax and flax, on an exported checkout of the reference:

    git clone https://github.com/philippe-eecs/IDQL /tmp/idql      # or an export of it
    python tests/golden/make_idql_golden.py /tmp/idql

It builds the behaviour model exactly as ``DDPMIQLLearner.create`` does with ``actor_architecture='ln_resnet'``
(jaxrl5/agents/ddpm_iql/ddpm_iql_learner.py L116–150: learnable FourierFeatures(64), MLP(128, 128, mish) on
them, MLPResNet(3 blocks, LayerNorm, dropout 0.1, mish) on [a, s, condition]; its width 32 instead of 256, so
that the file stays small) and records its initial
parameters, the noise prediction on a few inputs (``training=False``, as ``ddpm_sampler`` calls it) and the
VP schedule (``vp_beta_schedule``). Nothing of the reference is copied or stubbed: it is imported.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np

OUT = Path(__file__).resolve().parent / "idql_network.npz"


def main(reference: str) -> None:
    sys.path.insert(0, reference)
    from jaxrl5.networks import DDPM, MLP, FourierFeatures, MLPResNet, vp_beta_schedule

    def mish(x):  # ddpm_iql_learner.py L50–51 (imported here would pull in gym)
        return x * jnp.tanh(jax.nn.softplus(x))

    obs_dim, act_dim, batch, steps, width = 3, 2, 7, 5, 32
    actor_def = DDPM(time_preprocess_cls=partial(FourierFeatures, output_size=64, learnable=True),
                     cond_encoder_cls=partial(MLP, hidden_dims=(128, 128), activations=mish, activate_final=False),
                     reverse_encoder_cls=partial(MLPResNet, use_layer_norm=True, num_blocks=3, dropout_rate=0.1,
                                                 out_dim=act_dim, activations=mish, hidden_dim=width))
    key = jax.random.PRNGKey(0)
    params = actor_def.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1)))["params"]
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(batch, obs_dim)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(batch, act_dim)).astype(np.float32)
    time = (np.arange(batch) % steps)[:, None]
    eps = actor_def.apply({"params": params}, obs, actions, time, training=False)
    flat = {"/".join(k): np.asarray(v) for k, v in flax.traverse_util.flatten_dict(flax.core.unfreeze(params)).items()}
    np.savez_compressed(OUT, obs=obs, actions=actions, time=time[:, 0], eps=np.asarray(eps),
             betas=np.asarray(vp_beta_schedule(steps)), **{f"param:{k}": v for k, v in flat.items()})
    print(f"wrote {OUT}: {sorted(flat)}")


if __name__ == "__main__":
    main(sys.argv[1])
