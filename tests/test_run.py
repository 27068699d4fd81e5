"""Single runs: files, exact resume, config refusal, and bad input through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from harness.run import RunConfigMismatch, RunSpec, train


def spec(tmp_path, name="run", **kw) -> RunSpec:
    base = dict(algo="iql", dataset="local/pointmaze/umaze-v0", seed=3, steps=40, eval_every=20, eval_episodes=2,
                log_every=10, profile="cpu", overrides={"hidden_dims": "64,64"}, out=str(tmp_path / name))
    base.update(kw)
    return RunSpec(**base)


def final_params(run_dir) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
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
    ckpt_a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["agent"]
    ckpt_b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["agent"]
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
    assert config["identity"]["agent"]["hidden_dims"] == [64, 64]
    assert config["versions"]["torch"].startswith("2.13.0") and "git_commit" in config
    assert config["reference_scores"]["source"] == "minari-metadata"
    evals = pd.read_csv(out / "eval.csv")
    assert list(evals.columns) == ["step", "seconds", "return_mean", "return_std", "normalized_score", "success_rate"]
    assert list(evals["step"]) == [10, 20]
    assert evals["success_rate"].between(0, 1).all()
    train_log = pd.read_csv(out / "train.csv")
    assert {"step", "seconds", "critic_loss", "value_loss", "actor_loss"} <= set(train_log.columns)
    assert json.loads((out / "summary.json").read_text())["final"]["step"] == 20 == summary["steps"]


def test_different_config_is_refused_and_nothing_changes(minari_root, tmp_path):
    train(spec(tmp_path, steps=10, eval_every=10))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(RunConfigMismatch, match="expectile"):
        train(spec(tmp_path, steps=20, overrides={"hidden_dims": "64,64", "expectile": 0.9}))
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def flowbench(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["run", "nope", "toy/bimodal-v0"], "valid choices: bc"),
    (["run", "bc", "toy/bimodal-v0", "--set", "lr2=1"], "valid keys: policy"),
    (["run", "bc", "toy/bimodal-v0", "--set", "lr"], "key=value"),
    (["run", "bc", "toy/nothing-v0"], "toy/bimodal-v0"),
    (["run", "bc", "toy/bimodal-v0", "--profile", "huge"], "valid profiles: cpu"),
    (["run", "bc", "toy/bimodal-v0", "--steps", "0"], "--steps must be positive"),
])
def test_bad_input_exits_nonzero_and_writes_nothing(minari_root, tmp_path, args, message):
    out = tmp_path / "out"
    result = flowbench(*args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_cli_run_and_data_commands(minari_root, tmp_path):
    out = tmp_path / "cli"
    result = flowbench("run", "bc", "toy/bimodal-v0", "--steps", "20", "--eval-every", "10", "--eval-episodes", "4",
                       "--log-every", "10", "--profile", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "normalized score" in result.stdout
    assert (out / "summary.json").exists() and (out / "checkpoint.pt").exists()
    report = flowbench("report", str(tmp_path), "--out", str(tmp_path / "table.md"))
    assert report.returncode == 0 and "toy/bimodal-v0" in report.stdout and "bc" in report.stdout
    assert "toy/bimodal-v0" in (tmp_path / "table.md").read_text()
    listing = flowbench("data", "list")
    assert listing.returncode == 0 and "toy/bimodal-v0" in listing.stdout and "built" in listing.stdout
    info = flowbench("data", "info", "local/pointmaze/umaze-v0")
    assert info.returncode == 0 and json.loads(info.stdout)["transitions"] == 5000
