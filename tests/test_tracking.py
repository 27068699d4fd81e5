"""Experiment trackers with the real libraries: TensorBoard's event files read back with TensorBoard's own readers,
W&B's offline run files with W&B's own (``wandb leet inspect --json``), after kills, requeues and failures."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cluster.suites import SuiteError, load_suite
from harness.cli import main
from harness.files import load_checkpoint
from harness.run import RunSpec, train
from harness.tracking import TrackerSettings, event_files, open_tracker
from tests.helpers import flowbench, preempt_and_wait, sacct, start_flowbench, wait_for, write_suite

RUN = ["bc", "toy/bimodal-v0", "--profile", "cpu", "--eval-every", "100", "--eval-episodes", "2", "--log-every", "20",
       "--checkpoint-every", "100"]
PROGRESS = "bc toy/bimodal-v0 "  # the start of the runs' progress lines on stderr


def other_lines(stderr: str) -> list[str]:
    """stderr without the progress lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(PROGRESS)]


def csv_values(run: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per CSV (train, eval) and numeric column: (step, value) of each row, as the file spells them (empty cells
    and text left out; "nan" is a value)."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for kind in ("train", "eval"):
        columns = out.setdefault(kind, {})
        with (run / f"{kind}.csv").open(newline="") as f:
            for row in csv.DictReader(f):
                for column, text in row.items():
                    try:
                        value = float(text)
                    except ValueError:
                        continue
                    if column != "step":
                        columns.setdefault(column, []).append((int(row["step"]), value))
    return out


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def kill_after_a_checkpoint(args: list[str], run: Path) -> int:
    """Starts ``flowbench run ARGS``, SIGKILLs it once ``run`` has train rows three logging intervals past its
    latest checkpoint; returns that checkpoint's step (where the resumed run starts)."""
    proc = start_flowbench(*args)

    def past_a_checkpoint() -> int | None:
        try:
            step = int(load_checkpoint(run / "checkpoint.pt")["agent"]["step"])
            return step if pd.read_csv(run / "train.csv")["step"].max() >= step + 60 else None
        except Exception:  # noqa: BLE001 — not written yet
            return None

    try:
        wait_for(past_a_checkpoint, 180, "rows past a checkpoint", poll=0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    return int(load_checkpoint(run / "checkpoint.pt")["agent"]["step"])  # a later one may have landed meanwhile


# -- TensorBoard -------------------------------------------------------------------------------------

def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: its EventAccumulator over the run's log dir."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def tensorboard_event_steps(log_dir: Path) -> Counter:
    """What is on disk: (tag, step) of every summary value in every event file (TensorBoard's EventFileLoader)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return Counter((value.tag, event.step) for path in event_files(log_dir)
                   for event in EventFileLoader(str(path)).Load() for value in event.summary.value)


def check_tensorboard_run(run: Path, steps: int, every: dict[str, int] = {"train": 20, "eval": 100}) -> None:
    """The event files give exactly the CSV files' values at their steps (float32, as TensorBoard stores them),
    each (tag, step) once on disk; the config at step 0, the summary at the last step."""
    log_dir = run / "tensorboard"
    scalars = tensorboard_scalars(log_dir)
    on_disk = tensorboard_event_steps(log_dir)
    tags = set()
    for kind, columns in csv_values(run).items():
        assert [s for s, _ in columns["seconds"]] == list(range(every[kind], steps + 1, every[kind]))
        for column, rows in columns.items():
            tag = f"{kind}/{column}"
            tags.add(tag)
            expected = [(s, float(np.float32(v))) for s, v in rows]
            got = scalars[tag]
            assert [s for s, _ in got] == [s for s, _ in expected], tag
            assert all(same(g, e) for (_, g), (_, e) in zip(got, expected)), (tag, got, expected)
            assert all(on_disk[(tag, s)] == 1 for s, _ in expected), tag  # once in the files, not only on screen
    assert set(scalars) == tags  # nothing else
    assert on_disk[("config/text_summary", 0)] == 1 and on_disk[("summary/text_summary", steps)] == 1


@pytest.mark.slow
def test_tensorboard_after_sigkill_and_resume_holds_each_csv_row_once_per_seed(minari_root, tmp_path):
    """Two seeds batched in one process, killed with rows past their checkpoint on disk, resumed: each seed's
    event files give exactly its train.csv and eval.csv values at their steps, each step once."""
    args = ["run", *RUN, "--seeds", "0,1", "--out", str(tmp_path / "seed{seed}"), "--tracker", "tensorboard"]
    runs = [tmp_path / "seed0", tmp_path / "seed1"]
    resumed_from = kill_after_a_checkpoint([*args, "--steps", "100000"], runs[0])
    assert resumed_from < 300
    # the situation to repair: the killed attempt's events past the checkpoint are on disk
    assert max(step for _, step in tensorboard_event_steps(runs[0] / "tensorboard")) > resumed_from
    resumed = flowbench(*args, "--steps", "300")
    assert resumed.returncode == 0, resumed.stderr
    assert other_lines(resumed.stderr) == [], resumed.stderr
    for run in runs:
        check_tensorboard_run(run, 300)
    seed0, seed1 = (tensorboard_scalars(run / "tensorboard")["train/actor_loss"] for run in runs)
    assert seed0 != seed1  # each seed's own rows


def test_a_tensorboard_tracker_failing_mid_run_costs_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    tracker = open_tracker(TrackerSettings(kind="tensorboard"), run, {"run": {}}, None)
    tracker.log("train", 10, {"step": 10, "loss": "0.5"})
    tracker.before_checkpoint(10)
    [events] = event_files(run / "tensorboard")
    with read_only(events):
        for step in (20, 30, 40):
            tracker.log("train", step, {"step": step, "loss": "0.25"})
            tracker.before_checkpoint(step)
            tracker.after_checkpoint(step)
        tracker.finish({"steps": 40})
        tracker.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"flowbench: warning: tensorboard tracker of {run} switched off"), err
    assert tensorboard_scalars(run / "tensorboard") == {"train/loss": [(10, 0.5)]}


class read_only:
    """``path`` made unwritable, also for root (the immutable attribute), until the block ends."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.mode = self.path.stat().st_mode
        self.path.chmod(0o555 if self.path.is_dir() else 0o444)
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(self.path)], check=True)
        return self.path

    def __exit__(self, *exc) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)
        self.path.chmod(self.mode)


