"""``flowbench toy-figure``: the FlowQ paper's Figure 1/2 idea on ``toy/bimodal-v0``.

The data has two equally likely action modes; the upper one pays 1.0 and the lower 0.5. Imitation
(flow BC) reproduces both; a Q-guided policy should put its mass on the upper mode and stay inside
it. Each panel trains one method (``cpu`` profile, the toy's presets, the panel's own settings in
``TOY_PANELS``) and scatters 1000 of its actions next to the data's. The same settings are the
learning tests' (tests/test_energy_family.py).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from tqdm.auto import tqdm

from algos import make_agent, resolve_config
from algos.kit.agent import Agent
from harness import datasets
from harness.data import OfflineData, TransitionBuffer, load
from harness.envs import BIMODAL_LOWER, BIMODAL_RADIUS, BIMODAL_UPPER, bimodal_reward
from harness.reporting.plots import save_figure
from harness.files import atomic_write_text
from harness.trainer import Trainer

TOY_DATASET = "toy/bimodal-v0"
TOY_TITLE = "toy/bimodal-v0: upper mode (green) pays 1.0, lower (orange) 0.5"


@dataclass(frozen=True)
class ToyPanel:
    label: str
    algo: str
    steps: int
    overrides: dict[str, Any] = field(default_factory=dict)


QIPO_TOY_PHASES = {"bc_warmup_steps": 1500, "critic_warmup_steps": 500, "renew_every": 500}

# h = t² accumulates 2.5× less guidance than h = t (Λ(1) = 1/30 against 1/12), so it gets 2.5× the λ.
# FlowQ's velocity field is 3×256 here, not the cpu profile's 2×128, which is too smooth across the gap
# between the modes to finish moving the lower mode's mass (measurements: results/toy/tuning.md).
FLOWQ_TOY_FIELD = {"actor_hidden_dims": (256, 256, 256)}
TOY_PANELS = (
    ToyPanel("BC (mixture)", "bc", 1500),
    ToyPanel("flow BC", "flow_bc", 4000),
    ToyPanel("FQL", "fql", 3000),
    ToyPanel("IFQL", "ifql", 5000),
    ToyPanel("FlowQ, h = t", "flowq", 8000, {"schedule": "t", "energy_scale": 32.0, **FLOWQ_TOY_FIELD}),
    ToyPanel("FlowQ, h = t²", "flowq", 6000, {"schedule": "t2", "energy_scale": 80.0, **FLOWQ_TOY_FIELD}),
    ToyPanel("FlowQ, h = t²/(1−t)", "flowq", 6000, {"schedule": "t2_over_1mt", "energy_scale": 32.0,
                                                    **FLOWQ_TOY_FIELD}),
    ToyPanel("QIPO (OT)", "qipo", 5000, QIPO_TOY_PHASES),
    ToyPanel("QIPO-Diff", "qipo_diff", 6000, QIPO_TOY_PHASES),
    ToyPanel("Diffusion-QL", "diffusion_ql", 4000),
)


def train_toy_agent(panel: ToyPanel, data=None, seed: int = 0):
    """Trains one panel's agent on the toy (batch 256) and returns it."""
    data = data if data is not None else load(TOY_DATASET)
    config = resolve_config(panel.algo, panel.overrides, profile="cpu", dataset_id=TOY_DATASET)
    torch.manual_seed(seed)
    agent = make_agent(panel.algo, data.obs_dim, data.act_dim, config)
    agent.horizon = panel.steps
    buffer = TransitionBuffer(data, reward_transform=config.reward_transform)
    return Trainer(agent, buffer, [seed], config.batch_size).train(panel.steps)


def _panel_samples(panel: ToyPanel, samples: int, seed: int) -> pd.DataFrame:
    torch.set_num_threads(1)
    return agent_actions(train_toy_agent(panel, seed=seed), panel.label, samples, seed)


