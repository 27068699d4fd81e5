"""Suites and sweeps against a real single-node SLURM (slurm/start-local-cluster.sh), and the local executor.

The cluster is started once per session by the ``slurm_cluster`` fixture; if it cannot start, the
tests that need it fail (they are never skipped).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cluster.suites import SuiteError, load_suite, shipped_suites
from tests.helpers import REPO, flowbench, preempt_and_wait, sacct, wait_for, write_suite

# One worker runs this file: its tests share module fixtures (see pyproject.toml).
pytestmark = pytest.mark.xdist_group("sweep")

TINY = dict(algorithms=["bc", "flow_bc"], datasets={"toy/bimodal-v0": {}}, seeds=2, steps=200, eval_every=100,
            eval_episodes=5, log_every=50, profile="cpu",
            resources=dict(gpus=1, cpus=1, mem_gb=1, time_min=10, array_parallelism=4))


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("job.json") if ".submitit" not in p.parts)


def layout(root: Path) -> set[str]:
    """Relative paths of the run files (the submitit logs folder aside)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".submitit" not in p.parts}


@pytest.fixture(scope="module")
def tiny_slurm(minari_root, slurm_cluster, tmp_path_factory):
    """The 2 algorithms × 1 dataset × 2 seeds suite, swept once on SLURM (waiting for it)."""
    tmp = tmp_path_factory.mktemp("sweep")
    suite = write_suite(tmp / "tiny.yaml", "tiny", **TINY)
    result = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                       "--results", str(tmp / "results"), "--wait")
    return suite, tmp / "results" / "tiny", result


def test_slurm_sweep_runs_one_job_array_and_every_run_finishes(tiny_slurm):
    suite, root, result = tiny_slurm
    assert result.returncode == 0, result.stdout + result.stderr
    arrays = re.findall(r"submitted job array (\d+): 4 jobs, 4 runs", result.stdout)
    assert len(arrays) == 1, result.stdout
    dirs = run_dirs(root)
    assert [str(d.relative_to(root)) for d in dirs] == [
        "bc/toy_bimodal-v0/seed0", "bc/toy_bimodal-v0/seed1", "flow_bc/toy_bimodal-v0/seed0", "flow_bc/toy_bimodal-v0/seed1"]
    job_ids = sorted(json.loads((d / "job.json").read_text())["job_id"] for d in dirs)
    assert job_ids == [f"{arrays[0]}_{i}" for i in range(4)]
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["steps"] == 200
        assert list(pd.read_csv(d / "eval.csv")["step"]) == [100, 200]
        assert list(pd.read_csv(d / "train.csv")["step"]) == [50, 100, 150, 200]
    # the array's tasks really ran under SLURM, each with one (fake) GPU and one CPU
    records = [line.split("|") for line in sacct("-X", "-j", arrays[0], "-o", "JobID,State,AllocTRES").splitlines()]
    assert sorted(r[0] for r in records) == job_ids
    assert all(r[1] == "COMPLETED" and "gres/gpu=1" in r[2] and "cpu=1" in r[2] for r in records), records

    status = flowbench("status", str(root))
    assert status.returncode == 0, status.stderr
    assert "4 runs: 4 done" in status.stdout
    for job_id in job_ids:
        assert job_id in status.stdout


def test_sweeping_a_finished_suite_again_submits_nothing(tiny_slurm):
    suite, root, _ = tiny_slurm
    before = {d: (d / "job.json").read_text() for d in run_dirs(root)}
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.csv")}
    again = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                      "--results", str(root.parent))
    assert again.returncode == 0, again.stderr
    assert "submitted job array" not in again.stdout and "0 runs to submit in 0 jobs; nothing submitted" in again.stdout
    assert again.stdout.count("finished") == 4
    assert {d: (d / "job.json").read_text() for d in run_dirs(root)} == before
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.csv")} == stamps


