"""Hyperparameter grids in suites, and the per-task selection rule of report/aggregate/plot.

One real sweep (local executor, as tests/test_sweep.py's) of a 2 × 2 FQL grid on toy/bimodal-v0 × 3 seeds
runs once for the module, the three seeds of a variant batched in one job. Its copies are then resumed and
re-submitted, and their eval.csv values set to a constructed result set that dictates which variant the rule
must pick on the tuning seeds, and which one a pick on every seed would take instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness import rundir
from harness.cli import main
from harness.grids import GridError, split_label, variant_label
from tests.helpers import flowbench, write_suite

# One worker runs this file: its tests share module fixtures (see pyproject.toml).
pytestmark = pytest.mark.xdist_group("grids")

GRID = {"alpha": [1, 3], "sampling_steps": [2, 4]}
LABELS = ["fql[alpha=1,sampling_steps=2]", "fql[alpha=1,sampling_steps=4]", "fql[alpha=3,sampling_steps=2]",
          "fql[alpha=3,sampling_steps=4]"]
SUITE = dict(algorithms={"fql": {"overrides": {**GRID, "batch_size": 32}}}, datasets={"toy/bimodal-v0": {}},
             seeds=3, steps=20, eval_every=10, eval_episodes=2, log_every=10, profile="cpu",
             resources=dict(cpus=1, mem_gb=1, time_min=10, seeds_per_job=3))
# Constructed final scores per variant and seed: on the tuning seeds 0-1 alpha=3,sampling_steps=2 is the best;
# over every seed alpha=1,sampling_steps=4 is (seed 2 alone would pick it too).
SCORES = {LABELS[0]: [10.0, 12.0, 11.0], LABELS[1]: [40.0, 38.0, 95.0], LABELS[2]: [50.0, 48.0, 20.0],
          LABELS[3]: [30.0, 30.0, 30.0]}
TUNED, OVERALL = LABELS[2], LABELS[1]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def swept(minari_root, tmp_path_factory) -> tuple[Path, Path]:
    """(the suite file, its results root), swept for real with the local executor."""
    tmp = tmp_path_factory.mktemp("grid")
    suite = write_suite(tmp / "grid.yaml", "grid", **SUITE)
    result = flowbench("sweep", str(suite), "--executor", "local", "--results", str(tmp / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    return suite, tmp / "runs" / "grid"


def copy_results(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / "grid"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".submitit", ".lock"))
    return copy


def test_variant_labels_name_safe_directories_and_read_back():
    label = variant_label("fql", {"alpha": 0.3, "sampling_steps": 10, "actor_hidden_dims": [256, 256]})
    assert label == "fql[alpha=0.3,sampling_steps=10,actor_hidden_dims=256x256]"
    assert split_label(label) == ("fql", {"alpha": "0.3", "sampling_steps": "10", "actor_hidden_dims": "256x256"})
    assert rundir.label_dir(label) == "fql@alpha=0.3,sampling_steps=10,actor_hidden_dims=256x256"
    assert rundir.dir_label(rundir.label_dir(label)) == label
    assert rundir.label_dir("fql-a3") == "fql-a3" == rundir.dir_label("fql-a3")
    # a string with an x is one value; only a list's items are joined by x
    assert variant_label("diffusion_ql", {"action_selection": "argmax"}) == "diffusion_ql[action_selection=argmax]"
    with pytest.raises(GridError, match="without 'x'"):
        variant_label("bc", {"policy": ["gmm", "mixture"]})


def test_dry_run_shows_the_grid_expansion_and_the_run_count(minari_root, tmp_path, capsys):
    suite = write_suite(tmp_path / "grid.yaml", "grid", **{**SUITE, "algorithms": {
        **SUITE["algorithms"], "bc": {}}})
    code, out, err = run_cli(capsys, "sweep", suite, "--results", tmp_path / "runs", "--dry-run")
    assert code == 0, err
    assert f"grid fql on toy/bimodal-v0: alpha 2 × sampling_steps 2 = 4 variants: {', '.join(LABELS)}" in out
    assert "suite grid: 15 runs" in out and "dry run: 15 runs to submit" in out
    assert "fql@alpha=3,sampling_steps=4/toy_bimodal-v0/seed2" in out and "bc/toy_bimodal-v0/seed0" in out
    assert not rundir.find_run_dirs(tmp_path)  # nothing submitted


def test_a_grid_expands_to_labelled_runs_with_their_configs(swept):
    _, root = swept
    dirs = sorted(str(p.parent.relative_to(root)) for p in root.rglob(rundir.SUMMARY))
    assert dirs == sorted(f"{rundir.label_dir(label)}/toy_bimodal-v0/seed{s}" for label in LABELS for s in range(3))
    for label in LABELS:
        values = {k: int(v) for k, v in split_label(label)[1].items()}
        for seed in range(3):
            config = json.loads((rundir.run_path(root, label, "toy/bimodal-v0", seed) / rundir.CONFIG).read_text())
            assert config["run"]["label"] == label
            assert config["run"]["overrides"] == {**values, "batch_size": 32}
            agent = config["identity"]["agent"]
            assert (agent["alpha"], agent["sampling_steps"], agent["batch_size"]) == (values["alpha"],
                                                                                      values["sampling_steps"], 32)
    jobs = {json.loads(p.read_text())["job_id"] for p in root.rglob(rundir.JOB)}
    assert len(jobs) == 4  # one job per variant: its three seeds batched together


def test_a_grid_resumes_and_resubmits_like_any_suite(swept, tmp_path):
    from harness.cluster.suites import load_suite
    from harness.cluster.sweep import plan

    suite, root = swept
    copy = copy_results(root, tmp_path)
    gone = rundir.run_path(copy, LABELS[0], "toy/bimodal-v0", 2)
    shutil.rmtree(gone)  # never ran: started again
    half = rundir.run_path(copy, LABELS[3], "toy/bimodal-v0", 1)
    (half / rundir.SUMMARY).unlink()  # stopped after its last checkpoint: resumed
    untouched = {p: p.stat().st_mtime_ns for p in copy.rglob(rundir.EVAL_LOG) if p.parent != half}
    actions = {p.name: p.action for p in plan(load_suite(suite, tmp_path / "runs"))}
    assert actions.pop(str(gone.relative_to(copy))) == "start" and actions.pop(str(half.relative_to(copy))) == "resume"
    assert set(actions.values()) == {"skip"} and len(actions) == 10
    again = flowbench("sweep", str(suite), "--executor", "local", "--results", str(tmp_path / "runs"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list(copy.rglob(rundir.SUMMARY))) == 12
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # finished runs were not redone
    assert json.loads((gone / rundir.CONFIG).read_text())["run"]["label"] == LABELS[0]


@pytest.fixture
def constructed(swept, tmp_path) -> Path:
    """A copy of the sweep whose final scores are SCORES."""
    copy = copy_results(swept[1], tmp_path)
    for label, scores in SCORES.items():
        for seed, score in enumerate(scores):
            path = rundir.run_path(copy, label, "toy/bimodal-v0", seed) / rundir.EVAL_LOG
            evals = pd.read_csv(path)
            evals["normalized_score"] = score
            evals.to_csv(path, index=False)
    return copy


def test_best_per_task_picks_on_the_tuning_seeds_and_reports_the_others(constructed, capsys, tmp_path):
    code, out, err = run_cli(capsys, "report", constructed, "--select", "best-per-task", "--tune-seeds", "0,1")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("| toy"))
    assert "**20.0 ± n/a** [alpha=3,sampling_steps=2]" in row  # the tuned variant's score on the held-out seed 2
    assert "on seeds 0, 1, reported on seeds 2;" in out and "inflated" not in out
    code, _, err = run_cli(capsys, "report", constructed, "--select", "best-per-task", "--tune-seeds", "0,1",
                           "--format", "csv", "--out", tmp_path / "table.csv")
    assert code == 0, err
    cell = pd.read_csv(tmp_path / "table.csv").iloc[0]
    assert (cell["algo"], cell["picked"], cell["picked_values"], cell["n"]) == ("fql", TUNED,
                                                                                "alpha=3,sampling_steps=2", 1)
    assert cell["tune_score"] == pytest.approx(49.0) and cell["mean"] == pytest.approx(20.0)
    assert "alpha=1,sampling_steps=4: 39.0" in cell["tuning_scores"]  # the unpicked stay visible
    code, out, err = run_cli(capsys, "report", constructed, "--select", "none")
    assert code == 0, err
    assert all(f" {label} " in out for label in LABELS) and "Per-task selection" not in out


def test_picking_on_the_reported_seeds_is_refused_unless_asked_for_and_then_marked(constructed, capsys):
    code, out, err = run_cli(capsys, "report", constructed, "--select", "best-per-task")
    assert code == 2 and out == ""
    assert "needs the seeds to pick on: --tune-seeds" in err and "--tune-on-reported-seeds" in err
    code, _, err = run_cli(capsys, "report", constructed, "--select", "best-per-task", "--tune-seeds", "0-2")
    assert code == 2 and "none is left to report on" in err
    code, out, err = run_cli(capsys, "report", constructed, "--select", "best-per-task", "--tune-on-reported-seeds")
    assert code == 0, err
    assert "[alpha=1,sampling_steps=4]" in out and "57.7 ± " in out  # best mean over every seed, on every seed
    assert "picked on reported seeds: the scores are inflated by the pick" in out
    assert "overstates what the picked value scores on new seeds" in out


def test_aggregate_reads_the_same_selection(constructed, capsys, tmp_path):
    code, out, err = run_cli(capsys, "aggregate", constructed, "--select", "best-per-task", "--tune-seeds", "0,1",
                             "--reps", "100", "--out", tmp_path / "agg")
    assert code == 0, err
    assert "| fql " in out and "1 × 1" in out and "reported on seeds 2" in out


def test_exported_selection_is_a_later_suites_per_dataset_overrides(constructed, capsys, tmp_path):
    from harness.cluster.suites import load_suite
    from harness.run import run_identity

    exported = tmp_path / "picked.yaml"
    code, _, err = run_cli(capsys, "report", constructed, "--select", "best-per-task", "--tune-seeds", "0,1",
                           "--export-selection", exported)
    assert code == 0, err
    entries = yaml.safe_load(exported.read_text())
    assert entries == {"fql": {"algo": "fql", "profile": "cpu", "per_dataset": {
        "toy/bimodal-v0": {"alpha": 3, "sampling_steps": 2, "batch_size": 32}}}}
    later = write_suite(tmp_path / "later.yaml", "later", **{**SUITE, "algorithms": entries, "seeds": [5]})
    run = load_suite(later, tmp_path / "later-runs").runs[0]
    picked = json.loads((rundir.run_path(constructed, TUNED, "toy/bimodal-v0", 0) / rundir.CONFIG).read_text())
    assert run.label == "fql" and run_identity(run.spec)["agent"] == picked["identity"]["agent"]


@pytest.mark.parametrize("algorithms, message", [
    ({"fql": {"overrides": {"alpha": []}}}, "algorithms.fql.overrides.alpha: an empty list is no grid"),
    ({"fql": {"overrides": {"alpha": [[1, 3]]}}}, "alpha takes one value, so its grid is a flat list"),
    ({"fql": {"overrides": {"actor_hidden_dims": [[32, 32], 64]}}}, "its grid is a list of lists"),
    ({"fql": {"overrides": {"alfa": [1, 3]}}}, "unknown config key(s) alfa for FQLConfig"),
    ({"fql": {"overrides": {"alpha": [1, 1.0]}}}, "grid values repeat"),
    ({"fql": {"overrides": {"q_agg": ["mean", "a/b"]}}}, "grid value 'a/b' cannot name a run directory"),
    ({"fql": {"per_dataset": {"toy/bimodal-v1": {"alpha": 3}}}}, "'toy/bimodal-v1' is not a dataset of this suite"),
])
def test_bad_grids_are_refused_at_dry_run_with_what_to_do(minari_root, tmp_path, capsys, algorithms, message):
    suite = write_suite(tmp_path / "bad.yaml", "bad", **{**SUITE, "algorithms": algorithms})
    code, out, err = run_cli(capsys, "sweep", suite, "--results", tmp_path / "runs", "--dry-run")
    assert code == 2 and message in err, err
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_list_valued_fields_take_a_list_as_one_value_and_a_list_of_lists_as_a_grid(minari_root, tmp_path):
    from harness.cluster.suites import load_suite

    one = write_suite(tmp_path / "one.yaml", "one", **{**SUITE, "seeds": 1, "algorithms": {
        "fql": {"overrides": {"actor_hidden_dims": [32, 32]}}}})
    assert [r.label for r in load_suite(one, tmp_path).runs] == ["fql"]
    grid = write_suite(tmp_path / "grid.yaml", "grid", **{**SUITE, "seeds": 1, "algorithms": {
        "fql": {"overrides": {"actor_hidden_dims": [[32, 32], [64]]}, "per_dataset": {"toy/bimodal-v0": {
            "alpha": [3]}}}}})
    runs = load_suite(grid, tmp_path).runs
    assert [r.label for r in runs] == ["fql[actor_hidden_dims=32x32,alpha=3]", "fql[actor_hidden_dims=64,alpha=3]"]
    assert runs[1].spec.overrides == {"actor_hidden_dims": [64], "alpha": 3}
