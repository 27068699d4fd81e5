"""Suites: a comparison grid (algorithms × datasets × seeds) with its schedule and resources, in YAML.

A suite file::

    name: d4rl-antmaze                # default: the file name
    description: what it reproduces
    algorithms:                       # label -> {algo, overrides, profile}; a plain list of names works too
      fql: {}
      flowq-t2: {algo: flowq, overrides: {schedule: t2}}
    datasets:                         # id -> per-dataset schedule (and build size for local datasets)
      D4RL/antmaze/umaze-v1: {}
      toy/bimodal-v0: {steps: 3000, eval_every: 1000, transitions: 5000}
    seeds: 8                          # a count (0..n-1) or a list
    steps: 500000
    online_steps: 0                   # optional: online fine-tuning updates after the offline steps
    eval_every: 100000
    eval_episodes: 50
    profile: cpu                      # optional, for every algorithm without its own
    resources: {gpus: 1, cpus: 8, mem_gb: 32, time_min: 1440, array_parallelism: 64, runs_per_job: 1}
    metric: success_rate              # how the table is read: normalized_score (default) | success_rate
    final: avg-last-3                 # a run's final score: last (default) | avg-last-K, mean of its last K
    tracker: {kind: wandb, project: my-project, entity: my-team, mode: offline, tags: [paper]}  # or: tensorboard
    selection: {rule: best-per-task, tune_seeds: [0, 1]}   # optional: how report picks a grid's variant per task

An algorithm entry's ``overrides`` may hold lists: a grid (``harness.grids``), one labelled variant per
combination, e.g. ``fql: {overrides: {alpha: [0.1, 0.3, 1]}}`` runs ``fql[alpha=0.1]``, ``fql[alpha=0.3]`` and
``fql[alpha=1]``; its ``per_dataset: {DATASET: {key: value or list}}`` sets (or grids) values on one dataset
only, over the entry's own. What ``flowbench report --export-selection`` writes is such entries.

``metric`` and ``final`` are the suite's reporting protocol: ``flowbench sweep`` records them at the
suite's results root (``harness.rundir.PROTOCOL``), and ``flowbench report``/``aggregate``/``plot``
use them unless ``--metric``/``--final`` say otherwise. Each run records its label (the algorithm entry's
name) in its ``config.json`` (``run.label``), which is what the tables call it.

``tracker`` mirrors every run to TensorBoard or Weights & Biases (``harness.tracking``), grouped by the suite's
name, algorithm label and dataset.

Everything is checked before anything runs: unknown fields, algorithms, agent config keys, profiles
and local datasets are reported with the valid choices (``SuiteError``, exit status 2 in the CLI).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from algos import REGISTRY, resolve_config
from algos.kit.registry import UnknownAlgorithm, get_agent_class
from harness import datasets, rundir
from harness.data import OGBENCH_PREFIX, DatasetUnavailable, check_reward_transform, open_minari
from harness.grids import GridError, expand, variant_label
from harness.online import check_online
from harness.protocol import ReportProtocol, SelectionRule, check_protocol, check_selection
from harness.run import RunSpec
from harness.tracking import TrackerSettings

# The shipped suites and cluster profiles are files of the checkout (slurm/ at its top level, beside algos/ and
# harness/), found from this file: flowbench is installed from a checkout with `pip install -e .`.
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "slurm"
SUITES_DIR = SHIPPED_DIR / "suites"


def shipped_dir(directory: Path) -> Path:
    """``directory`` (slurm/suites or slurm/profiles of the checkout), or a clear error where flowbench was
    installed without its checkout (a plain `pip install`, which copies only the Python packages)."""
    if not directory.is_dir():
        raise SuiteError(f"flowbench's shipped suites and cluster profiles are not here ({directory} is missing): "
                         f"install flowbench from a checkout with `pip install -e .`, or give a suite or profile "
                         f"file's path")
    return directory

SCHEDULE_FIELDS = ("steps", "online_steps", "eval_every", "eval_episodes", "log_every", "checkpoint_every")
SUITE_FIELDS = ("name", "description", "algorithms", "datasets", "seeds", *SCHEDULE_FIELDS, "profile",
                "normalize_obs", "device", "resources", "metric", "final", "tracker", "selection")
TRACKER_FIELDS = ("kind", "project", "entity", "mode", "tags")
ALGORITHM_FIELDS = ("algo", "overrides", "per_dataset", "profile")
DATASET_FIELDS = (*SCHEDULE_FIELDS, "transitions")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class SuiteError(ValueError):
    """A suite or cluster profile file that is malformed or names something that does not exist."""


@dataclass(frozen=True)
class Resources:
    """What one job asks the scheduler for. One job trains ``runs_per_job`` units one after another; a
    unit is one run, or with ``seeds_per_job`` N > 1, up to N seeds of one (algorithm, dataset) trained
    in one process as one batched model (each in its own run directory)."""

    gpus: int = 0
    cpus: int = 1  # also the run's torch threads
    mem_gb: float = 4.0
    time_min: int = 60
    array_parallelism: int = 64  # at most this many jobs of the array at once
    runs_per_job: int = 1
    seeds_per_job: int = 1  # seeds of one (algorithm, dataset) batched in one process
    # a job that reaches its time limit is requeued (and resumes) at most this many times; preemptions
    # do not count. submitit's own default of 3 would stop a run longer than about 4 × time_min.
    max_timeouts: int = 100


@dataclass(frozen=True)
class SuiteRun:
    """One cell of the grid: its name (its directory under the suite's, ``label/dataset/seedK``), how to train
    it, and its dataset's build size."""

    name: str
    label: str
    spec: RunSpec
    transitions: int | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: Path
    runs: tuple[SuiteRun, ...]
    resources: Resources
    root: Path  # results/<suite name>
    protocol: ReportProtocol = ReportProtocol()  # how its table is read (metric, final rule)
    selection: SelectionRule | None = None  # how report picks a grid's variant per task, if the suite says
    grids: tuple[str, ...] = ()  # one line per grid entry and dataset: its axes and variants (for --dry-run)

    def datasets_to_build(self) -> dict[str, int | None]:
        """Local (buildable) datasets of the suite and their build sizes."""
        return {r.spec.dataset: r.transitions for r in self.runs if r.spec.dataset in datasets.BUILDERS}


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in shipped_dir(SUITES_DIR).glob("*.yaml"))