def test_local_executor_gives_the_same_layout_and_results(tiny_slurm, tmp_path):
    suite, slurm_root, _ = tiny_slurm
    result = flowbench("sweep", str(suite), "--executor", "local", "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    local_root = tmp_path / "tiny"
    assert layout(local_root) == layout(slurm_root)
    assert "config.json" in " ".join(layout(local_root)) and len(run_dirs(local_root)) == 4
    for d in run_dirs(slurm_root):
        rel = d.relative_to(slurm_root)
        assert json.loads((local_root / rel / "job.json").read_text())["executor"] == "local"
        # one torch thread per run on both executors: the same numbers
        pd.testing.assert_frame_equal(pd.read_csv(d / "train.csv").drop(columns="seconds"),
                                      pd.read_csv(local_root / rel / "train.csv").drop(columns="seconds"))
    assert "4 runs: 4 done" in flowbench("status", str(local_root)).stdout


def test_batched_seeds_in_one_slurm_job_equal_their_one_seed_runs(tiny_slurm, tmp_path):
    """``seeds_per_job: 2``: one array task trains both seeds of bc as one batched model, each in an ordinary
    run directory, with the numbers of the suite's one-seed jobs."""
    _, slurm_root, _ = tiny_slurm
    suite = write_suite(tmp_path / "pairs.yaml", "pairs", **{**TINY, "algorithms": ["bc"],
                                                             "resources": {**TINY["resources"], "seeds_per_job": 2}})
    result = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                       "--results", str(tmp_path), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"submitted job array \d+: 1 jobs, 2 runs", result.stdout), result.stdout
    for seed in (0, 1):
        run = tmp_path / "pairs" / "bc" / "toy_bimodal-v0" / f"seed{seed}"
        assert json.loads((run / "config.json").read_text())["trained_with_seeds"] == [0, 1]
        assert json.loads((run / "job.json").read_text())["seeds_together"] == [[f"bc/toy_bimodal-v0/seed{s}" for s in (0, 1)]]
        alone = slurm_root / "bc" / "toy_bimodal-v0" / f"seed{seed}"
        pd.testing.assert_frame_equal(pd.read_csv(run / "train.csv").drop(columns="seconds"),
                                      pd.read_csv(alone / "train.csv").drop(columns="seconds"), rtol=1e-4)
    assert "2 runs: 2 done" in flowbench("status", str(tmp_path / "pairs")).stdout


def test_usr2_requeues_the_job_and_the_runs_continue(minari_root, slurm_cluster, tmp_path):
    """A job training two seeds as one batched model is preempted; both runs resume exactly where they stopped."""
    steps, log_every = 6000, 50
    suite = write_suite(tmp_path / "long.yaml", "long", algorithms=["bc"], datasets={"toy/bimodal-v0": {}},
                        seeds=[0, 1], steps=steps, eval_every=1500, eval_episodes=5, log_every=log_every,
                        profile="cpu", resources=dict(cpus=1, mem_gb=1, time_min=10, seeds_per_job=2))
    result = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                       "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [tmp_path / "long" / "bc" / "toy_bimodal-v0" / f"seed{seed}" for seed in (0, 1)]
    run = runs[0]
    job_id = json.loads((run / "job.json").read_text())["job_id"]
    assert json.loads((runs[1] / "job.json").read_text())["job_id"] == job_id  # one job for both seeds
    preempt_and_wait(run, job_id)

    wait_for(lambda: (runs[1] / "summary.json").exists(), 60, "the second seed's summary")
    for seed_run in runs:
        resumed_from = json.loads((seed_run / "config.json").read_text())["resumed_from_step"]
        assert 500 <= resumed_from < steps, resumed_from  # continued from its checkpoint, not from 0
        train_log, eval_log = pd.read_csv(seed_run / "train.csv"), pd.read_csv(seed_run / "eval.csv")
        assert list(train_log["step"]) == list(range(log_every, steps + 1, log_every))  # none lost, none twice
        assert list(eval_log["step"]) == [1500, 3000, 4500, 6000]
        assert json.loads((seed_run / "summary.json").read_text())["steps"] == steps
    history = wait_for(lambda: (h := sacct("-D", "-X", "-j", job_id, "-o", "JobID,State")) and "COMPLETED" in h and h,
                       60, "the job to end")
    assert history.splitlines()[0].endswith("REQUEUED"), history  # the first allocation was requeued
    log = Path(json.loads((run / "job.json").read_text())["stdout"].replace("%j", job_id))
    assert "requeueing" in log.read_text()