def agent_actions(agent: Agent, label: str, samples: int, seed: int) -> pd.DataFrame:
    """``samples`` of a one-seed ``agent``'s actions at uniform toy states, with their rewards: one panel's rows
    of the scatter."""
    g = torch.Generator().manual_seed(seed + 1)
    obs = torch.rand((samples, 2), generator=g) * 2 - 1
    actions = agent.act(obs, g).numpy()
    return pd.DataFrame({"panel": label, "a0": actions[:, 0], "a1": actions[:, 1], "reward": bimodal_reward(actions)})


def data_actions(data: OfflineData, samples: int, seed: int) -> pd.DataFrame:
    """``samples`` of the dataset's own actions: the scatter's ``data`` panel."""
    picked = np.random.default_rng(seed).choice(len(data.actions), size=min(samples, len(data.actions)), replace=False)
    return pd.DataFrame({"panel": "data", "a0": data.actions[picked, 0], "a1": data.actions[picked, 1],
                         "reward": data.rewards[picked]})


def action_summary(table: pd.DataFrame, data: OfflineData) -> pd.DataFrame:
    """Per panel: the share of actions in the upper mode, the lower mode and off the support, the mean reward and
    its normalised score."""
    summary = table.groupby("panel", sort=False).agg(
        upper=("reward", lambda r: (r == 1.0).mean()), lower=("reward", lambda r: (r == 0.5).mean()),
        off_support=("reward", lambda r: (r == 0.0).mean()), mean_reward=("reward", "mean"))
    summary["normalized_score"] = data.reference.normalize(summary["mean_reward"])
    return summary


def scatter_actions(table: pd.DataFrame, path: Path, title: str, col_wrap: int = 4) -> Path:
    """One scatter panel per ``table.panel`` over the action square, the two modes drawn as circles."""
    sns.set_theme(style="whitegrid")
    grid = sns.FacetGrid(table, col="panel", col_wrap=col_wrap, height=2.6, xlim=(-1, 1), ylim=(-1, 1))
    grid.map_dataframe(sns.scatterplot, x="a0", y="a1", s=6, alpha=0.4, linewidth=0, color="C0")
    for ax in grid.axes.flat:
        for centre, colour in ((BIMODAL_UPPER, "C2"), (BIMODAL_LOWER, "C1")):
            ax.add_patch(plt.Circle(tuple(centre), BIMODAL_RADIUS, fill=False, color=colour, lw=1.2))
        ax.set_aspect("equal")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("action 0", "action 1")
    grid.figure.suptitle(title, y=1.02)
    return save_figure(grid.figure, path, dpi=120)


def make_toy_figure(out: str | Path = "results/toy", samples: int = 1000, seed: int = 0,
                    panels: tuple[ToyPanel, ...] = TOY_PANELS, scale: float = 1.0) -> Path:
    """Trains every panel (one process per core), writes samples.csv, summary.md and toy_figure.png;
    ``scale`` shrinks every panel's steps (smoke tests)."""
    out = Path(out)
    panels = tuple(replace(panel, steps=max(1, int(panel.steps * scale))) for panel in panels)
    if not datasets.is_local(TOY_DATASET):
        datasets.build(TOY_DATASET)
    data = load(TOY_DATASET)
    frames = [data_actions(data, samples, seed)]
    workers = max(1, min(os.cpu_count() or 1, len(panels)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_panel_samples, panel, samples, seed) for panel in panels]
        for future in tqdm(futures, desc="toy panels", unit="panel"):
            frames.append(future.result())
    table = pd.concat(frames, ignore_index=True)

    summary = action_summary(table, data)
    steps = {p.label: p.steps for p in panels}
    summary.insert(0, "steps", [steps.get(label, "") for label in summary.index])

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "samples.csv", table.to_csv(index=False))
    atomic_write_text(out / "summary.md", (
        f"`toy/bimodal-v0`: {samples} actions per panel (seed {seed}, `cpu` profile, toy presets, panel settings "
        "in harness/toy_figure.py); "
        "regenerate with `flowbench toy-figure`.\n\n" + summary.to_markdown(floatfmt=".3f") + "\n"))
    png = scatter_actions(table, out / "toy_figure.png", TOY_TITLE)
    print(summary.to_markdown(floatfmt=".3f"))
    print(f"\nwrote {png}, {out / 'samples.csv'} and {out / 'summary.md'}")
    return png
