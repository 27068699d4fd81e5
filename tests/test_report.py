"""Tables, aggregates and plots from a results directory made by a real small sweep.

One sweep (bc and flow_bc × toy/bimodal-v0 and two PointMaze datasets × 3 seeds, 200 steps, two
evaluations) runs once for the module, in this process (submitit's debug executor). A copy of it is
then damaged the way real sweeps are (a seed never run, runs without summary.json, a dataset an
algorithm never ran on) to check that incomplete results are shown as such. Expected numbers are
computed here straight from the runs' eval.csv files with pandas, and with rliable called directly.

A second small sweep carries the OGBench manipulation suite's reporting protocol (success rate, mean
of the last three evaluations); its eval.csv values are then set so that every other reading of the
same runs (last evaluation, normalised score) gives another number.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from harness.cli import main

# One worker runs this file: its tests share module fixtures (see pyproject.toml).
pytestmark = pytest.mark.xdist_group("report")

SEEDS = (0, 1, 2)
SUITE = dict(name="paper", algorithms=["bc", "flow_bc"], seeds=len(SEEDS), steps=200, eval_every=100, log_every=100,
             eval_episodes=1, profile="cpu", resources=dict(cpus=1, seeds_per_job=len(SEEDS)),
             datasets={"toy/bimodal-v0": {"eval_episodes": 10}, "local/pointmaze/umaze-v0": {},
                       "local/pointmaze/medium-v0": {"transitions": 2000}})
DOMAINS = {"toy/bimodal-v0": "toy", "local/pointmaze/umaze-v0": "pointmaze", "local/pointmaze/medium-v0": "pointmaze"}


@pytest.fixture(scope="module")
def results(minari_root, tmp_path_factory) -> Path:
    """The suite's results directory, swept for real."""
    from harness.cluster.suites import load_suite
    from harness.cluster.sweep import sweep

    tmp = tmp_path_factory.mktemp("paper")
    (tmp / "paper.yaml").write_text(yaml.safe_dump(SUITE))
    suite = load_suite(tmp / "paper.yaml", tmp / "runs")
    sweep(suite, executor="debug", echo=lambda line: None)
    assert len(list(suite.root.rglob("summary.json"))) == 2 * 3 * len(SEEDS)
    return suite.root


@pytest.fixture(scope="module")
def damaged(results, tmp_path_factory) -> Path:
    """A copy with a seed never run, unfinished runs, and a dataset × algorithm without runs."""
    root = tmp_path_factory.mktemp("damaged") / "paper"
    shutil.copytree(results, root)
    shutil.rmtree(root / "flow_bc/toy_bimodal-v0/seed2")  # never run
    (root / "bc/toy_bimodal-v0/seed1/summary.json").unlink()  # unfinished
    (root / "bc/local_pointmaze_medium-v0/seed0/summary.json").unlink()
    for seed in SEEDS:  # every run of the cell unfinished
        (root / f"bc/local_pointmaze_umaze-v0/seed{seed}/summary.json").unlink()
    shutil.rmtree(root / "flow_bc/local_pointmaze_umaze-v0")  # no runs at all
    return root


def eval_files(root: Path) -> pd.DataFrame:
    """Every run's eval.csv straight from disk, with algo, dataset, seed and finished read off the layout."""
    frames = []
    for path in sorted(root.glob("*/*/seed*/eval.csv")):
        algo, dataset_dir, seed_dir = path.parts[-4:-1]
        dataset = next(d for d in DOMAINS if d.replace("/", "_") == dataset_dir)
        frames.append(pd.read_csv(path).assign(algo=algo, dataset=dataset, seed=int(seed_dir[4:]),
                                               finished=(path.parent / "summary.json").exists()))
    return pd.concat(frames, ignore_index=True)