def squeue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.strip()


def test_usr2_in_a_jobs_first_second_requeues_it_and_never_fails_it(minari_root, slurm_cluster, tmp_path):
    """SIGUSR2 while the job's Python is still starting (before submitit's handler exists) used to kill it
    (FAILED); now it is a preemption: requeued, and the run finishes."""
    suite = write_suite(tmp_path / "early.yaml", "early", algorithms=["bc"], datasets={"toy/bimodal-v0": {}}, seeds=[0],
                        steps=300, eval_every=150, eval_episodes=3, log_every=50, profile="cpu",
                        resources=dict(cpus=1, mem_gb=1, time_min=30, max_timeouts=7))
    result = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                       "--results", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "early" / "bc" / "toy_bimodal-v0" / "seed0"
    job = json.loads((run / "job.json").read_text())
    log = Path(job["stdout"].replace("%j", job["job_id"]))
    # submitit logs "Loading pickle" as its Python starts; then comes the import of torch, gymnasium and
    # MuJoCo and the unpickling of the job, seconds in which no handler of submitit's exists yet
    wait_for(lambda: log.exists() and "Loading pickle" in log.read_text(), 120, "the job's Python to start", poll=0.01)
    for _ in range(6):
        subprocess.run(["scancel", "--signal=USR2", job["job_id"]], capture_output=True, timeout=30)
        time.sleep(0.2)
    wait_for(lambda: (run / "summary.json").exists(), 300, "the requeued run to finish")
    history = wait_for(lambda: (h := sacct("-D", "-X", "-j", job["job_id"], "-o", "JobID,State")) and "COMPLETED" in h
                       and h, 60, "the job to end")
    assert "FAILED" not in history and "REQUEUED" in history, history
    assert list(pd.read_csv(run / "train.csv")["step"]) == [50, 100, 150, 200, 250, 300]
    import submitit  # the time-out cap is the suite's max_timeouts, not submitit's 3

    submission = submitit.SlurmJob(Path(job["folder"]), job["job_id"]).submission()
    assert submission._timeout_countdown == 7


def test_a_usr2_after_the_last_run_does_not_kill_the_finished_job():
    """A USR2 still in flight when the runs are done (the test above sends six) reached the job's Python in its
    shutdown, when Python has put the default action (terminate) back: the finished job's Python died of it
    ("task 0: User defined signal 2") and the job never ended COMPLETED. The job now holds the signal once its
    runs are done. Here the process restores the default action itself, as the shutdown does, and signals itself."""
    code = ("import os, signal\n"
            "from harness.cluster.jobs import RunJob\n"
            "RunJob([])()\n"
            "signal.signal(signal.SIGUSR2, signal.SIG_DFL)\n"
            "os.kill(os.getpid(), signal.SIGUSR2)\n"
            "print('exited normally', flush=True)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "exited normally" in result.stdout, (result.returncode, result.stderr)


def test_a_lock_left_by_another_nodes_job_counts_while_that_job_runs(minari_root, slurm_cluster, tmp_path):
    """Where flock is per node, the recorded holder decides: its SLURM job still running → refused; ended → taken over."""
    holder = subprocess.run(["sbatch", "--parsable", "-p", "debug", "-o", str(tmp_path / "holder.out"), "--wrap",
                             "sleep 120"], capture_output=True, text=True, timeout=30, check=True).stdout.strip().split(";")[0]
    try:
        wait_for(lambda: squeue_state(holder) == "RUNNING", 300, "the holder job to start")
        run = tmp_path / "run"
        run.mkdir()
        (run / ".lock").write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "job_id": holder,
                                               "since": "2026-11-27 10:00:00"}))
        args = ["run", "bc", "toy/bimodal-v0", "--steps", "20", "--eval-every", "10", "--eval-episodes", "2",
                "--log-every", "10", "--profile", "cpu", "--out", str(run)]
        refused = flowbench(*args)
        assert refused.returncode == 2, refused.stderr
        assert f"pid 4242 on node-elsewhere, SLURM job {holder}" in refused.stderr
        assert "Traceback" not in refused.stderr and not (run / "config.json").exists()
    finally:
        subprocess.run(["scancel", holder], timeout=30)
    wait_for(lambda: not squeue_state(holder), 60, "the holder job to end")
    taken = flowbench(*args)
    assert taken.returncode == 0, taken.stderr
    assert (run / "summary.json").exists()