def suite_path(name_or_path: str | Path) -> Path:
    """A suite file: a path, or the name of a suite shipped in ``slurm/suites/``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_dir(SUITES_DIR) / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise SuiteError(f"no suite file {str(name_or_path)!r}; shipped suites: {', '.join(shipped_suites())}")


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SuiteError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a {what} is a YAML mapping, got {type(data).__name__}")
    return data


def check_fields(values: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; valid fields: {', '.join(valid)}")


def as_int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SuiteError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def as_mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"{where} must be a mapping, got {value!r}")
    return value


def parse_resources(values: Any, where: str, base: Resources = Resources()) -> Resources:
    values = as_mapping(values, where)
    check_fields(values, tuple(f.name for f in fields(Resources)), where)
    out = {}
    for f in fields(Resources):
        if f.name not in values:
            out[f.name] = getattr(base, f.name)
        elif f.name == "mem_gb":
            if isinstance(values[f.name], bool) or not isinstance(values[f.name], (int, float)) or values[f.name] <= 0:
                raise SuiteError(f"{where}.mem_gb must be a positive number, got {values[f.name]!r}")
            out[f.name] = float(values[f.name])
        else:
            out[f.name] = as_int(values[f.name], f"{where}.{f.name}", minimum=0 if f.name == "gpus" else 1)
    return Resources(**out)


def as_bool(value: Any, where: str) -> bool:
    """YAML's true/false only: a string such as 'no' is an error, not True."""
    if not isinstance(value, bool):
        raise SuiteError(f"{where} must be true or false, got {value!r}")
    return value


DEVICES = ("auto", "cpu", "cuda")


def as_device(value: Any, where: str) -> str:
    text = str(value)
    if text.split(":")[0] not in DEVICES or (":" in text and not text.split(":", 1)[1].isdigit()):
        raise SuiteError(f"{where} must be auto, cpu, cuda or cuda:N, got {value!r}")
    return text


def check_dataset_opens(dataset_id: str, where: str) -> None:
    """A local dataset must open (a broken file is found now, not in every job); one still to be built or
    downloaded is checked when the sweep builds it, or in its job."""
    if dataset_id.startswith(OGBENCH_PREFIX) or not datasets.is_local(dataset_id):
        return
    try:
        open_minari(dataset_id, download=False, build_missing=False)
    except DatasetUnavailable as e:
        raise SuiteError(f"{where}: {e}") from None


def check_dataset_id(dataset_id: str, where: str) -> None:
    """Rejects ids that cannot exist: malformed ones, and unknown ids in flowbench's local namespaces.

    Remote ids (D4RL/..., mujoco/..., ogbench/...) cannot be checked offline; a missing one fails
    in its job and shows in ``flowbench status``.
    """
    from minari.dataset.minari_dataset import parse_dataset_id

    if dataset_id.startswith(OGBENCH_PREFIX):
        return
    try:
        namespace = parse_dataset_id(dataset_id)[0] or ""
    except ValueError as e:
        raise SuiteError(f"{where}: {e} Example ids: toy/bimodal-v0, D4RL/antmaze/umaze-v1") from None
    local_roots = {n.split("/")[0] for n in datasets.builder_namespaces()}
    if dataset_id not in datasets.BUILDERS and namespace.split("/")[0] in local_roots and not datasets.is_local(dataset_id):
        raise SuiteError(f"{where}: unknown dataset {dataset_id!r}; flowbench builds: {', '.join(sorted(datasets.BUILDERS))}")


