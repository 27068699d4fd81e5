"""Faults around a run: concurrent writers, kills, a full disk, broken checkpoints and datasets, divergence.

Each test reproduces one way a run used to be corrupted or to fail unclearly, with real
processes, files and file systems (the disk-full test mounts a small tmpfs). The preemption tests
against a real SLURM are in test_sweep.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.files import CHECKPOINT_MAGIC, load_checkpoint
from harness.locks import LOCK_FILE, RunDirLock, current_holder
from harness.run import RunSpec, train
from harness.trainer import RunInterrupted
from tests.helpers import REPO, flowbench, start_flowbench, wait_for

pytestmark = pytest.mark.xdist_group("faults")


def run_args(out: Path, steps: int = 200, *extra: str) -> list[str]:
    return ["run", "bc", "toy/bimodal-v0", "--profile", "cpu", "--steps", str(steps), "--eval-every", "100",
            "--eval-episodes", "3", "--log-every", "50", "--out", str(out), *extra]


def files_of(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.name != LOCK_FILE}


# -- 1. two writers, one run directory ----------------------------------------------------------------

def test_a_second_writer_of_a_run_directory_exits_2_naming_the_holder(minari_root, tmp_path):
    out = tmp_path / "run"
    first = start_flowbench(*run_args(out, 3000))
    try:
        # the lock is taken a moment before its holder record is written (read meanwhile as pid 0 on '?')
        holder = wait_for(lambda: (h := current_holder(out)) is not None and h.pid != 0 and h, 120,
                          "the first run to take its lock and record itself", poll=0.1)
        assert holder.pid == first.pid and holder.host == socket.gethostname()
        status = flowbench("status", str(out))
        assert " running " in status.stdout and f"pid {first.pid} on {socket.gethostname()}" in status.stdout, \
            status.stdout
        for extra in ([], ["--seed", "1"]):  # the same run, or another seed into the same directory
            second = flowbench(*run_args(out, 3000, *extra))
            assert second.returncode == 2, second.stderr
            assert f"is being written by pid {first.pid} on {socket.gethostname()}" in second.stderr
            assert "Traceback" not in second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
        first.communicate()
    train_log, eval_log = pd.read_csv(out / "train.csv"), pd.read_csv(out / "eval.csv")
    assert list(train_log["step"]) == list(range(50, 3001, 50))  # every row once
    assert list(eval_log["step"]) == list(range(100, 3001, 100))
    assert json.loads((out / "config.json").read_text())["identity"]["seed"] == 0
    assert current_holder(out) is None  # released when the writer exited


def test_a_lock_whose_holder_died_is_taken_over(minari_root, tmp_path):
    out = tmp_path / "run"
    first = start_flowbench(*run_args(out, 100_000))
    wait_for(lambda: (out / "checkpoint.pt").exists(), 120, "a first checkpoint", poll=0.1)
    first.send_signal(signal.SIGKILL)  # no chance to release anything
    first.communicate()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == first.pid  # its record is still there...
    assert current_holder(out) is None  # ...but nobody holds the lock
    resumed = flowbench(*run_args(out, 300))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "config.json").read_text())["resumed_from_step"] > 0


@pytest.mark.slow
def test_two_sweeps_of_one_suite_never_run_a_run_twice(minari_root, tmp_path):
    from tests.helpers import write_suite

    suite = write_suite(tmp_path / "twice.yaml", "twice", algorithms=["bc"], datasets={"toy/bimodal-v0": {}}, seeds=[0],
                        steps=2000, eval_every=1000, eval_episodes=3, log_every=100, profile="cpu",
                        resources=dict(cpus=1))
    first = start_flowbench("sweep", str(suite), "--results", str(tmp_path))
    try:
        run = tmp_path / "twice" / "bc" / "toy_bimodal-v0" / "seed0"
        wait_for(lambda: current_holder(run), 120, "the first sweep's job to start its run", poll=0.1)
        second = flowbench("sweep", str(suite), "--results", str(tmp_path))
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another flowbench sweep of this suite" in second.stderr and f"pid {first.pid}" in second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
        first.communicate()
    assert list(pd.read_csv(run / "train.csv")["step"]) == list(range(100, 2001, 100))


# -- 4. disk full -----------------------------------------------------------------------------------

DISK_FULL_SCENARIO = r"""
import json, os, subprocess, sys
from pathlib import Path
out = Path(sys.argv[1]) / "run"
cmd = [sys.executable, "-m", "harness.cli", "run", "fql", "toy/bimodal-v0", "--profile", "cpu", "--steps", "200",
       "--eval-every", "100", "--eval-episodes", "2", "--log-every", "50", "--out", str(out)]