def test_failing_run_shows_its_error_in_status(minari_root, slurm_cluster, tmp_path):
    # a CUDA run whose job asks for a (fake) GPU passes every check here, and fails on the node: no CUDA there
    suite = write_suite(tmp_path / "broken.yaml", "broken", algorithms=["fql"], device="cuda",
                        datasets={"toy/bimodal-v0": {}}, seeds=[0], steps=50, eval_every=50, eval_episodes=2,
                        profile="cpu", resources=dict(gpus=1, cpus=1, mem_gb=1, time_min=5))
    result = flowbench("sweep", str(suite), "--executor", "slurm", "--cluster-profile", "local-test",
                       "--results", str(tmp_path), "--wait")
    assert result.returncode == 1, result.stdout + result.stderr  # it waited for a job that failed
    assert "fql/toy_bimodal-v0/seed0: failed: ValueError: device 'cuda' asked for, but CUDA is not available" \
        in result.stdout
    status = flowbench("status", str(tmp_path / "broken"))
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("fql/toy_bimodal-v0/seed0"))
    run = tmp_path / "broken" / "fql" / "toy_bimodal-v0" / "seed0"
    assert " failed " in row and json.loads((run / "job.json").read_text())["job_id"] in row
    assert "CUDA is not available here" in status.stdout
    assert "Traceback" in (run / "error.txt").read_text()
    # a sweep of it again submits it again (after an error), and a dry run says so and submits nothing
    dry = flowbench("sweep", str(suite), "--executor", "slurm", "--results", str(tmp_path), "--dry-run")
    assert dry.returncode == 0 and "after an error" in dry.stdout and "submitted job array" not in dry.stdout


def test_diverging_run_is_diverged_in_status_and_left_alone(minari_root, tmp_path):
    # actor_lr = 1e30 takes the deterministic BC head to NaN within ten steps: the run stops with FloatingPointError
    suite = write_suite(tmp_path / "nan.yaml", "nan", datasets={"toy/bimodal-v0": {}}, seeds=[0], steps=100,
                        algorithms={"bc": {"overrides": {"actor_lr": 1e30, "policy": "deterministic"}}},
                        eval_every=100, eval_episodes=2, log_every=10, profile="cpu", resources=dict(cpus=1))
    result = flowbench("sweep", str(suite), "--results", str(tmp_path))
    # every job failed: the sweep says which run, and why, and exits non-zero
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 1 runs did not finish" in result.stdout and "bc/toy_bimodal-v0/seed0: diverged" in result.stdout
    status = flowbench("status", str(tmp_path / "nan"))
    assert "1 runs: 1 diverged" in status.stdout and "non-finite loss or parameters by step 10" in status.stdout, \
        status.stdout
    again = flowbench("sweep", str(suite), "--results", str(tmp_path), "--dry-run")
    assert "diverged; delete the run directory" in again.stdout and "0 runs to submit" in again.stdout


