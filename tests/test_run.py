"""Single runs: files, exact resume, config refusal, and bad input through the real CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from harness.files import load_checkpoint
from harness.run import RunConfigMismatch, RunSpec, train, train_seeds
from tests.helpers import flowbench


SMALL = {"actor_hidden_dims": "64,64", "value_hidden_dims": "64,64"}


def spec(tmp_path, name="run", **kw) -> RunSpec:
    base = dict(algo="iql", dataset="local/pointmaze/umaze-v0", seed=3, steps=40, eval_every=20, eval_episodes=2,
                log_every=10, profile="cpu", overrides=SMALL, out=str(tmp_path / name))
    base.update(kw)
    return RunSpec(**base)


def final_params(run_dir) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    return {f"{m}.{k}": v for m, sd in ckpt["agent"]["modules"].items() for k, v in sd.items()}


def test_resumed_run_matches_uninterrupted_run(minari_root, tmp_path):
    full = train(spec(tmp_path, "full", steps=40))
    train(spec(tmp_path, "split", steps=20))
    resumed = train(spec(tmp_path, "split", steps=40))
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["steps"] == resumed["steps"] == 40
    ckpt_a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["agent"]
    ckpt_b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["agent"]
    for name in ckpt_a["optimizers"]:
        for i, st in ckpt_a["optimizers"][name]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, ckpt_b["optimizers"][name]["state"][i][k])
    # the logs continue: every step once, losses equal to the uninterrupted run's
    for f in ("train.csv", "eval.csv"):
        la, lb = pd.read_csv(tmp_path / "full" / f), pd.read_csv(tmp_path / "split" / f)
        assert list(lb["step"]) == list(la["step"]) and lb["step"].is_unique
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "full" / "train.csv").drop(columns="seconds"),
        pd.read_csv(tmp_path / "split" / "train.csv").drop(columns="seconds"))


def test_run_directory_contents(minari_root, tmp_path):
    summary = train(spec(tmp_path, steps=20, eval_every=10))
    out = tmp_path / "run"
    config = json.loads((out / "config.json").read_text())
    assert config["identity"]["agent"]["actor_hidden_dims"] == config["identity"]["agent"]["value_hidden_dims"] == [64, 64]
    assert config["versions"]["torch"].startswith("2.13.0") and "git_commit" in config
    assert config["reference_scores"]["source"] == "minari-metadata"
    evals = pd.read_csv(out / "eval.csv")
    assert list(evals.columns) == ["step", "seconds", "return_mean", "return_std", "normalized_score", "success_rate",
                                   "phase", "online_return"]
    assert list(evals["step"]) == [10, 20] and list(evals["phase"]) == ["offline", "offline"]
    assert evals["success_rate"].between(0, 1).all()
    train_log = pd.read_csv(out / "train.csv")
    assert {"step", "seconds", "critic_loss", "value_loss", "actor_loss"} <= set(train_log.columns)
    assert json.loads((out / "summary.json").read_text())["final"]["step"] == 20 == summary["steps"]


def test_different_config_is_refused_and_nothing_changes(minari_root, tmp_path):
    train(spec(tmp_path, steps=10, eval_every=10))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(RunConfigMismatch, match="expectile"):
        train(spec(tmp_path, steps=20, overrides={**SMALL, "expectile": 0.9}))
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["run", "nope", "toy/bimodal-v0"], "valid choices: bc"),
    (["run", "bc", "toy/bimodal-v0", "--set", "lr2=1"], "valid keys: reward_transform, policy"),
    (["run", "bc", "toy/bimodal-v0", "--set", "actor_lr"], "key=value"),
    (["run", "bc", "toy/nothing-v0"], "toy/bimodal-v0"),
    (["run", "bc", "toy/bimodal-v0", "--profile", "huge"], "valid profiles: cpu"),
    (["run", "bc", "toy/bimodal-v0", "--steps", "0"], "--steps must be positive"),
    (["run", "flowq", "toy/bimodal-v0", "--set", "schedule=t3"], "'schedule' must be one of t, t2, t2_over_1mt"),
    *([(["run", "bc", "toy/bimodal-v0", "--device", "cuda"], "CUDA is not available here")]
      if not torch.cuda.is_available() else []),
])
def test_bad_input_exits_nonzero_and_writes_nothing(minari_root, tmp_path, args, message):
    out = tmp_path / "out"
    result = flowbench(*args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_out_naming_a_file_exits_2_and_leaves_it_alone(minari_root, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    result = flowbench("run", "bc", "toy/bimodal-v0", "--steps", "5", "--out", str(out))
    assert result.returncode == 2 and "is a file; give --out a directory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and out.read_text() == "mine"


def test_cli_run_and_data_commands(minari_root, tmp_path):
    out = tmp_path / "cli"
    result = flowbench("run", "bc", "toy/bimodal-v0", "--steps", "20", "--eval-every", "10", "--eval-episodes", "4",
                       "--log-every", "10", "--profile", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "normalized score" in result.stdout
    assert (out / "summary.json").exists() and (out / "checkpoint.pt").exists()
    # stderr is a pipe here, not a terminal: no bar, but one progress line per evaluation
    lines = [line for line in result.stderr.splitlines() if line.startswith("bc toy/bimodal-v0 s0: step")]
    assert [line.split(": step ")[1].split(" ")[0] for line in lines] == ["10/20", "20/20"], result.stderr
    assert all("updates/s, ETA" in line and "score " in line for line in lines)
    report = flowbench("report", str(tmp_path), "--out", str(tmp_path / "table.md"))
    assert report.returncode == 0 and "toy/bimodal-v0" in report.stdout and "bc" in report.stdout
    assert "toy/bimodal-v0" in (tmp_path / "table.md").read_text()
    listing = flowbench("data", "list")
    assert listing.returncode == 0 and "toy/bimodal-v0" in listing.stdout and "built" in listing.stdout
    info = flowbench("data", "info", "local/pointmaze/umaze-v0")
    assert info.returncode == 0 and json.loads(info.stdout)["transitions"] == 5000


# -- several seeds in one process -------------------------------------------------------------------

def seed_specs(tmp_path, name: str, seeds, **kw) -> list[RunSpec]:
    return [spec(tmp_path, f"{name}/seed{s}", seed=s, **kw) for s in seeds]


def test_batched_seeds_write_the_runs_of_each_seed_alone(minari_root, tmp_path, float64):
    """In float64, seed i of a 3-seed process writes what a one-seed run of seed i writes: same losses,
    evaluations, parameters and generator states, in an ordinary run directory of its own."""
    together = train_seeds(seed_specs(tmp_path, "together", [3, 4, 5]))
    assert [s["seed"] for s in together] == [3, 4, 5]
    for seed in (3, 5):
        alone = train(spec(tmp_path, f"alone/seed{seed}", seed=seed))
        a, b = tmp_path / "together" / f"seed{seed}", tmp_path / "alone" / f"seed{seed}"
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for f in ("train.csv", "eval.csv"):
            pd.testing.assert_frame_equal(pd.read_csv(a / f).drop(columns="seconds"),
                                          pd.read_csv(b / f).drop(columns="seconds"), rtol=1e-9, atol=1e-9)
        pa, pb = final_params(a), final_params(b)
        assert pa.keys() == pb.keys() and all(pa[k].shape[0] == 1 for k in pa)  # a one-seed checkpoint
        for k in pa:
            torch.testing.assert_close(pa[k], pb[k], rtol=1e-9, atol=1e-9)
        config_a, config_b = (json.loads((d / "config.json").read_text()) for d in (a, b))
        assert config_a["identity"] == config_b["identity"] and config_a["identity"]["seed"] == seed
        assert config_a["trained_with_seeds"] == [3, 4, 5]
        final = {k: v for k, v in together[[3, 4, 5].index(seed)]["final"].items() if k != "seconds"}
        assert final == pytest.approx({k: v for k, v in alone["final"].items() if k != "seconds"}, rel=1e-9, abs=1e-9)


def test_batched_seeds_resume_exactly(minari_root, tmp_path):
    train_seeds(seed_specs(tmp_path, "full", [0, 1], steps=40))
    train_seeds(seed_specs(tmp_path, "split", [0, 1], steps=20))
    train_seeds(seed_specs(tmp_path, "split", [0, 1], steps=40))
    for seed in (0, 1):
        a, b = tmp_path / "full" / f"seed{seed}", tmp_path / "split" / f"seed{seed}"
        pa, pb = final_params(a), final_params(b)
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
        pd.testing.assert_frame_equal(pd.read_csv(a / "train.csv").drop(columns="seconds"),
                                      pd.read_csv(b / "train.csv").drop(columns="seconds"))
        assert list(pd.read_csv(b / "eval.csv")["step"]) == [20, 40]
    # one seed alone resumes from the batched run's checkpoint too: it is an ordinary run directory
    assert train(spec(tmp_path, "split/seed1", seed=1, steps=50))["steps"] == 50


def test_seeds_at_different_steps_train_in_groups(minari_root, tmp_path):
    train(spec(tmp_path, "mixed/seed1", seed=1, steps=20))
    summaries = train_seeds(seed_specs(tmp_path, "mixed", [0, 1], steps=40))
    assert [s["steps"] for s in summaries] == [40, 40]
    for seed in (0, 1):
        assert list(pd.read_csv(tmp_path / "mixed" / f"seed{seed}" / "eval.csv")["step"]) == [20, 40]


@pytest.mark.parametrize("seeds, message", [
    ("0,1,0", "seeds repeat: 0"),
    ("0,x", "'x'"),
    ("1.5", "'1.5'"),
    ("", "names no seed"),
])
def test_bad_seeds_exit_2_and_write_nothing(minari_root, tmp_path, seeds, message):
    out = tmp_path / "out"
    result = flowbench("run", "bc", "toy/bimodal-v0", "--seeds", seeds, "--out", str(out / "seed{seed}"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_seeds_need_their_own_directories(minari_root, tmp_path):
    result = flowbench("run", "bc", "toy/bimodal-v0", "--seeds", "0,1", "--out", str(tmp_path / "one"))
    assert result.returncode == 2 and "{seed}" in result.stderr
    assert not (tmp_path / "one").exists()


def test_a_seed_directory_of_another_config_refuses_the_whole_batch(minari_root, tmp_path):
    common = ["--steps", "10", "--eval-every", "10", "--eval-episodes", "2", "--profile", "cpu"]
    assert flowbench("run", "bc", "toy/bimodal-v0", "--seed", "1", "--out", str(tmp_path / "b" / "seed1"),
                     *common, "--set", "actor_lr=0.001").returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "b" / "seed1").iterdir()}
    result = flowbench("run", "bc", "toy/bimodal-v0", "--seeds", "0,1,2", "--out", str(tmp_path / "b" / "seed{seed}"),
                       *common)
    assert result.returncode == 2, result.stderr
    assert "seed1" in result.stderr and "actor_lr" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "b" / "seed0").exists() and not (tmp_path / "b" / "seed2").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "b" / "seed1").iterdir()} == before
