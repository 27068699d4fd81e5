"""Writes the golden traces of the official FQL code's agents (seohongpark/fql: FQL, IQL, ReBRAC, IFQL) that
tests/test_golden_fql_code.py replays through flowbench's agents.

Run by hand, in a JAX environment that can import an exported checkout of the reference code (the checkout
is read from the given path, never copied into this repository):

    git --git-dir=PATH/TO/fql.git archive HEAD | tar -x -C /work/ref/fql      # an export of seohongpark/fql
    python3 -m venv /work/refvenv-fql
    /work/refvenv-fql/bin/pip install "jax[cpu]==0.10.2" "jaxlib==0.10.2" flax==0.12.8 optax==0.2.8 \
        distrax==0.1.9 ml_collections==1.1.0 numpy
    /work/refvenv-fql/bin/python tests/golden/make_fql_code_golden.py /work/ref/fql \
        --commit "$(git --git-dir=PATH/TO/fql.git rev-parse HEAD)" [--agents rebrac,fql,iql,ifql]

For each agent it builds the unmodified agent class from its own ``get_config()`` (network widths, batch size and
a few coefficients overridden as listed in ``AGENTS``) on a fixed tiny problem — a random dataset with
obs_dim 3, act_dim 2, rewards N(0, 1), masks 0 or 1 — and runs ``UPDATES`` consecutive ``agent.update`` calls
as main.py runs them (ReBRAC: ``full_update = i % actor_freq == 0`` for i = 1, 2, ...). The updates run with
``jax.disable_jit()`` so that every ``jax.random.normal`` / ``jax.random.uniform`` call the update makes can
be recorded, in order, as concrete numbers. The file (``fql_code_<agent>.npz``, numbers only, loads without
pickle) holds:
- ``meta``: JSON (reference commit, agent, the full config, problem sizes, the draws' kinds and shapes);
- ``init/<module>/<flax path>``: the initial parameters (targets included);
- ``batch/<key>``: ``[N, B, ...]`` the minibatch of each update;
- ``draw/<j>``: ``[N, *shape]`` the j-th random draw of each update (every update draws the same sequence);
- ``info/<metric>``: ``[N]`` every scalar the update returned (losses, Q statistics, gradient norm);
- ``params/<module>/<flax path>``: ``[N, ...]`` every parameter after each update.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

OBS_DIM, ACT_DIM, BATCH, DATASET_SIZE, UPDATES, HIDDEN = 3, 2, 16, 64, 20, (16, 16)

# Per agent: the reference module, its agent class, and the get_config() overrides the trace uses (besides the
# widths and batch size). Coefficients are set where the reference's default would hide a term (ReBRAC's α's
# default to 0 in its get_config).
AGENTS = {
    "rebrac": ("agents.rebrac", "ReBRACAgent", {"alpha_actor": 0.1, "alpha_critic": 0.1}),
    "fql": ("agents.fql", "FQLAgent", {"alpha": 3.0, "flow_steps": 4}),
    "iql": ("agents.iql", "IQLAgent", {"alpha": 3.0}),
    "ifql": ("agents.ifql", "IFQLAgent", {"flow_steps": 4, "num_samples": 8}),
}


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        if hasattr(value, "items"):
            out.update(flatten(value, path))
        else:
            out[path] = np.asarray(value, dtype=np.float32)
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("jax", "jaxlib", "flax", "optax", "distrax", "ml_collections", "numpy")}


def make_dataset(rng: np.random.Generator) -> dict[str, np.ndarray]:
    f32 = np.float32
    data = {
        "observations": rng.uniform(-1, 1, (DATASET_SIZE, OBS_DIM)).astype(f32),
        "actions": rng.uniform(-0.95, 0.95, (DATASET_SIZE, ACT_DIM)).astype(f32),
        "rewards": rng.normal(size=DATASET_SIZE).astype(f32),
        "next_observations": rng.uniform(-1, 1, (DATASET_SIZE, OBS_DIM)).astype(f32),
        "masks": (rng.uniform(size=DATASET_SIZE) < 0.75).astype(f32),
    }
    data["next_actions"] = rng.uniform(-0.95, 0.95, (DATASET_SIZE, ACT_DIM)).astype(f32)
    return data


def trace(name: str, commit: str) -> dict[str, np.ndarray]:
    import importlib

    import jax

    module_name, class_name, overrides = AGENTS[name]
    module = importlib.import_module(module_name)
    agent_class = getattr(module, class_name)
    config = module.get_config()
    config.actor_hidden_dims = HIDDEN
    config.value_hidden_dims = HIDDEN
    config.batch_size = BATCH
    for key, value in overrides.items():
        config[key] = value

    rng = np.random.default_rng(12345)
    data = make_dataset(rng)
    if name != "rebrac":
        del data["next_actions"]
    batches = [{k: v[idx] for k, v in data.items()} for idx in
               (rng.integers(0, DATASET_SIZE, BATCH) for _ in range(UPDATES))]
    agent = agent_class.create(0, batches[0]["observations"][:1], batches[0]["actions"][:1], config)
    out = {f"init/{k}": v for k, v in flatten(agent.network.params).items()}

    draws: list[list[tuple[str, np.ndarray]]] = []
    originals = {"normal": jax.random.normal, "uniform": jax.random.uniform}

    def recorder(kind):
        def draw(*args, **kwargs):
            value = originals[kind](*args, **kwargs)
            draws[-1].append((kind, np.asarray(value, dtype=np.float32)))
            return value
        return draw

    infos, params = [], []
    jax.random.normal, jax.random.uniform = recorder("normal"), recorder("uniform")
    try:
        with jax.disable_jit():
            for i in range(1, UPDATES + 1):
                draws.append([])
                batch = batches[i - 1]
                if name == "rebrac":
                    agent, info = agent.update(batch, full_update=(i % config["actor_freq"] == 0))
                else:
                    agent, info = agent.update(batch)
                infos.append({k: float(v) for k, v in info.items()})
                params.append(flatten(agent.network.params))
    finally:
        jax.random.normal, jax.random.uniform = originals["normal"], originals["uniform"]

    kinds = [[(kind, list(value.shape)) for kind, value in step] for step in draws]
    if any(k != kinds[0] for k in kinds):
        raise RuntimeError(f"{name}: the updates draw different sequences: {kinds}")
    for j in range(len(kinds[0])):
        out[f"draw/{j}"] = np.stack([step[j][1] for step in draws])
    for key in data:
        out[f"batch/{key}"] = np.stack([b[key] for b in batches])
    metric_keys = sorted(set().union(*infos))
    for key in metric_keys:  # a metric a ReBRAC critic-only update lacks is NaN there
        out[f"info/{key}"] = np.array([d.get(key, np.nan) for d in infos], dtype=np.float64)
    for key in params[0]:
        out[f"params/{key}"] = np.stack([p[key] for p in params])
    meta = {"reference": "github.com/seohongpark/fql", "commit": commit, "agent": name,
            "agent_file": module_name.replace(".", "/") + ".py", "config": config.to_dict(),
            "obs_dim": OBS_DIM, "act_dim": ACT_DIM, "updates": UPDATES, "draws": kinds[0],
            "generator": "tests/golden/make_fql_code_golden.py", "versions": versions()}
    out["meta"] = np.array(json.dumps(meta, default=list))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="path of an exported checkout of seohongpark/fql")
    parser.add_argument("--commit", required=True, help="the reference commit the export was made from")
    parser.add_argument("--agents", default=",".join(AGENTS))
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.reference))
    for name in args.agents.split(","):
        arrays = trace(name, args.commit)
        path = os.path.join(args.out, f"fql_code_{name}.npz")
        np.savez_compressed(path, **arrays)
        print(f"{path}: {os.path.getsize(path) / 1024:.0f} KiB, {len(arrays)} arrays")


if __name__ == "__main__":
    main()