def parse_tracker(value: Any, suite: str, where: str) -> TrackerSettings:
    """A suite's ``tracker:``: a tracker's name, or a mapping of ``kind`` and W&B's options."""
    if value is None:
        return TrackerSettings(suite=suite)
    entry = {"kind": value} if isinstance(value, str) else as_mapping(value, where)
    check_fields(entry, TRACKER_FIELDS, where)
    for key in ("kind", "project", "entity", "mode"):
        if key in entry and not isinstance(entry[key], str):
            raise SuiteError(f"{where}.{key} must be a string, got {entry[key]!r}")
    tags = entry.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise SuiteError(f"{where}.tags must be a list of non-empty strings, got {entry.get('tags')!r}")
    settings = TrackerSettings(kind=entry.get("kind", "none"), project=entry.get("project"),
                               entity=entry.get("entity"), mode=entry.get("mode"), tags=tuple(tags), suite=suite)
    try:
        settings.check(where)
    except ValueError as e:
        raise SuiteError(str(e)) from None
    return settings


def check_schedule(schedule: dict[str, Any], where: str) -> None:
    """Each of a suite's (or one dataset's) schedule values is an integer ≥ 1 (``online_steps`` ≥ 0;
    ``checkpoint_every`` may be null)."""
    for k, v in schedule.items():
        if not (k == "checkpoint_every" and v is None):
            as_int(v, f"{where}: {k}", minimum=0 if k == "online_steps" else 1)


def list_fields(algo: str) -> set[str]:
    """The config fields of ``algo`` whose one value is a list (tuple-typed, e.g. ``actor_hidden_dims``)."""
    config_class = get_agent_class(algo).config_class
    hints = typing.get_type_hints(config_class)

    def is_tuple(hint: Any) -> bool:
        return typing.get_origin(hint) is tuple or any(is_tuple(a) for a in typing.get_args(hint))

    return {name for name in config_class.field_names() if is_tuple(hints[name])}


