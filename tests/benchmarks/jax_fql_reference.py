"""The official JAX FQL update rate (seohongpark/fql, ``agents/fql.py`` unmodified), at flowbench's CPU settings.

Run with a separate JAX venv's python (never flowbench's venv: JAX is not a flowbench dependency), pointed at
an exported copy of the official code (its ``agents/`` and ``utils/``; the agent code is imported as it is):

    python3 -m venv JAXVENV
    JAXVENV/bin/pip install "jax[cpu]==0.10.2" jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 distrax==0.1.9 \\
        tfp-nightly==0.26.0.dev20261027 ml_collections==1.1.0 numpy==2.4.6
    git clone https://github.com/seohongpark/fql FQL && git -C FQL checkout 719d04417cb0b206deddbc7d761b3e710c3d750c
    JAXVENV/bin/python tests/benchmarks/jax_fql_reference.py --fql-dir FQL --rounds 5 --updates 400

(``utils/networks.py`` imports distrax, which needs TensorFlow Probability's JAX substrate: distrax 0.1.9
requires ``tfp-nightly``.) Newer versions of these packages should do too: the code only needs
``flax.linen``, ``flax.struct``, ``optax.adam`` and ``jax.jit``.

The agent: ``agents.fql.get_config()`` with flowbench's ``--profile cpu`` networks (``algos/kit/presets.py``
``cpu_networks``: actor and critic MLPs 2×256), α = 0.3 (flowbench's ``toy/*`` preset), K = 10 flow steps,
every other setting the official default (critic LayerNorm, GELU, Adam 3e-4, γ 0.99, τ 0.005, mean over the
two target critics, batch 256), float32, XLA's default CPU threads. Its data: ``toy/bimodal-v0``'s transitions
from ``--data`` (an ``.npz`` written by ``jax_fql_compare.py``), else random ones of ``--obs-dim`` ×
``--act-dim`` (the toy's 2 × 2; timing does not depend on the values).

Timed: ``agent, info = agent.update(batch)`` (the jitted update) ``--updates`` times per round, then
``jax.block_until_ready`` on the new agent, so JAX's asynchronous dispatch overlaps calls as in the official
training loop. ``--batch fixed`` reuses one device batch (the update alone); ``--batch sampled`` draws a
fresh numpy batch per call with the official ``utils.datasets.Dataset.sample`` as ``main.py`` does (host
sampling and the host-to-device copy included). The first call (trace + XLA compile + one run) is reported as
the compile time, then ``--warmup`` untimed calls.

``--seeds N`` (default 1) trains N agents of seeds ``seed … seed+N-1`` in one process as flowbench's seed axis
does: their states stacked, ``jax.jit(jax.vmap(FQLAgent.update))`` over them, each with its own batch (the official
code trains one seed per process; vmap is JAX's own way to batch them). A round's ``updates_per_s`` counts calls of
the update: seed-updates/s is N times it.

Output: JSON lines on stdout — one ``setup`` line (versions, devices, compile seconds), then one ``round``
line per round (``updates_per_s``). With ``--serve``, rounds are run on request instead: each line read from
stdin is the number of updates of the next round (``jax_fql_compare.py`` alternates them with flowbench's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def load_transitions(path: Path | None, obs_dim: int, act_dim: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """The official ``Dataset``'s fields (float32): from ``path``, or random transitions shaped like the toy's."""
    if path is not None:
        with np.load(path) as f:
            data = {k: np.asarray(f[k], dtype=np.float32) for k in
                    ("observations", "actions", "rewards", "next_observations", "masks")}
    else:
        rng = np.random.default_rng(seed)
        data = {"observations": rng.uniform(-1, 1, (size, obs_dim)), "actions": rng.uniform(-1, 1, (size, act_dim)),
                "rewards": rng.random(size), "next_observations": rng.uniform(-1, 1, (size, obs_dim)),
                "masks": np.zeros(size)}
        data = {k: v.astype(np.float32) for k, v in data.items()}
    data["terminals"] = 1.0 - data["masks"]  # the official Dataset locates episodes by its terminals
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fql-dir", type=Path, required=True, help="a copy of seohongpark/fql (agents/, utils/)")
    parser.add_argument("--data", type=Path, default=None, help=".npz of transitions (default: random ones)")
    parser.add_argument("--obs-dim", type=int, default=2)
    parser.add_argument("--act-dim", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="actor and critic hidden widths")
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--flow-steps", type=int, default=10)
    parser.add_argument("--batch", choices=("fixed", "sampled"), default="fixed")
    parser.add_argument("--updates", type=int, default=400, help="timed updates per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates after the compiling one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="agents trained at once, vmapped (seeds seed…seed+N-1)")
    parser.add_argument("--serve", action="store_true", help="run a round per stdin line (its number of updates)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(args.fql_dir.resolve()))
    import flax
    import jax
    import jax.numpy as jnp
    import optax

    from agents.fql import FQLAgent, get_config
    from utils.datasets import Dataset

    config = get_config()
    config["actor_hidden_dims"] = tuple(args.hidden)
    config["value_hidden_dims"] = tuple(args.hidden)
    config["alpha"] = args.alpha
    config["flow_steps"] = args.flow_steps
    config["batch_size"] = args.batch_size

    np.random.seed(args.seed)  # Dataset.sample draws from numpy's global generator
    dataset = Dataset.create(**load_transitions(args.data, args.obs_dim, args.act_dim, 10_000, args.seed))
    example = dataset.sample(1)
    def stacked(trees: list[Any]) -> Any:
        """One pytree whose leaves stack those of ``trees`` (same structure; static fields such as optax's
        closures, made anew by every ``create``, are taken from the first)."""
        leaves = [jax.tree.leaves(tree) for tree in trees]
        return jax.tree.unflatten(jax.tree.structure(trees[0]), [jnp.stack(ls) for ls in zip(*leaves)])

    if args.seeds == 1:
        agent = FQLAgent.create(args.seed, example["observations"], example["actions"], config)
        update: Callable[[Any, Any], Any] = lambda agent, batch: agent.update(batch)  # noqa: E731
        sample = lambda: dataset.sample(args.batch_size)  # noqa: E731
    else:
        agent = stacked([FQLAgent.create(args.seed + i, example["observations"], example["actions"], config)
                         for i in range(args.seeds)])
        update = jax.jit(jax.vmap(lambda agent, batch: agent.update(batch)))
        sample = lambda: stacked([dataset.sample(args.batch_size) for _ in range(args.seeds)])  # noqa: E731

    if args.batch == "fixed":
        fixed = jax.device_put(sample())
        next_batch: Callable[[], Any] = lambda: fixed  # noqa: E731
    else:
        next_batch = sample

    def run(agent: Any, n: int) -> tuple[Any, float]:
        start = time.perf_counter()
        for _ in range(n):
            agent, _ = update(agent, next_batch())
        jax.block_until_ready(agent)
        return agent, time.perf_counter() - start

    agent, compile_s = run(agent, 1)
    agent, _ = run(agent, args.warmup)
    emit({"event": "setup", "compile_s": compile_s, "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "numpy": np.__version__, "devices": [str(d) for d in jax.devices()],
          "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "batch": args.batch,
          "obs_dim": int(example["observations"].shape[-1]), "act_dim": int(example["actions"].shape[-1]),
          "batch_size": args.batch_size, "seeds": args.seeds, "hidden": args.hidden, "alpha": args.alpha, "flow_steps": args.flow_steps})

    requests = (int(line) for line in sys.stdin if line.strip()) if args.serve else [args.updates] * args.rounds
    for r, n in enumerate(requests):
        agent, seconds = run(agent, n)
        emit({"event": "round", "round": r, "updates": n, "seconds": seconds, "updates_per_s": n / seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
