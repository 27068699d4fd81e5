"""Timing against the number of flow steps K: what each update runs (counted, not timed), the
``flowbench timing`` command's files, reading a real pytest-benchmark JSON, and bad input.

No assertion here is about how fast anything is: these machines are shared and noisy. The counts
of flow/diffusion network passes are what makes a cost grow with K, and they are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from algos.cac import ConsistencyPolicy
from algos.kit.diffusion import NoisePredictor, ResidualNoisePredictor
from algos.kit.flows import VelocityField
from harness.cli import main
from harness.timing import PARTS, TIMED_ALGOS, TimingSpec, ratio_table, speedup_table, synthetic_batch, timing_agent

ROOT = Path(__file__).resolve().parent.parent
SMALL = TimingSpec(profile="cpu", batch_size=16, act_batch=4)
M = 4  # QIPO's support samples per state in the cpu profile


def count_policy_passes(agent, call) -> list[int]:
    """Runs ``call`` and returns the rows per seed of every forward pass of a flow/diffusion network."""
    rows: list[int] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: rows.append(args[1].shape[1:-1].numel()))
             for m in agent.modules().values()
             if isinstance(m, (VelocityField, NoisePredictor, ResidualNoisePredictor, ConsistencyPolicy))]
    try:
        call()
    finally:
        for h in hooks:
            h.remove()
    return rows


B = SMALL.batch_size
# (passes in the policy update, passes in the full update) as lists of row counts, for K steps.
EXPECTED_PASSES = {
    "flowq": lambda k: ([B], [B]),  # one pass: the loss's, whose output also gives the endpoint estimate
    "flow_bc": lambda k: ([B], [B]),
    "ifql": lambda k: ([B], [B]),  # best-of-N sampling happens only when acting
    "fql": lambda k: ([B] + [B] * k, [B] + [B] * k),  # the loss + K Euler steps of the distillation target
    # K snapshot steps over the B·M support samples, then the weighted loss over B·(M + 1) rows
    "qipo": lambda k: ([B * M] * k + [B * (M + 1)], [B * M] * k + [B * (M + 1)]),
    "qipo_diff": lambda k: ([B * M] * k + [B * (M + 1)], [B * M] * k + [B * (M + 1)]),
    # the denoising loss + the K reverse steps (backpropagated); the full update first samples the
    # critic's next actions through the EMA policy's K steps
    "diffusion_ql": lambda k: ([B] + [B] * k, [B] * k + [B] + [B] * k),
    # the flow-matching loss + the K Euler steps that L_q backpropagates through; the full update first
    # samples the critic's next actions (K steps, no gradient)
    "fbrac": lambda k: ([B] + [B] * k, [B] * k + [B] + [B] * k),
    # the weighted loss (the weights read the critic and V; no policy sample); the full update first samples the
    # critic's next actions
    "fawac": lambda k: ([B], [B] * k + [B]),
    "idql": lambda k: ([B], [B]),  # resampling happens only when acting
    # the consistency loss (two levels: the target's pass without gradient) + the K sampling steps of the Q
    # term; the full update first samples the critic's next actions (K steps, no gradient)
    "cac": lambda k: ([B, B] + [B] * k, [B] * k + [B, B] + [B] * k),
}


def test_every_timed_algorithm_has_an_expectation() -> None:
    assert set(EXPECTED_PASSES) == set(TIMED_ALGOS)


@pytest.mark.parametrize("algo", TIMED_ALGOS)
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_flow_network_passes_per_update(algo: str, steps: int) -> None:
    agent = timing_agent(algo, steps, SMALL, torch.device("cpu"))
    batch = synthetic_batch(B, SMALL.obs_dim, SMALL.act_dim, agent.device, torch.Generator().manual_seed(0))
    policy, full = EXPECTED_PASSES[algo](steps)
    assert sorted(count_policy_passes(agent, lambda: agent.policy_step(batch))) == sorted(policy)
    assert sorted(count_policy_passes(agent, lambda: agent.update(batch))) == sorted(full)


@pytest.mark.parametrize("algo", TIMED_ALGOS)
def test_policy_step_trains_the_policy_and_only_the_policy(algo: str) -> None:
    agent = timing_agent(algo, 2, SMALL, torch.device("cpu"))
    batch = synthetic_batch(B, SMALL.obs_dim, SMALL.act_dim, agent.device, torch.Generator().manual_seed(0))
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in agent.modules().items()}
    loss = agent.policy_step(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert agent.step == 0  # a timing probe, not a training step
    changed = {name for name, m in agent.modules().items()
               if any(not torch.equal(before[name][k], v) for k, v in m.state_dict().items())}
    policy_modules = {"flowq": {"flow"}, "flow_bc": {"flow"}, "ifql": {"flow"}, "fql": {"flow", "onestep"},
                      "qipo": {"policy"}, "qipo_diff": {"policy"}, "diffusion_ql": {"actor"},
                      "fbrac": {"flow"}, "fawac": {"flow"}, "idql": {"behaviour"},
                      "cac": {"actor"}}[algo]
    assert changed == policy_modules


def test_timing_command_writes_csv_plot_and_ratios(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "timing"
    code = main(["timing", "--algos", "flowq,diffusion_ql", "--flow-steps", "1,4", "--updates", "2", "--rounds", "2",
                 "--warmup", "1", "--profile", "cpu", "--batch-size", "16", "--act-batch", "4", "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out / "timing.csv")
    assert len(frame) == 2 * 2 * 3
    assert set(frame.columns) >= {"algorithm", "K", "part", "seconds_per_1e4", "device", "torch", "python", "threads"}
    assert set(frame.part) == set(PARTS) and set(frame.K) == {1, 4} and set(frame.algorithm) == {"flowq", "diffusion_ql"}
    assert (frame.seconds_per_1e4 > 0).all() and (frame.seconds_per_1e4_min <= frame.seconds_per_1e4).all()
    assert (frame.calls >= 2).all() and (frame.profile == "cpu").all()
    assert (out / "timing.png").stat().st_size > 10_000
    # the printed and written ratios are K=4 over K=1 of the CSV's own numbers
    times = frame.set_index(["algorithm", "part", "K"]).seconds_per_1e4
    table = ratio_table(frame)
    for algo in ("flowq", "diffusion_ql"):
        for part in PARTS:
            assert table.loc[algo, part] == pytest.approx(times[algo, part, 4] / times[algo, part, 1])
    summary = (out / "summary.md").read_text()
    assert f"{table.loc['flowq', 'policy_update']:.2f}" in summary and "flowbench timing --algos flowq,diffusion_ql" in summary
    assert f"{table.loc['diffusion_ql', 'policy_update']:.2f}" in capsys.readouterr().out


def test_plots_a_real_pytest_benchmark_json(tmp_path: Path) -> None:
    saved = tmp_path / "benchmark.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "--dist", "no", "tests/benchmarks",
                    "-k", "flow_bc and (K1- or K2-)", "--benchmark-enable", f"--benchmark-json={saved}",
                    "--benchmark-min-rounds=2", "--benchmark-max-time=0.001", "--benchmark-warmup=off"],
                   cwd=ROOT, check=True, capture_output=True,
                   # a plain pytest, not an xdist worker's child (pytest-benchmark switches itself off there)
                   env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")})
    assert main(["timing", "--from-benchmark", str(saved), "--out", str(tmp_path / "plotted")]) == 0
    frame = pd.read_csv(tmp_path / "plotted" / "timing.csv")
    benchmarks = json.loads(saved.read_text())["benchmarks"]
    assert len(frame) == len(benchmarks) == 2 * 3
    for bench in benchmarks:
        info = bench["extra_info"]
        row = frame[(frame.algorithm == info["algorithm"]) & (frame.K == info["K"]) & (frame.part == info["part"])]
        assert row.seconds_per_1e4.item() == pytest.approx(1e4 * bench["stats"]["median"], rel=1e-5)
        assert info["profile"] == "default"  # --benchmark-enable times the paper's network sizes
    assert (tmp_path / "plotted" / "timing.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--algos", "bc", "--parts", "policy_update"], "no flow/diffusion steps"),
    (["--algos", "flowq,nope"], "unknown algorithm"),
    (["--flow-steps", "0,2"], "positive integers"),
    (["--flow-steps", "1,two"], "comma-separated int"),
    (["--parts", "policy_update,backward"], "unknown part"),
    (["--updates", "0"], "at least 1"),
    (["--profile", "tiny"], "profile 'tiny' is not defined for flowq"),
    (["--from-benchmark", "missing.json"], "cannot read pytest-benchmark JSON"),
] + ([(["--device", "cuda"], "CUDA is not available")] if not torch.cuda.is_available() else []))
def test_bad_timing_input_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                                      message: str) -> None:
    out = tmp_path / "timing"
    # small settings first (argparse keeps the last value), so a check that failed to fire costs little
    small = ["--algos", "flowq", "--flow-steps", "1", "--profile", "cpu", "--warmup", "0", "--rounds", "1"]
    assert main(["timing", *small, *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_json_without_timing_benchmarks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmarks": [{"name": "test_x", "extra_info": {}, "stats": {"median": 1.0}}]}))
    assert main(["timing", "--from-benchmark", str(other), "--out", str(tmp_path / "t")]) == 2
    assert "no flowbench timing benchmarks" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_timing_compares_seeds_per_process_and_graph_modes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--seeds`` and ``--cuda-graph`` lists are cells of one run; an algorithm without flow steps is timed
    once; the speed-up table is each setting's seed-updates per second over one seed eager's."""
    out = tmp_path / "timing"
    code = main(["timing", "--algos", "fql,rebrac", "--flow-steps", "1,2", "--seeds", "1,2", "--cuda-graph", "auto,off",
                 "--parts", "full_update", "--updates", "2", "--rounds", "1", "--warmup", "1", "--profile", "cpu",
                 "--batch-size", "16", "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out / "timing.csv")
    assert len(frame) == (2 + 1) * 2 * 2  # fql at K = 1, 2; rebrac once; × 2 seed counts × 2 modes
    assert set(frame[frame.algorithm == "rebrac"].K) == {1}
    assert set(frame.cuda_graph) == {"eager"}  # no CUDA here: auto runs eagerly, and the table says so
    assert list(frame.seed_calls_per_second) == pytest.approx(list(frame.seeds * frame.calls_per_second), rel=1e-4)
    speedups = speedup_table(frame)
    column = "2 seeds, eager / 1 seed, eager"
    rates = frame[frame.part == "full_update"].set_index(["algorithm", "K", "seeds"]).seed_calls_per_second
    # auto and off both ran eagerly here, so the table averages their two cells per setting
    assert speedups.loc[("fql", 2), column] == pytest.approx(rates.loc[("fql", 2, 2)].mean() / rates.loc[("fql", 2, 1)].mean())
    assert "speed-ups over one seed eager" in (out / "summary.md").read_text()
    assert "seed-updates per second" in capsys.readouterr().out