# -- Weights & Biases --------------------------------------------------------------------------------

def wandb_records(run: Path) -> list[list[dict]]:
    """The records of each offline W&B run file of ``run``, oldest first, read by W&B's own reader."""
    files = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    out = []
    for path in files:
        result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        out.append([json.loads(line) for line in result.stdout.splitlines() if line.strip()])
    return out


def history_steps(records: list[dict]) -> list[int]:
    return [int(r["history"]["step"]["num"]) for r in records if r["type"] == "history"]


def check_wandb_run(run: Path, steps: int, attempts: int, group: str, run_id: str | None = None) -> list[list[dict]]:
    """Every attempt's file is one W&B run (the id kept in the run directory), whose history holds each CSV row
    once, at its step, with the CSV's values; the config is config.json's."""
    files = wandb_records(run)
    assert len(files) == attempts
    run_id = run_id or json.loads((run / "tracker.json").read_text())["wandb_run_id"]
    history: dict[int, dict] = {}
    for records in files:
        if len(records) == 1:  # the header alone: an attempt killed before W&B wrote its first block
            continue
        [start] = [r["run"] for r in records if r["type"] == "run"]
        assert start["run_id"] == run_id and start["run_group"] == group and start["job_type"] == "bc"
        config = json.loads((run / "config.json").read_text())
        assert start["config"]["update"]["identity"] == config["identity"]
        assert start["config"]["update"]["config_hash"] == config["config_hash"]
        for r in (r for r in records if r["type"] == "history"):
            step = int(r["history"]["step"]["num"])
            assert step not in history, f"step {step} logged twice"
            history[step] = r["history"]["item"]
    expected: dict[int, dict] = {}
    for kind, columns in csv_values(run).items():
        for column, rows in columns.items():
            for step, value in rows:
                expected.setdefault(step, {})[f"{kind}/{column}"] = value
    assert sorted(history) == sorted(expected) and max(expected) == steps
    for step, values in expected.items():
        for key, value in values.items():
            got = history[step][key]
            assert same(float(got), value), (step, key, got, value)  # "NaN" for a NaN
    return files