def load_suite(name_or_path: str | Path, results: str | Path = "runs") -> Suite:
    """Reads, checks and expands a suite into runs under ``results/<suite name>/``."""
    path = suite_path(name_or_path)
    raw = read_yaml_mapping(path, "suite")
    where = f"suite {path.name}"
    check_fields(raw, SUITE_FIELDS, where)
    name = str(raw.get("name", path.stem))
    if not LABEL.match(name):
        raise SuiteError(f"{where}: name {name!r} must be letters, digits, '_', '-', '.' or '+'")
    if name == rundir.SINGLE_RUNS.name:
        raise SuiteError(f"{where}: name {name!r} is taken: runs/{name}/ holds `flowbench run`'s runs without --out; "
                         f"give the suite another name")
    for required in ("algorithms", "datasets"):
        if not raw.get(required):
            raise SuiteError(f"{where}: '{required}' is required and must not be empty")
    try:  # the same rules as report's --metric/--final, checked now rather than when the table is made
        protocol = check_protocol(raw, where, f"protocol of suite {name}")
    except ValueError as e:
        raise SuiteError(str(e)) from None

    algorithms = raw["algorithms"]
    if isinstance(algorithms, list):
        algorithms = {str(a): {} for a in algorithms}
    algorithms = as_mapping(algorithms, f"{where}: algorithms")
    datasets_ = raw["datasets"]
    if isinstance(datasets_, list):
        datasets_ = {str(d): {} for d in datasets_}
    datasets_ = as_mapping(datasets_, f"{where}: datasets")

    seeds = raw.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(as_int(seeds, f"{where}: seeds")))
    elif not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise SuiteError(f"{where}: seeds must be a count or a list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SuiteError(f"{where}: seeds repeat: {seeds}")

    normalize_obs = as_bool(raw.get("normalize_obs", False), f"{where}: normalize_obs")
    device = as_device(raw.get("device", "auto"), f"{where}: device")
    schedule = {k: raw[k] for k in SCHEDULE_FIELDS if k in raw}
    check_schedule(schedule, where)  # every value written is checked, even one that each dataset overrides
    default_profile = raw.get("profile")
    tracker = parse_tracker(raw.get("tracker"), name, f"{where}: tracker")
    root = Path(results).resolve() / name
    try:
        selection = check_selection(raw.get("selection"), seeds, where)
    except ValueError as e:
        raise SuiteError(str(e)) from None
    runs: list[SuiteRun] = []
    grids: list[str] = []
    for dataset in datasets_:
        check_dataset_id(str(dataset), f"{where}: datasets.{dataset}")
        check_dataset_opens(str(dataset), f"{where}: datasets.{dataset}")
    for label, entry in algorithms.items():
        entry_where = f"{where}: algorithms.{label}"
        entry = as_mapping(entry, entry_where)
        check_fields(entry, ALGORITHM_FIELDS, entry_where)
        if not LABEL.match(str(label)):
            raise SuiteError(f"{entry_where}: labels are letters, digits, '_', '-', '.' or '+'")
        algo = str(entry.get("algo", label))
        if algo not in REGISTRY:
            raise SuiteError(f"{entry_where}: unknown algorithm {algo!r}; valid choices: {', '.join(sorted(REGISTRY))}")
        overrides = as_mapping(entry.get("overrides"), f"{entry_where}.overrides")
        per_dataset = as_mapping(entry.get("per_dataset"), f"{entry_where}.per_dataset")
        for dataset in per_dataset:  # a typo would silently run the entry's values there
            if dataset not in datasets_:
                raise SuiteError(f"{entry_where}.per_dataset: {dataset!r} is not a dataset of this suite; its "
                                 f"datasets: {', '.join(map(str, datasets_))}")
        profile = entry.get("profile", default_profile)
        for dataset, ds_entry in datasets_.items():
            ds_where = f"{where}: datasets.{dataset}"
            ds_entry = as_mapping(ds_entry, ds_where)
            check_fields(ds_entry, DATASET_FIELDS, ds_where)
            transitions = ds_entry.get("transitions")
            if transitions is not None:
                if dataset not in datasets.BUILDERS:
                    raise SuiteError(f"{ds_where}: 'transitions' applies only to datasets flowbench builds "
                                     f"({', '.join(sorted(datasets.BUILDERS))})")
                as_int(transitions, f"{ds_where}.transitions")
            dataset_schedule = {k: ds_entry[k] for k in SCHEDULE_FIELDS if k in ds_entry}
            check_schedule(dataset_schedule, ds_where)
            run_schedule = {**schedule, **dataset_schedule}
            own = as_mapping(per_dataset.get(dataset), f"{entry_where}.per_dataset.{dataset}")
            try:
                grid_where = f"{entry_where}.{f'per_dataset.{dataset} over ' if own else ''}overrides"
                variants = expand({**overrides, **own}, list_fields(algo), grid_where)
            except GridError as e:
                raise SuiteError(str(e)) from None
            if len(variants) > 1 or variants[0][1]:
                axes = " × ".join(f"{k} {len(v)}" for k, v in variants_axes(variants).items())
                names = ", ".join(variant_label(str(label), v) for _, v in variants)
                grids.append(f"{label} on {dataset}: {axes} = {len(variants)} variants: {names}")
            for variant_overrides, values in variants:
                variant = variant_label(str(label), values)
                try:  # unknown config keys, values and profiles are caught here, not in a job hours later
                    config = resolve_config(algo, variant_overrides, profile, str(dataset))
                    check_reward_transform(config.reward_transform)
                    check_online(algo, config, run_schedule.get("steps", RunSpec.steps),
                                 run_schedule.get("online_steps", 0))
                except (ValueError, UnknownAlgorithm) as e:
                    raise SuiteError(f"{entry_where} on {dataset}{f' ({variant})' if values else ''}: {e}") from None
                for seed in seeds:
                    out = rundir.run_path(root, variant, str(dataset), seed)
                    # the label goes into the run's own config.json (run.label), where report reads it
                    spec = RunSpec(algo=algo, label=variant, dataset=str(dataset), seed=seed, out=str(out),
                                   overrides=dict(variant_overrides), profile=profile,
                                   normalize_obs=normalize_obs, device=device, tracker=tracker,
                                   **run_schedule)
                    runs.append(SuiteRun(str(out.relative_to(root)), variant, spec, transitions))
    return Suite(name=name, description=str(raw.get("description", "")).strip(), path=path, runs=tuple(runs),
                 resources=parse_resources(raw.get("resources"), f"{where}: resources"), root=root,
                 protocol=protocol, selection=selection, grids=tuple(grids))


def variants_axes(variants: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, list[Any]]:
    """The grid's keys and their distinct values, from its expansion."""
    axes: dict[str, list[Any]] = {}
    for _, values in variants:
        for k, v in values.items():
            if v not in axes.setdefault(k, []):
                axes[k].append(v)
    return axes