first = subprocess.run(cmd, capture_output=True, text=True)
left = sorted(p.name for p in out.iterdir()) if out.exists() else []
second = subprocess.run(cmd, capture_output=True, text=True)
left_again = sorted(p.name for p in out.iterdir()) if out.exists() else []
print(json.dumps({"rc": [first.returncode, second.returncode], "stderr": [first.stderr, second.stderr],
                  "left": left, "left_again": left_again}))
"""


@pytest.mark.slow
def test_a_full_disk_says_so_and_leaves_no_temporaries(minari_root, tmp_path):
    """A 1 MiB tmpfs holds config.json and the logs but not FQL's first checkpoint (~6 MB)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    script = tmp_path / "scenario.py"
    script.write_text(DISK_FULL_SCENARIO)
    # a private mount namespace (user namespace too, where this is not root): the tmpfs vanishes with it
    command = f"mount -t tmpfs -o size=1m tmpfs {mount} && {sys.executable} {script} {mount}"
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    done = subprocess.run([*unshare, "sh", "-c", command], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for rc, stderr, left in zip(result["rc"], result["stderr"], (result["left"], result["left_again"])):
        assert rc == 1, stderr
        assert "no space left on device" in stderr and "checkpoint.pt" in stderr, stderr
        assert "unexpected pos" not in stderr and "Traceback" not in stderr
        assert not [name for name in left if ".tmp" in name], left  # no hidden temporaries keep the disk full
        assert "checkpoint.pt" not in left


# -- 5. corrupt checkpoints -------------------------------------------------------------------------

def interrupted_run(tmp_path: Path, stop_at: int = 300) -> tuple[RunSpec, Path]:
    """A run stopped at ``stop_at`` with checkpoints every 100 steps (the last two kept)."""
    spec = RunSpec(algo="bc", dataset="toy/bimodal-v0", seed=0, steps=600, eval_every=100, eval_episodes=2,
                   log_every=50, profile="cpu", out=str(tmp_path / "run"))
    steps = iter(range(1, 10**6))
    with pytest.raises(RunInterrupted):
        train(spec, should_stop=lambda: next(steps) >= stop_at)
    return spec, tmp_path / "run"


@pytest.mark.parametrize("damage, message", [
    ("flip", "fails its checksum"),
    ("truncate", "fails its checksum"),
    ("empty", "is empty"),
])
def test_a_broken_checkpoint_is_named_and_the_previous_one_resumes(minari_root, tmp_path, damage, message):
    spec, run = interrupted_run(tmp_path)
    checkpoint = run / "checkpoint.pt"
    assert load_checkpoint(run / "checkpoint.prev.pt")["agent"]["step"] == 200
    data = bytearray(checkpoint.read_bytes())
    assert data.startswith(CHECKPOINT_MAGIC)
    if damage == "flip":  # one byte inside the optimiser's state, the kind of change torch.load does not notice
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data = bytearray()
    checkpoint.write_bytes(bytes(data))
    before = files_of(run)
    args = run_args(run, 600)
    broken = flowbench(*args)
    assert broken.returncode == 2, broken.stderr
    assert f"checkpoint {checkpoint} {message}" in broken.stderr and "Traceback" not in broken.stderr
    assert f"resume from the previous checkpoint (step 200) with: mv {run / 'checkpoint.prev.pt'} {checkpoint}" \
           in broken.stderr and "to restart the run from step 0" in broken.stderr
    assert files_of(run) == before  # nothing was touched
    shutil.move(run / "checkpoint.prev.pt", checkpoint)  # follow the advice
    resumed = flowbench(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert list(pd.read_csv(run / "train.csv")["step"]) == list(range(50, 601, 50))
    assert list(pd.read_csv(run / "eval.csv")["step"]) == list(range(100, 601, 100))


class _RunsAShellCommand:
    """A pickle that calls ``os.system`` when loaded: what a crafted checkpoint on a shared file system could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_holding_code_is_refused_and_runs_nothing(minari_root, tmp_path):
    spec, run = interrupted_run(tmp_path)
    marker = tmp_path / "pwned"
    state = load_checkpoint(run / "checkpoint.pt")
    state["agent"]["extra"] = {"payload": _RunsAShellCommand(marker)}
    checkpoint = run / "checkpoint.pt"
    buffer = io.BytesIO()
    torch.save(state, buffer)  # a valid checksum header: the file is whole, only its content is hostile
    payload = buffer.getvalue()
    checkpoint.write_bytes(CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    before = files_of(run)
    refused = flowbench(*run_args(run, 600))
    assert refused.returncode == 2, refused.stderr
    assert f"checkpoint {checkpoint} holds something other than tensors and plain values" in refused.stderr
    assert "refused unread" in refused.stderr and "Traceback" not in refused.stderr
    assert "resume from the previous checkpoint (step 200)" in refused.stderr
    assert not marker.exists()  # nothing ran
    assert files_of(run) == before


# -- 6. corrupt dataset files -----------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_an_unreadable_dataset_file_is_named_with_how_to_rebuild_it(minari_root, tmp_path, damage):
    root = tmp_path / "minari"
    shutil.copytree(minari_root / "toy", root / "toy")
    hdf5 = next((root / "toy").rglob("*.hdf5"))
    data = hdf5.read_bytes()
    hdf5.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 2])
    out = tmp_path / "run"
    result = flowbench(*run_args(out), env={**os.environ, "MINARI_DATASETS_PATH": str(root)})
    assert result.returncode == 2, result.stderr
    assert "dataset 'toy/bimodal-v0' is unreadable" in result.stderr and str(hdf5) in result.stderr
    assert "flowbench data build toy/bimodal-v0 --force" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


# -- 7. divergence ------------------------------------------------------------------------------------

def test_divergence_stops_before_any_evaluation_or_checkpoint_of_a_non_finite_agent(minari_root, tmp_path):
    # actor_lr = 1e30 takes the deterministic BC head to NaN within ten steps; losses are logged only every 50,
    # but an evaluation (and a checkpoint) is due at step 20
    out = tmp_path / "run"
    result = flowbench("run", "bc", "toy/bimodal-v0", "--profile", "cpu", "--set", "actor_lr=1e30", "--set",
                       "policy=deterministic", "--steps", "100", "--eval-every", "20", "--log-every", "50",
                       "--eval-episodes", "2", "--out", str(out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowbench: error: diverged: non-finite loss or parameters by step"), \
        result.stderr
    assert not (out / "eval.csv").exists() or pd.read_csv(out / "eval.csv").empty  # no NaN policy was evaluated
    assert not (out / "checkpoint.pt").exists()  # nor saved
    status = flowbench("status", str(out))
    assert "1 runs: 1 diverged" in status.stdout, status.stdout


def test_an_infinite_learning_rate_is_refused_before_anything_is_written(minari_root, tmp_path):
    out = tmp_path / "run"
    for setting, message in (("actor_lr=inf", "config key 'actor_lr' must be finite"),
                             ("batch_size=-5", "config key 'batch_size' must be > 0, got -5")):
        result = flowbench(*run_args(out), "--set", setting)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not out.exists()


# -- 10. a finished run is left alone -----------------------------------------------------------------

def test_rerunning_a_finished_run_changes_no_byte(minari_root, tmp_path):
    out = tmp_path / "run"
    assert flowbench(*run_args(out)).returncode == 0
    before = files_of(out)
    again = flowbench(*run_args(out), "--eval-every", "50")  # a schedule change alone starts nothing
    assert again.returncode == 0 and "step 200" in again.stdout, again.stderr
    assert files_of(out) == before


# -- leftovers of killed writers ----------------------------------------------------------------------

def test_temporaries_of_a_killed_writer_are_removed_on_the_next_start(minari_root, tmp_path):
    spec, run = interrupted_run(tmp_path, stop_at=100)
    orphans = [run / ".checkpoint.pt.tmp99999", run / ".train.csv.tmp99999"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    train(spec)
    assert not any(p.exists() for p in orphans)
    assert load_checkpoint(run / "checkpoint.pt")["agent"]["step"] == 600


def test_a_stale_record_of_this_machine_does_not_block(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "job_id": None,
                                             "since": "2026-11-27 10:00:00"}))
    with RunDirLock(run):
        assert current_holder(run).pid == os.getpid()
    assert current_holder(run) is None


# -- the fault-injection script, short form -----------------------------------------------------------

@pytest.mark.slow
def test_random_kills_lose_and_repeat_nothing(minari_root, tmp_path):
    from tests import fault_injection

    assert fault_injection.main(["--trials", "1", "--kills", "4", "--seed", "1", "--workdir", str(tmp_path)]) == 0
    assert torch.equal(load_checkpoint(tmp_path / "trial0" / "checkpoint.pt")["sampler"],
                       load_checkpoint(tmp_path / "reference" / "checkpoint.pt")["sampler"])