@pytest.mark.parametrize("fields, message", [
    (dict(algorithms=["nope"]), "unknown algorithm 'nope'; valid choices: bc"),
    (dict(stepz=5), "unknown field(s) 'stepz'; valid fields: name"),
    (dict(algorithms={"bc": {"overrides": {"lr2": 1}}}), "valid keys: reward_transform, policy"),
    (dict(algorithms={"bc": {"profile": "huge"}}), "valid profiles: cpu"),
    (dict(datasets={"toy/nothing-v0": {}}), "flowbench builds: "),
    (dict(datasets={"toy/bimodal-v0": {"stepz": 3}}), "unknown field(s) 'stepz'; valid fields: steps"),
    (dict(seeds="two"), "seeds must be a count or a list"),
    (dict(resources={"gpu": 1}), "valid fields: gpus, cpus"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(normalize_obs="no"), "normalize_obs must be true or false, got 'no'"),
    (dict(algorithms={"bc": {"overrides": {"batch_size": -5}}}), "config key 'batch_size' must be > 0, got -5"),
    (dict(algorithms={"bc": {"overrides": {"actor_lr": float("inf")}}}), "config key 'actor_lr' must be finite"),
    (dict(device="gpu"), "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    (dict(device="cuda"), "CUDA is not available here"),  # the local executor runs the jobs on this machine
    (dict(algorithms={"fql": {"overrides": {"q_agg": "median"}}}), "config key 'q_agg' must be one of mean, min"),
    (dict(algorithms={"fql": {"overrides": {"flow_steps": 3}}}), "config key 'flow_steps' was renamed to 'sampling_steps'"),
    (dict(name="single"), "name 'single' is taken: runs/single/ holds `flowbench run`'s runs"),
    (dict(algorithms=["diffusion_ql"], online_steps=10), "diffusion_ql cannot fine-tune online: actor_lr_schedule"),
    (dict(online_steps=-1), "online_steps must be an integer >= 0"),
    # a top-level value that every dataset overrides is still checked: it was written, so it is meant
    (dict(eval_every="abc", datasets={"toy/bimodal-v0": {"eval_every": 100}}), "suite bad.yaml: eval_every must be"),
    (dict(steps=0, datasets={"toy/bimodal-v0": {"steps": 200}}), "suite bad.yaml: steps must be an integer >= 1"),
    # a rule between two fields (the config's validate()), not only each field's range
    (dict(algorithms={"cac": {"overrides": {"initial_noise_levels": 200}}}),
     "CAC needs 2 <= initial_noise_levels <= noise_levels"),
])
def test_bad_suites_exit_2_and_write_nothing(minari_root, tmp_path, fields, message):
    fields = {**TINY, **fields}
    suite = write_suite(tmp_path / "bad.yaml", fields.pop("name", "bad"), **fields)
    result = flowbench("sweep", str(suite), "--results", str(tmp_path / "results"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["sweep", "no-such-suite", "--dry-run"], "shipped suites: d4rl-adroit"),
    (["sweep", "demo", "--cluster-profile", "nope", "--dry-run"], "shipped profiles: example-gpu, local-test"),
    (["sweep", "demo", "--executor", "pbs", "--dry-run"], "invalid choice: 'pbs'"),
    (["status", "/nonexistent/results"], "no directory"),
])
def test_bad_sweep_and_status_arguments_exit_2(minari_root, args, message):
    result = flowbench(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_shipped_suites_outside_a_checkout_fail_naming_the_install(minari_root, tmp_path, monkeypatch, capsys):
    """A plain (non-editable) install copies only the Python packages: asking for a shipped suite or profile then
    exits 2 saying how to install, while a suite given by its path still runs."""
    from harness.cli import main
    from harness.cluster import suites, sweep

    monkeypatch.setattr(suites, "SUITES_DIR", tmp_path / "site-packages" / "slurm" / "suites")
    monkeypatch.setattr(sweep, "PROFILES_DIR", tmp_path / "site-packages" / "slurm" / "profiles")
    for args in (["sweep", "demo", "--dry-run"],
                 ["sweep", str(REPO / "slurm" / "suites" / "demo.yaml"), "--cluster-profile", "local-test",
                  "--dry-run"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "is missing): install flowbench from a checkout with `pip install -e .`" in err, err
    assert main(["sweep", str(REPO / "slurm" / "suites" / "demo.yaml"), "--results", str(tmp_path / "r"),
                 "--dry-run"]) == 0


def test_shipped_suites_load_and_dry_run_submits_nothing(minari_root, tmp_path):
    assert set(shipped_suites()) >= {"demo", "d4rl-antmaze", "d4rl-adroit", "minari-mujoco", "ogbench-manipulation"}
    sizes = {name: len(load_suite(name, tmp_path).runs) for name in shipped_suites()}
    assert sizes["d4rl-antmaze"] == 8 * 6 * 8 and sizes["ogbench-manipulation"] == 8 * 25 * 8
    antmaze = load_suite("d4rl-antmaze", tmp_path)
    assert {(r.spec.steps, r.spec.eval_every, r.spec.eval_episodes) for r in antmaze.runs} == {(500_000, 100_000, 50)}
    assert {r.spec.seed for r in antmaze.runs} == set(range(8))
    ogbench = load_suite("ogbench-manipulation", tmp_path)
    assert {(r.spec.steps, r.spec.eval_every, r.spec.eval_episodes) for r in ogbench.runs} == {(1_000_000, 100_000, 50)}
    result = flowbench("sweep", "d4rl-antmaze", "--dry-run", "--executor", "slurm", "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "fql/D4RL_antmaze_large-play-v1/seed7" in result.stdout
    assert "dry run: 384 runs to submit in 48 jobs" in result.stdout  # seeds_per_job: 8
    assert not (tmp_path / "d4rl-antmaze").exists()


def test_demo_suite_mirrors_flowbench_demo(minari_root, tmp_path):
    from algos import resolve_config
    from harness.demo import DEMO_ALGOS, DEMO_LOG_EVERY, DEMO_SEEDS, DEMO_TASKS

    suite = load_suite("demo", tmp_path)
    tasks = {t.dataset: t for t in DEMO_TASKS}
    assert {r.spec.algo for r in suite.runs} == set(DEMO_ALGOS)
    assert {r.spec.seed for r in suite.runs} == set(DEMO_SEEDS)
    assert len(suite.runs) == len(DEMO_ALGOS) * len(DEMO_TASKS) * len(DEMO_SEEDS)
    assert suite.resources.seeds_per_job == len(DEMO_SEEDS)
    for run in suite.runs:
        task = tasks[run.spec.dataset]
        assert (run.spec.steps, run.spec.eval_every, run.spec.eval_episodes, run.transitions) == \
               (task.steps, task.eval_every, task.eval_episodes, task.transitions)
        assert run.spec.profile == "cpu" and run.spec.log_every == DEMO_LOG_EVERY
        resolved = [resolve_config(run.spec.algo, overrides, "cpu", run.spec.dataset)
                    for overrides in (run.spec.overrides, task.overrides.get(run.spec.algo, {}))]
        assert resolved[0] == resolved[1]


def test_packed_jobs_and_profile_resources(minari_root, tmp_path):
    from harness.cluster.sweep import job_groups, load_profile, plan

    suite = load_suite(write_suite(tmp_path / "packed.yaml", "packed", **{**TINY, "resources": {"runs_per_job": 3}}),
                       tmp_path)
    groups = job_groups(plan(suite), suite.resources.runs_per_job)
    assert [[len(unit) for unit in g] for g in groups] == [[1, 1, 1], [1]]
    # seeds_per_job: the seeds of one algorithm and dataset train together, units never mix algorithms
    batched = load_suite(write_suite(tmp_path / "batched.yaml", "batched",
                                     **{**TINY, "seeds": 3, "resources": {"runs_per_job": 1, "seeds_per_job": 2}}),
                         tmp_path)
    units = [[(p.label, p.spec.seed) for p in unit] for g in job_groups(plan(batched), 1, 2) for unit in g]
    assert units == [[("bc", 0), ("bc", 1)], [("bc", 2)], [("flow_bc", 0), ("flow_bc", 1)], [("flow_bc", 2)]]
    profile = load_profile("local-test")
    assert profile.partition == "debug" and profile.resources["cpus"] == 1
    (tmp_path / "p.yaml").write_text("partitionn: gpu\n")
    with pytest.raises(SuiteError, match="unknown field.*'partitionn'.*valid fields: description, partition"):
        load_profile(str(tmp_path / "p.yaml"))
