"""Offline-to-online fine-tuning (``--online-steps``, harness/online.py) on the real PointMaze env."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data import REWARD_TRANSFORMS, training_rewards
from harness.files import load_checkpoint, save_checkpoint
from harness.reporting.report import load_results
from tests.fault_injection import compare
from tests.helpers import flowbench, start_flowbench, wait_for

pytestmark = [pytest.mark.xdist_group("online"), pytest.mark.slow]  # each trains FQL on PointMaze in a process

OFFLINE, ONLINE = 20, 40


def run_args(out: Path, online: int = ONLINE, *extra: str) -> list[str]:
    return ["run", "fql", "local/pointmaze/umaze-v0", "--profile", "cpu", "--steps", str(OFFLINE),
            "--online-steps", str(online), "--eval-every", "20", "--eval-episodes", "1", "--log-every", "10",
            "--checkpoint-every", "10", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(minari_root, tmp_path_factory) -> Path:
    """Offline and online in one uninterrupted run."""
    out = tmp_path_factory.mktemp("online") / "reference"
    result = flowbench(*run_args(out))
    assert result.returncode == 0, result.stderr
    return out


def test_online_phase_marks_its_rows_and_appends_its_env_transitions(reference, maze_data):
    evals = pd.read_csv(reference / "eval.csv")
    assert list(evals["step"]) == [20, 40, 60]
    assert list(evals["phase"]) == ["offline", "online", "online"]
    state = load_checkpoint(reference / "checkpoint.pt")
    assert state["agent"]["step"] == OFFLINE + ONLINE
    replay = state["online"]["replay"]
    assert len(replay["rewards"]) == ONLINE  # one env step per online update
    # consecutive transitions of one episode chain up: s' of one is s of the next, a' its action
    goes_on = ~replay["ended"][:-1]
    assert torch.equal(replay["next_obs"][:-1][goes_on], replay["obs"][1:][goes_on])
    assert torch.equal(replay["next_actions"][:-1][goes_on], replay["actions"][1:][goes_on])
    assert set(replay["rewards"].tolist()) <= {0.0, 1.0} and bool((replay["masks"] == 1).all())  # sparse, no terminals
    # the first online observation is the env's reset state, not a dataset state
    assert replay["obs"][0].tolist() not in maze_data.observations.tolist()


def test_a_finished_offline_run_continues_online_as_one_run_would(reference, tmp_path):
    out = tmp_path / "continued"
    assert flowbench(*run_args(out, 0)).returncode == 0
    assert (out / "summary.json").exists() and len(pd.read_csv(out / "eval.csv")) == 1
    # as an offline run of a flowbench before the phase column would have left it: the column is added
    old = pd.read_csv(out / "eval.csv").drop(columns=["phase", "online_return"])
    (out / "eval.csv").write_text(old.to_csv(index=False, float_format="%.6g"))
    finish_and_compare(out, reference)


def test_kill_9_during_the_online_phase_resumes_exactly(reference, tmp_path):
    out = tmp_path / "killed"
    proc = start_flowbench(*run_args(out))

    def online_checkpoint() -> bool:
        try:
            return load_checkpoint(out / "checkpoint.pt")["agent"]["step"] > OFFLINE
        except Exception:  # noqa: BLE001 — not there yet, or being replaced
            return False

    wait_for(online_checkpoint, 300, "a checkpoint of the online phase")
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(out / "checkpoint.pt")["agent"]["step"]
    assert OFFLINE < killed_at < OFFLINE + ONLINE
    finish_and_compare(out, reference)


def test_a_checkpoint_whose_env_replay_differs_is_refused(reference, tmp_path):
    out = tmp_path / "tampered"
    assert flowbench(*run_args(out, 15)).returncode == 0  # online to step 35: episode 0 still open
    state = load_checkpoint(out / "checkpoint.pt")
    state["online"]["replay"]["obs"][3, 0] += 0.5
    save_checkpoint(state, out / "checkpoint.pt")
    (out / "summary.json").unlink()
    result = flowbench(*run_args(out, 30))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot resume exactly" in result.stderr


def test_algorithms_whose_lr_decays_to_zero_are_refused_online(minari_root, tmp_path):
    out = tmp_path / "dql"
    result = flowbench("run", "diffusion_ql", "local/pointmaze/umaze-v0", "--profile", "cpu", "--steps", "10",
                       "--online-steps", "10", "--out", str(out))
    assert result.returncode == 2
    assert "actor_lr_schedule" in result.stderr and "--set actor_lr_schedule=constant" in result.stderr
    assert not out.exists()


def test_report_reads_either_phase(reference, tmp_path):
    root = tmp_path / "runs"
    (root / "fql").mkdir(parents=True)
    for name in ("config.json", "eval.csv", "summary.json"):
        (root / "fql" / name).write_bytes((reference / name).read_bytes())
    evals = pd.read_csv(reference / "eval.csv")
    for phase, step in (("offline", 20), ("online", 60), ("all", 60)):
        _, final = load_results(root, phase=phase)
        expected = evals.loc[evals["step"] == step, "normalized_score"].item()
        assert final["score"].item() == pytest.approx(expected) and final["status"].item() == "final", phase
    result = flowbench("report", str(root), "--phase", "offline")
    assert result.returncode == 0, result.stderr
    assert "offline evaluations only" in result.stdout


def test_online_rewards_go_through_the_dataset_fitted_transform(maze_data):
    """Each transform is an affine map fitted once on the dataset, the same for data and online rewards."""
    for name in REWARD_TRANSFORMS:
        if name == "iql_locomotion":  # needs episodes of different returns; its own test is in test_conventions
            continue
        scale, shift = REWARD_TRANSFORMS[name](maze_data.rewards, maze_data.episode_ends)
        np.testing.assert_allclose(training_rewards(maze_data, name), maze_data.rewards * scale + shift, rtol=1e-6)
    scale, shift = REWARD_TRANSFORMS["standardize"](maze_data.rewards, maze_data.episode_ends)
    standardized = maze_data.rewards * scale + shift
    assert abs(standardized.mean()) < 1e-5 and standardized.std() == pytest.approx(1.0, rel=1e-4)


def finish_and_compare(out: Path, reference: Path) -> None:
    """Runs ``out`` to the end; its logs and final checkpoint (online transitions and envs too) must be the reference's."""
    result = flowbench(*run_args(out))
    assert result.returncode == 0, result.stderr
    assert compare(out, reference) == []
    assert _equal_online(out, reference)


def _equal_online(run: Path, reference: Path) -> bool:
    got, want = load_checkpoint(run / "checkpoint.pt")["online"], load_checkpoint(reference / "checkpoint.pt")["online"]
    same_replay = all(torch.equal(got["replay"][k], want["replay"][k]) for k in want["replay"])
    same_envs = all(torch.equal(got["envs"][k], want["envs"][k]) if isinstance(want["envs"][k], torch.Tensor)
                    else got["envs"][k] == want["envs"][k] for k in want["envs"])
    return same_replay and same_envs