@pytest.mark.slow
def test_wandb_offline_after_sigkill_and_resume_is_one_run_per_seed_with_each_row_once(minari_root, tmp_path):
    """A row every step: W&B writes its log in 32 KiB blocks, so the killed attempt's file holds some rows (its
    completed blocks: the 100 rows up to the first checkpoint fill more than two) and loses the rest; the resumed
    attempt sends exactly the ones it lost."""
    args = ["run", *RUN, "--log-every", "1", "--seeds", "0,1", "--out", str(tmp_path / "seed{seed}"),
            "--tracker", "wandb", "--wandb-mode", "offline", "--wandb-tags", "kill-test"]
    runs = [tmp_path / "seed0", tmp_path / "seed1"]
    resumed_from = kill_after_a_checkpoint([*args, "--steps", "100000"], runs[0])
    assert resumed_from < 300
    [killed] = wandb_records(runs[0])
    assert 0 < max(history_steps(killed), default=0) < resumed_from  # some rows were written, some lost
    resumed = flowbench(*args, "--steps", "300")
    assert resumed.returncode == 0, resumed.stderr
    assert other_lines(resumed.stderr) == [], resumed.stderr
    ids = set()
    for seed, run in enumerate(runs):
        files = check_wandb_run(run, 300, attempts=2, group="bc/toy/bimodal-v0")
        ids.add(json.loads((run / "tracker.json").read_text())["wandb_run_id"])
        [start] = [r["run"] for r in files[-1] if r["type"] == "run"]
        assert set(start["tags"]) == {"bc", "toy/bimodal-v0", f"seed{seed}", "kill-test"}
        summary = [r["summary"]["update"] for r in files[-1] if r["type"] == "summary"]
        assert any(u.get("summary/steps") == 300 for u in summary), summary
    assert len(ids) == 2  # one W&B run per seed


def spec(out: Path, steps: int, tracker: TrackerSettings = TrackerSettings(), eval_every: int = 100) -> RunSpec:
    return RunSpec(algo="bc", dataset="toy/bimodal-v0", profile="cpu", steps=steps, eval_every=eval_every,
                   eval_episodes=2, log_every=20, out=str(out), tracker=tracker)


def test_an_unreachable_tracker_costs_the_run_one_warning_line(minari_root, tmp_path, capfd, monkeypatch):
    """W&B online with no network, and a TensorBoard log dir that cannot be written: the runs finish with every
    CSV row, and each says so in one line."""
    online = tmp_path / "online"
    for name, value in (("WANDB_API_KEY", "a" * 40), ("WANDB_BASE_URL", "http://127.0.0.1:9"),
                        ("WANDB_INIT_TIMEOUT", "1")):
        monkeypatch.setenv(name, value)
    train(spec(online, 40, TrackerSettings(kind="wandb", mode="online"), eval_every=40), progress="off")
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"flowbench: warning: wandb tracker of {online} switched off (CommError: "), line
    assert list(pd.read_csv(online / "train.csv")["step"]) == [20, 40]

    read_only_dir = tmp_path / "read-only"
    train(spec(read_only_dir, 40, eval_every=40), progress="off")
    (read_only_dir / "tensorboard").mkdir()
    capfd.readouterr()
    with read_only(read_only_dir / "tensorboard"):
        train(spec(read_only_dir, 80, TrackerSettings(kind="tensorboard"), eval_every=40), progress="off")
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"flowbench: warning: tensorboard tracker of {read_only_dir} switched off ("), line
    assert list(pd.read_csv(read_only_dir / "train.csv")["step"]) == [20, 40, 60, 80]
    assert (read_only_dir / "summary.json").exists()