def direct_finals(root: Path, last: int = 1, metric: str = "normalized_score") -> pd.DataFrame:
    """Final scores of finished runs: the mean of the last ``last`` evaluations of ``metric`` (success in %)."""
    evals = eval_files(root)
    evals = evals[evals["finished"]].sort_values("step")
    if metric == "success_rate":
        evals[metric] = 100 * evals[metric]
    return evals.groupby(["algo", "dataset", "seed"], as_index=False)[metric].agg(lambda s: s.tail(last).mean())


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def report_csv(capsys, root: Path, tmp_path: Path, *options: str) -> pd.DataFrame:
    code, _, err = run_cli(capsys, "report", root, "--format", "csv", "--out", tmp_path / "table.csv", *options)
    assert code == 0, err
    return pd.read_csv(tmp_path / "table.csv")


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """dataset (or 'DOMAIN average') -> algo -> cell text, from a pipe table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows, domain = {}, None
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        domain = cells[0] or domain
        name = f"{domain} average" if cells[1] == "*average*" else cells[1]
        rows[name] = dict(zip(header[2:], cells[2:]))
    return rows


def test_collect_writes_every_evaluation_of_every_run(results, capsys):
    code, out, err = run_cli(capsys, "collect", results)
    assert code == 0, err
    table = pd.read_csv(results / "evals.csv")
    assert {"algo", "dataset", "domain", "seed", "step", "normalized_score", "success_rate",
            "config_hash"} <= set(table.columns)
    direct = eval_files(results)
    assert len(table) == len(direct) == 2 * 3 * len(SEEDS) * 2 and f"wrote {len(table)} evaluations of 18 runs" in out
    key = ["algo", "dataset", "seed", "step"]
    merged = table.merge(direct, on=key, suffixes=("", "_direct"))
    assert len(merged) == len(table)
    np.testing.assert_array_equal(merged["normalized_score"], merged["normalized_score_direct"])
    assert (table["domain"] == table["dataset"].map(DOMAINS)).all()
    for run in table.drop_duplicates("run").itertuples():
        config = yaml.safe_load((results / run.run / "config.json").read_text())
        assert run.config_hash == config["config_hash"]


@pytest.mark.parametrize("stat", ["std", "ci95"])
def test_table_numbers_equal_a_direct_pandas_computation(results, capsys, tmp_path, stat):
    cells = report_csv(capsys, results, tmp_path, "--stat", stat).set_index(["dataset", "algo"])
    finals = direct_finals(results)
    grouped = finals.groupby(["dataset", "algo"])["normalized_score"]
    means, stds, counts = grouped.mean(), grouped.std(ddof=1), grouped.count()
    if stat == "ci95":  # the half-width of scipy's t interval around the mean (zero where the seeds agree)
        sem = grouped.sem()
        low, high = stats.t.interval(0.95, counts - 1, loc=means, scale=sem.where(sem > 0, 1.0))
        spreads = pd.Series(np.where(sem > 0, (high - low) / 2, 0.0), index=means.index)
    else:
        spreads = stds
    for key in means.index:
        assert cells.loc[key, "mean"] == pytest.approx(means[key], abs=1e-9)
        assert cells.loc[key, "spread"] == pytest.approx(spreads[key], abs=1e-9)
        assert cells.loc[key, "n"] == cells.loc[key, "expected"] == 3
    # the domain average: mean of the per-dataset means; spread over seeds of the per-seed average
    maze = finals[finals["dataset"].map(DOMAINS) == "pointmaze"]
    for algo, runs in maze.groupby("algo"):
        per_seed = runs.groupby("seed")["normalized_score"].mean()
        row = cells.loc[("pointmaze average", algo)]
        assert row["mean"] == pytest.approx(runs.groupby("dataset")["normalized_score"].mean().mean(), abs=1e-9)
        expected = per_seed.std(ddof=1) if stat == "std" else \
            stats.t.ppf(0.975, len(per_seed) - 1) * per_seed.sem()
        assert row["spread"] == pytest.approx(expected, abs=1e-9)
    assert "toy average" not in cells.index.get_level_values(0)  # one dataset: no average row


def test_best_is_bold_and_those_within_its_spread_are_marked(results, capsys):
    code, out, err = run_cli(capsys, "report", results)
    assert code == 0, err
    rows = markdown_rows(out)
    grouped = direct_finals(results).groupby(["dataset", "algo"])["normalized_score"]
    means, stds = grouped.mean(), grouped.std(ddof=1)
    for dataset in DOMAINS:
        row = means[dataset]
        top = row.max()
        reach = stds[dataset][row == top].max()
        for algo, mean in row.items():
            cell = rows[dataset][algo]
            text = f"{mean:.1f} ± {stds[(dataset, algo)]:.1f}"
            if mean == top:
                assert cell == f"**{text}**", (dataset, cell)
            elif mean >= top - reach:
                assert cell == f"*{text}*", (dataset, cell)
            else:
                assert cell == text, (dataset, cell)
    assert "- **bold**: the best mean of the row" in out


def test_avg_last_k_averages_the_last_k_evaluations_and_marks_runs_with_fewer(results, capsys, tmp_path):
    cells = report_csv(capsys, results, tmp_path, "--final", "avg-last-2").set_index(["dataset", "algo"])
    means = direct_finals(results, last=2).groupby(["dataset", "algo"])["normalized_score"].mean()
    for key, mean in means.items():
        assert cells.loc[key, "mean"] == pytest.approx(mean, abs=1e-9)
    # every run has 2 evaluations: with K = 3 none has a final score, and nothing is averaged over fewer
    code, out, err = run_cli(capsys, "report", results, "--final", "avg-last-3")
    assert code == 0, err
    rows = markdown_rows(out)
    assert {cell for dataset in DOMAINS for cell in rows[dataset].values()} == {"too few evals"}
    assert rows["pointmaze average"] == {"bc": "—", "flow_bc": "—"}
    assert "no finished run has 3 evaluations" in out


def test_missing_seeds_and_unfinished_runs_are_shown_never_silently_averaged(damaged, capsys, tmp_path):
    code, out, err = run_cli(capsys, "report", damaged)
    assert code == 0, err
    rows = markdown_rows(out)
    finals = direct_finals(damaged).groupby(["dataset", "algo"])["normalized_score"]
    toy_bc = finals.get_group(("toy/bimodal-v0", "bc"))  # seeds 0 and 2; seed 1 is unfinished
    assert len(toy_bc) == 2
    assert rows["toy/bimodal-v0"]["bc"] == f"{toy_bc.mean():.1f} ± {toy_bc.std():.1f} (n=2/3)†"
    toy_flow = finals.get_group(("toy/bimodal-v0", "flow_bc"))  # seed 2 never ran: no dagger, but n=2/3
    assert rows["toy/bimodal-v0"]["flow_bc"] == f"{toy_flow.mean():.1f} ± {toy_flow.std():.1f} (n=2/3)"
    assert rows["local/pointmaze/umaze-v0"] == {"bc": "unfinished", "flow_bc": "missing"}
    assert rows["local/pointmaze/medium-v0"]["bc"].endswith("(n=2/3)†")
    assert rows["pointmaze average"] == {"bc": "—", "flow_bc": "—"}
    assert "**" not in "".join(rows["toy/bimodal-v0"].values())  # incomplete cells are never ranked
    for legend in ["(n=k/N): final scores from k of the N seeds", "†: runs left out of the mean: unfinished",
                   "missing: no run of this algorithm on this dataset", "—: no domain average"]:
        assert legend in out
    cells = report_csv(capsys, damaged, tmp_path).set_index(["dataset", "algo"])
    assert cells.loc[("toy/bimodal-v0", "bc"), ["n", "expected", "unfinished"]].tolist() == [2, 3, 1]
    assert cells.loc[("local/pointmaze/umaze-v0", "flow_bc"), "runs"] == 0


def latex_problems(tex: str) -> list[str]:
    """Structural problems of a booktabs tabular: unbalanced braces/environments, rows with the wrong column
    count, unescaped special characters or unbalanced $ in cells."""
    problems = []
    unescaped = re.sub(r"\\[{}&%#_$]", "", tex)
    depth = 0
    for char in unescaped:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            problems.append("a } closes nothing")
            break
    if depth > 0:
        problems.append("unclosed {")
    for env in set(re.findall(r"\\begin\{(\w+)\}", tex)):
        if tex.count(rf"\begin{{{env}}}") != tex.count(rf"\end{{{env}}}"):
            problems.append(f"unbalanced {env} environment")
    match = re.search(r"\\begin\{tabular\}\{([lcr|p{}0-9.a-z\\]*?)\}\n(.*?)\\end\{tabular\}", tex, re.S)
    if not match:
        return problems + ["no tabular"]
    columns = len(re.findall(r"[lcr]", match.group(1)))
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        if rule not in match.group(2):
            problems.append(f"no {rule}")
    for line in match.group(2).splitlines():
        if re.fullmatch(r"\\(top|mid|bottom)rule|\\cmidrule(\(\w+\))?\{\d+-\d+\}", line.strip()):
            continue
        if not line.rstrip().endswith(r"\\"):
            problems.append(f"row does not end with \\\\: {line}")
            continue
        cells = re.split(r"(?<!\\)&", line.rstrip()[:-2])
        if len(cells) != columns:
            problems.append(f"{len(cells)} cells, the spec has {columns}: {line}")
        for cell in cells:
            bare = re.sub(r"\\[&%#_$]", "", cell)
            if re.search(r"[_%#]", bare):
                problems.append(f"unescaped special character in {cell!r}")
            if bare.count("$") % 2:
                problems.append(f"unbalanced $ in {cell!r}")
    return problems


def test_latex_is_a_valid_booktabs_tabular(damaged, capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", damaged, "--format", "latex", "--stat", "ci95", "--out",
                           tmp_path / "table.tex")
    assert code == 0, err
    tex = (tmp_path / "table.tex").read_text()
    assert latex_problems(tex) == []
    assert r"\begin{tabular}{llcc}" in tex and r"flow\_bc" in tex and r"$^{\dagger}$" in tex
    assert r"\textbf{" not in tex.split(r"\end{tabular}")[0].split("toy/bimodal-v0")[1].split(r"\\")[0]
    # the check catches what it is there for
    assert latex_problems(tex.replace(r"flow\_bc", "flow_bc", 1))
    assert latex_problems(tex.replace(r" & \textit{average}", r" \textit{average}", 1))
    assert latex_problems(tex.replace(r"\textbf{", r"\textbf{{", 1) if r"\textbf{" in tex else tex + "{")
    if shutil.which("pdflatex"):
        document = tmp_path / "doc.tex"
        document.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                            "\\input{table.tex}\n\\end{document}\n")
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:]


def direct_matrices(root: Path) -> dict[str, np.ndarray]:
    """algo -> [seeds × datasets] final normalised scores, datasets in sorted order, straight from the CSVs."""
    finals = direct_finals(root)
    return {algo: runs.pivot(index="seed", columns="dataset", values="normalized_score")
            .reindex(columns=sorted(DOMAINS)).to_numpy() for algo, runs in finals.groupby("algo")}


def test_aggregates_equal_rliable_called_directly_with_the_same_seed(results, capsys, tmp_path):
    from rliable import library, metrics

    from harness.reporting.aggregate import aggregate
    from harness.reporting.report import load_results

    reps, seed = 200, 7
    result = aggregate(load_results(results)[1], reps=reps, seed=seed)
    matrices = direct_matrices(results)
    assert result.tasks == sorted(DOMAINS) and list(result.scores) == sorted(matrices)
    np.random.seed(seed)
    iqm, iqm_ci = library.get_interval_estimates(matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    for algo, m in matrices.items():
        np.testing.assert_array_equal(result.scores[algo], m)
        assert result.estimates[algo][0] == iqm[algo][0]
        np.testing.assert_array_equal(result.intervals[algo][:, 0], iqm_ci[algo][:, 0])
        assert result.estimates[algo][1] == pytest.approx(m.mean(axis=0).mean())
        assert result.estimates[algo][3] == pytest.approx(100 - np.minimum(m, 100).mean())
        assert result.intervals[algo][0, 0] <= result.estimates[algo][0] <= result.intervals[algo][1, 0]
    baseline = max(matrices, key=lambda a: iqm[a][0])
    other = next(a for a in matrices if a != baseline)
    np.random.seed(seed)
    p, p_ci = library.get_interval_estimates({f"{other},{baseline}": [matrices[other], matrices[baseline]]},
                                             metrics.probability_of_improvement, reps=reps)
    assert result.baseline == baseline and result.improvement[other] == pytest.approx(p[f"{other},{baseline}"])
    np.testing.assert_array_equal(result.improvement_intervals[other], p_ci[f"{other},{baseline}"].ravel())
    # the CLI writes the same numbers
    code, out, err = run_cli(capsys, "aggregate", results, "--reps", reps, "--seed", seed, "--out", tmp_path)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "aggregates.csv").set_index(["algo", "statistic"])
    for algo in matrices:
        assert table.loc[(algo, "IQM"), ["estimate", "ci_low", "ci_high"]].tolist() == pytest.approx(
            [iqm[algo][0], *iqm_ci[algo][:, 0]])
    assert f"P(X > {baseline})" in (tmp_path / "aggregates.md").read_text()


def test_aggregates_use_only_seeds_finished_on_every_task_and_say_what_was_left_out(damaged):
    from harness.reporting.aggregate import aggregate, render_aggregates_markdown
    from harness.reporting.report import load_results

    result = aggregate(load_results(damaged)[1], reps=200)
    # umaze: flow_bc never ran on it, bc never finished it. bc finished toy on seeds 0, 2 and medium on 1, 2
    assert result.tasks == ["local/pointmaze/medium-v0", "toy/bimodal-v0"]
    assert result.seeds == {"bc": [2], "flow_bc": [0, 1]}
    finals = direct_finals(damaged).set_index(["algo", "seed", "dataset"])["normalized_score"]
    np.testing.assert_array_equal(result.scores["bc"], [[finals[("bc", 2, d)] for d in result.tasks]])
    assert result.intervals["bc"] is None and result.intervals["flow_bc"] is not None
    assert result.notes == ["local/pointmaze/umaze-v0: no final score from bc, flow_bc",
                            "bc: seeds 0, 1 (no final score on every task)",
                            "flow_bc: seeds 2 (no final score on every task)"]
    assert "- bc: seeds 0, 1 (no final score on every task)" in render_aggregates_markdown(result)


def test_plot_writes_learning_curves_and_aggregate_plots_as_png_and_pdf(results, capsys, tmp_path):
    code, out, err = run_cli(capsys, "plot", results, "--reps", 200, "--out", tmp_path / "figures")
    assert code == 0, err
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    stems = ["learning_curves", "aggregate_intervals", "performance_profile", "probability_of_improvement"]
    assert names == {f"{s}.{ext}" for s in stems for ext in ("png", "pdf")}  # no temporaries left
    for stem in stems:
        assert (tmp_path / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "figures" / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_every_figure_gives_an_algorithm_one_readable_name_and_colour_with_room_around_the_marks(results, tmp_path,
                                                                                                  monkeypatch):
    from algos import REGISTRY
    from harness.reporting import plots
    from harness.reporting.aggregate import aggregate
    from harness.reporting.report import load_results

    assert set(plots.ALGORITHM_NAMES) == set(REGISTRY)
    everyone = plots.algorithm_colors(sorted(REGISTRY) + ["fql-a3", "my_variant"])
    assert len(set(everyone.values())) == len(everyone)  # no two alike
    # and no two of the registered algorithms' near-alike (tab10 + Dark2 had pairs 0.13 apart in RGB)
    registered = [everyone[plots.display_name(a)] for a in REGISTRY]
    assert min(np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(registered) for b in registered[i + 1:]) > 0.2
    assert plots.algorithm_colors(["iql", "diffusion_ql"]) == {"IQL": everyone["IQL"], "Diffusion-QL": everyone["Diffusion-QL"]}
    evals, final = load_results(results)
    figures = {}

    def keep_open(figure, stem, *args, **kwargs):  # the figures as drawn, to read their axes
        figures[stem.name] = figure
        return []

    monkeypatch.setattr(plots, "save_figures", keep_open)
    plots.plot_results(evals, aggregate(final, reps=200), tmp_path)
    for name in ("learning_curves", "aggregate_intervals", "performance_profile", "probability_of_improvement"):
        texts = set()
        for ax in figures[name].axes:
            texts |= {t.get_text() for t in ax.get_yticklabels()} | set(ax.get_legend_handles_labels()[1])
            texts |= {t.get_text() for t in ax.get_legend().get_texts()} if ax.get_legend() else set()
        texts |= {t.get_text() for legend in figures[name].legends for t in legend.get_texts()}
        assert "flow BC" in texts and "flow_bc" not in texts, (name, texts)
    for ax in figures["aggregate_intervals"].axes:  # every mark strictly inside the frame
        low, high = ax.get_xlim()
        ends = [x for patch in ax.patches for x in (patch.get_x(), patch.get_x() + patch.get_width())]
        assert low < min(ends) and max(ends) < high
    low, high = figures["probability_of_improvement"].axes[0].get_xlim()
    assert low < 0 and high > 1


def test_plot_draws_learning_curves_when_no_task_can_be_aggregated_yet(damaged, capsys, tmp_path):
    # with K = 3 and two evaluations per run no run has a final score: nothing to aggregate, curves still drawn
    code, out, err = run_cli(capsys, "plot", damaged, "--final", "avg-last-3", "--out", tmp_path)
    assert code == 0, err
    assert "aggregate plots skipped: no run has a final score yet" in out
    assert {p.name for p in tmp_path.iterdir()} == {"learning_curves.png", "learning_curves.pdf"}


@pytest.mark.parametrize("args, message", [
    (["report", "{missing}"], "no directory"),
    (["collect", "{empty}"], "no runs under"),
    (["report", "{root}", "--final", "avg-last-0"], "--final avg-last-K needs K >= 1, got 0"),
    (["report", "{root}", "--final", "best"], "--final must be 'last' or 'avg-last-K'"),
    (["aggregate", "{root}", "--baseline", "iql"], "--baseline 'iql' is not an algorithm of these runs; choices: bc, flow_bc"),
    (["aggregate", "{root}", "--reps", "10"], "--reps must be at least 100"),
    (["plot", "{root}", "--final", "avg-last-0"], "needs K >= 1"),
])
def test_bad_input_exits_2_and_writes_nothing(results, capsys, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    places = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "root": results}
    code, out, err = run_cli(capsys, *[a.format(**places) for a in args], "--out", tmp_path / "out")
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_runs_of_two_suites_under_one_root_are_refused_naming_each_suites_directory(results, capsys, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(results, root / "paper")
    shutil.copytree(results / "bc", root / "single" / "bc")  # `flowbench run bc ...` of the same seeds
    code, _, err = run_cli(capsys, "report", root)
    assert code == 2 and "Traceback" not in err
    assert f"report one suite's directory at a time: {root / 'paper'}, {root / 'single'}" in err, err
    code, out, err = run_cli(capsys, "report", root / "single")
    assert code == 0 and "bc" in out and "flow_bc" not in out, err


# The shipped OGBench manipulation suite's protocol, on runs small enough for a test: one labelled algorithm
# entry on a local PointMaze dataset (it reports success), two seeds, four evaluations each.
MANIPULATION = dict(name="ogbench-manipulation", algorithms={"bc-small": {"algo": "bc"}}, seeds=2, steps=400,
                    eval_every=100, log_every=100, eval_episodes=1, profile="cpu", resources=dict(cpus=1),
                    datasets={"local/pointmaze/umaze-v0": {}})
# Per evaluation (step 100..400) of seed 0; seed s adds s to the score and takes 0.1·s off the success rate.
SUCCESS_RATES = [0.0, 0.5, 0.7, 0.9]
SCORES = [5.0, 10.0, 15.0, 40.0]


@pytest.fixture(scope="module")
def protocol_root(minari_root, tmp_path_factory) -> Path:
    """A suite with the shipped ogbench-manipulation protocol, swept for real, its eval.csv values then set so
    that success rate vs normalised score and last vs mean of the last three all give different finals."""
    from harness.cluster.suites import SUITES_DIR, load_suite
    from harness.cluster.sweep import sweep

    shipped = yaml.safe_load((SUITES_DIR / "ogbench-manipulation.yaml").read_text())
    tmp = tmp_path_factory.mktemp("manipulation")
    (tmp / "suite.yaml").write_text(yaml.safe_dump({**MANIPULATION, "metric": shipped["metric"],
                                                    "final": shipped["final"]}))
    suite = load_suite(tmp / "suite.yaml", tmp / "runs")
    sweep(suite, executor="debug", echo=lambda line: None)
    for path in sorted(suite.root.glob("*/*/seed*/eval.csv")):
        seed = int(path.parent.name[4:])
        evals = pd.read_csv(path)
        assert evals["step"].tolist() == [100, 200, 300, 400]
        evals["success_rate"] = [rate - 0.1 * seed for rate in SUCCESS_RATES]
        evals["normalized_score"] = [score + seed for score in SCORES]
        evals.to_csv(path, index=False)
    return suite.root


def test_shipped_suites_declare_their_reporting_protocol(minari_root):
    from harness.cluster.suites import load_suite

    suites = {name: load_suite(name) for name in ("ogbench-manipulation", "d4rl-antmaze", "d4rl-adroit", "demo")}
    assert {name: (suite.protocol.metric, suite.protocol.final) for name, suite in suites.items()} == {
        "ogbench-manipulation": ("success_rate", "avg-last-3"),  # FQL: the mean at 800K, 900K and 1M steps
        "d4rl-antmaze": ("normalized_score", "last"), "d4rl-adroit": ("normalized_score", "last"),
        "demo": ("normalized_score", "last")}  # demo declares none: the defaults


def test_manipulation_table_is_success_rate_averaged_over_the_last_three_evaluations(protocol_root, capsys, tmp_path):
    readings = {(metric, last): direct_finals(protocol_root, last, metric)[metric].mean()
                for metric in ("success_rate", "normalized_score") for last in (1, 3)}
    assert len({round(v, 9) for v in readings.values()}) == 4  # each reading of these runs is a different number
    assert json.loads((protocol_root / "suite.json").read_text())["metric"] == "success_rate"  # recorded by the sweep

    cells = report_csv(capsys, protocol_root, tmp_path)
    assert cells[["metric", "final_evaluations", "n"]].values.tolist() == [["success_rate", 3, 2]]
    assert cells["algo"].tolist() == ["bc-small"]
    assert cells["mean"].item() == pytest.approx(readings[("success_rate", 3)], abs=1e-9)
    code, out, err = run_cli(capsys, "report", protocol_root)
    assert code == 0, err
    assert out.startswith("Success rate (%) averaged over the last 3 evaluations "
                          "(protocol of suite ogbench-manipulation): mean ± ")
    # the same protocol from a directory inside the suite's results root, or from the one holding it
    for root in (protocol_root / "bc-small", protocol_root.parent):
        assert report_csv(capsys, root, tmp_path)["mean"].item() == pytest.approx(cells["mean"].item())
    # aggregate reads it too
    code, out, err = run_cli(capsys, "aggregate", protocol_root, "--reps", 100, "--out", tmp_path / "aggregates")
    assert code == 0, err
    assert out.startswith("Success rate (%) averaged over the last 3 evaluations "
                          "(protocol of suite ogbench-manipulation), aggregated over 1 tasks")
    aggregates = pd.read_csv(tmp_path / "aggregates" / "aggregates.csv")
    assert set(aggregates["metric"]) == {"success_rate"} and set(aggregates["final_evaluations"]) == {3}
    mean = aggregates.set_index("statistic").loc["Mean", "estimate"]
    assert mean == pytest.approx(readings[("success_rate", 3)])


@pytest.mark.parametrize("options, reading, origin", [
    (["--final", "last"], ("success_rate", 1), "protocol of suite ogbench-manipulation; --final from the command line"),
    (["--metric", "normalized_score"], ("normalized_score", 3),
     "protocol of suite ogbench-manipulation; --metric from the command line"),
    (["--metric", "normalized_score", "--final", "last"], ("normalized_score", 1),
     "--metric and --final from the command line"),
])
def test_command_line_flags_override_the_suites_protocol(protocol_root, capsys, tmp_path, options, reading, origin):
    metric, last = reading
    cells = report_csv(capsys, protocol_root, tmp_path, *options)
    assert cells[["metric", "final_evaluations"]].values.tolist() == [[metric, last]]
    assert cells["mean"].item() == pytest.approx(direct_finals(protocol_root, last, metric)[metric].mean(), abs=1e-9)
    code, out, err = run_cli(capsys, "report", protocol_root, *options)
    assert code == 0, err
    assert f"({origin}): mean ± " in out.splitlines()[0]


def test_runs_of_suites_with_different_protocols_are_not_read_as_one(protocol_root, capsys, tmp_path):
    shutil.copytree(protocol_root, tmp_path / "both" / "manipulation")
    shutil.copytree(protocol_root, tmp_path / "both" / "other")
    (tmp_path / "both" / "other" / "suite.json").write_text(json.dumps(
        {"suite": "other", "metric": "normalized_score", "final": "last"}))
    code, _, err = run_cli(capsys, "report", tmp_path / "both")
    assert code == 2 and "come from suites with different protocols" in err, err
    assert "give both --metric and --final" in err


@pytest.mark.parametrize("protocol, message", [
    (dict(final="best"), "final 'best' is not allowed; allowed values: last, avg-last-K with K >= 1"),
    (dict(final="avg-last-0"), "final 'avg-last-0' is not allowed; allowed values: last, avg-last-K with K >= 1"),
    (dict(final=3), "final 3 is not allowed; allowed values: last, avg-last-K"),
    (dict(metric="return_mean"), "metric 'return_mean' is not allowed; allowed values: normalized_score, success_rate"),
])
def test_bad_protocol_in_a_suite_names_file_key_and_allowed_values(minari_root, capsys, tmp_path, protocol, message):
    from harness.cluster.suites import SuiteError, load_suite

    path = tmp_path / "bad-protocol.yaml"
    path.write_text(yaml.safe_dump({**MANIPULATION, **protocol}))
    with pytest.raises(SuiteError, match=re.escape(f"suite bad-protocol.yaml: {message}")):
        load_suite(path, tmp_path / "results")
    code, _, err = run_cli(capsys, "sweep", path, "--results", tmp_path / "results")
    assert code == 2 and f"suite bad-protocol.yaml: {message}" in err, err
    assert not (tmp_path / "results").exists()


def test_label_comes_from_the_runs_config_not_the_job_file(protocol_root, capsys, tmp_path):
    from harness.reporting.report import runs_table

    root = tmp_path / "runs"
    shutil.copytree(protocol_root, root)
    runs = sorted(root.glob("bc-small/*/seed*"))
    assert [json.loads((run / "config.json").read_text())["run"]["label"] for run in runs] == ["bc-small"] * 2
    (runs[0] / "job.json").unlink()  # e.g. runs copied without the scheduler's files
    job = json.loads((runs[1] / "job.json").read_text())
    (runs[1] / "job.json").write_text(json.dumps({**job, "label": "something-else"}))
    assert runs_table(root)["algo"].tolist() == ["bc-small", "bc-small"]
    code, out, err = run_cli(capsys, "report", root)
    assert code == 0, err
    assert "bc-small" in out and "something-else" not in out
    # a run written before runs recorded their label is called by its algorithm
    config = json.loads((runs[1] / "config.json").read_text())
    del config["run"]["label"]
    (runs[1] / "config.json").write_text(json.dumps(config))
    assert runs_table(root)["algo"].tolist() == ["bc-small", "bc"]


def test_published_numbers_sit_next_to_the_measured_ones(results):
    from harness.reporting.published import published_score
    from harness.reporting.report import load_results, render_latex, render_markdown, score_table

    assert published_score("fql", "D4RL/antmaze/large-diverse-v1") == (83.0, False)
    assert published_score("bc", "D4RL/antmaze/umaze-v1") == (55.0, False)
    assert published_score("fql", "ogbench/cube-single-play-singletask-task2-v0") == (96.0, True)
    assert published_score("flow_bc", "D4RL/antmaze/umaze-v1") is None
    assert published_score("fql", "local/ogbench/cube-single-v0") is None  # locally built data is not the paper's
    # Relabel the toy dataset as antmaze-umaze to see where the column goes (the scores are not antmaze's)
    final = load_results(results)[1].replace({"dataset": {"toy/bimodal-v0": "D4RL/antmaze/umaze-v1"}})
    markdown = render_markdown(score_table(final, published=True))
    header = next(line for line in markdown.splitlines() if line.startswith("| domain"))
    assert [h.strip() for h in header.strip("|").split("|")] == ["domain", "dataset", "bc", "bc (paper)", "flow_bc"]
    row = markdown_rows(markdown)["D4RL/antmaze/umaze-v1"]
    assert row["bc (paper)"] == "55" and row["bc"] != "55"
    assert all(cell == "" for name, cell in markdown_rows(markdown)["local/pointmaze/umaze-v0"].items()
               if name.endswith("(paper)"))
    assert "bc (paper): published, not measured here: Park, Li, Levine (2025)" in markdown
    assert "(paper)" not in render_markdown(score_table(final))
    assert latex_problems(render_latex(score_table(final, published=True))) == []


def test_learning_curves_draw_at_most_six_algorithms_a_panel():
    import matplotlib.pyplot as plt

    from algos import REGISTRY
    from harness.reporting.plots import MAX_LINES, learning_curve_grid

    algos = sorted(REGISTRY)
    evals = pd.DataFrame([{"algo": a, "dataset": d, "seed": s, "step": step, "normalized_score": float(i * 5 + s + step)}
                          for i, a in enumerate(algos) for d in ("toy/bimodal-v0", "local/pointmaze/umaze-v0")
                          for s in range(3) for step in (100, 200, 300)])
    for drawn, panels in ((algos, 2 * -(-len(algos) // MAX_LINES)), (algos[:MAX_LINES], 2)):
        grid = learning_curve_grid(evals[evals["algo"].isin(drawn)])
        lines = [len([line for line in ax.get_lines() if len(line.get_xdata())]) for ax in grid.axes.flat]
        plt.close(grid.figure)
        assert len(lines) == panels and max(lines) <= MAX_LINES
        assert sum(lines) == 2 * len(drawn)  # every algorithm drawn once per dataset