@pytest.mark.parametrize("name", ["wandb", "tensorboard"])
def test_a_missing_tracker_package_names_the_extra_before_anything_is_written(minari_root, tmp_path, capsys,
                                                                               monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # Python's own way of making `import NAME` fail
    assert main(["run", *RUN, "--steps", "20", "--out", str(tmp_path / "run"), "--tracker", name]) == 2
    err = capsys.readouterr().err
    assert f"the {name} tracker needs the {name} package, which is not installed" in err, err
    assert f'pip install "flowbench[{name}]"' in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_export_replays_a_run_made_without_a_tracker(minari_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(spec(run, 200), progress="off")
    assert main(["export", str(tmp_path), "--to", "tensorboard"]) == 0
    check_tensorboard_run(run, 200)
    assert main(["export", str(run), "--to", "wandb", "--wandb-mode", "offline"]) == 0
    assert f"{run}: 12 rows -> wandb" in capsys.readouterr().out  # 10 train rows, 2 evaluations
    [path] = (run / "wandb").glob("offline-run-*")
    check_wandb_run(run, 200, attempts=1, group="bc/toy/bimodal-v0", run_id=path.name.rsplit("-", 1)[1])
    assert not (run / "tracker.json").exists()  # the run's own (live) W&B run is not the export's


# -- suites ------------------------------------------------------------------------------------------

SUITE = dict(algorithms=["bc"], datasets={"toy/bimodal-v0": {}}, seeds=[0], steps=100, eval_every=50, eval_episodes=2,
             profile="cpu")


def test_a_suites_tracker_reaches_its_runs_and_every_value_is_checked(minari_root, tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.yaml", "tracked", **SUITE, tracker={
        "kind": "wandb", "project": "p", "entity": "e", "mode": "offline", "tags": ["a", "b"]}), results=tmp_path)
    assert [run.spec.tracker for run in suite.runs] == [
        TrackerSettings(kind="wandb", project="p", entity="e", mode="offline", tags=("a", "b"), suite="tracked")]
    assert load_suite(write_suite(tmp_path / "t.yaml", "t", **SUITE, tracker="tensorboard"),
                      results=tmp_path).runs[0].spec.tracker.kind == "tensorboard"
    for tracker, message in (
            ({"kind": "mlflow"}, "unknown tracker 'mlflow'; valid choices: none, tensorboard, wandb"),
            ({"kind": "wandb", "mode": "sometimes"}, "W&B mode must be one of online, offline, got 'sometimes'"),
            ({"kind": "wandb", "team": "x"}, "unknown field(s) 'team'; valid fields: kind, project, entity, mode, tags"),
            ({"kind": "tensorboard", "project": "p"}, "project applies to the wandb tracker only"),
            ({"kind": "wandb", "tags": [1]}, "tags must be a list of non-empty strings, got [1]"),
            ({"kind": "wandb", "project": 3}, "tracker.project must be a string, got 3")):
        with pytest.raises(SuiteError, match=None) as error:
            load_suite(write_suite(tmp_path / "bad.yaml", "bad", **SUITE, tracker=tracker), results=tmp_path)
        assert message in str(error.value) and "suite bad.yaml: tracker" in str(error.value)
    dry = flowbench("sweep", str(tmp_path / "bad.yaml"), "--dry-run", "--results", str(tmp_path))
    assert dry.returncode == 2 and "tracker.project must be a string" in dry.stderr, dry.stderr


@pytest.mark.xdist_group("sweep")
def test_a_slurm_requeued_run_is_one_wandb_run_with_each_row_once(minari_root, slurm_cluster, tmp_path):
    steps = 3000
    suite = write_suite(tmp_path / "req.yaml", "req", algorithms=["bc"], datasets={"toy/bimodal-v0": {}}, seeds=[0],
                        steps=steps, eval_every=1000, eval_episodes=2, log_every=50, profile="cpu",
                        resources=dict(cpus=1, mem_gb=1, time_min=10),
                        tracker={"kind": "wandb", "mode": "offline"})
    result = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                       "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "req" / "bc" / "toy_bimodal-v0" / "seed0"
    job_id = json.loads((run / "job.json").read_text())["job_id"]
    preempt_and_wait(run, job_id)
    history = wait_for(lambda: (h := sacct("-D", "-X", "-j", job_id, "-o", "JobID,State")) and "COMPLETED" in h and h,
                       60, "the job to end")
    assert history.splitlines()[0].endswith("REQUEUED"), history
    assert 500 <= json.loads((run / "config.json").read_text())["resumed_from_step"] < steps
    files = check_wandb_run(run, steps, attempts=2, group="req/bc/toy/bimodal-v0")
    first_exit = [r["exit"] for r in files[0] if r["type"] == "exit"]
    assert first_exit and first_exit[-1].get("exit_code") == 1  # the preempted attempt did not end as finished
