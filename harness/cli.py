"""The ``flowbench`` command line: a thin layer over the harness modules."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import typing
from dataclasses import dataclass, fields
from typing import Any, Sequence

from algos import REGISTRY
from algos.kit.config import ConfigError
from algos.kit.registry import UnknownAlgorithm
from harness import rundir

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConfigError, UnknownAlgorithm, ValueError, FileExistsError,
                                                   FileNotFoundError)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2,3`` (or a range ``0-3``) as a list of integers."""
    seeds: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        first, dash, last = item.partition("-")
        try:
            seeds.extend(range(int(first), int(last) + 1) if dash and first else [int(item)])
        except ValueError:
            raise ValueError(f"--seeds expects comma-separated non-negative integers (or ranges such as 0-3), "
                             f"got {item!r} in {text!r}") from None
    if not seeds:
        raise ValueError(f"--seeds names no seed: {text!r}")
    return seeds  # repeated or negative seeds: harness.run.check_seed_group says which


SCALE_VARIABLE = "FLOWBENCH_SCALE"


def step_scale() -> float:
    """The factor in ``FLOWBENCH_SCALE`` (default 1): smoke tests such as tests/test_readme.py run the README's
    commands as written with every step count, evaluation episode count and dataset size shrunk by it."""
    text = os.environ.get(SCALE_VARIABLE, "").strip()
    if not text:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        factor = float("nan")
    if not 0 < factor <= 1:
        raise ValueError(f"{SCALE_VARIABLE} must be a number in (0, 1], got {text!r}; unset it for full-size runs")
    return factor


def scale_arguments(args: argparse.Namespace, factor: float) -> None:
    """Shrinks the sizes of ``run``, ``data build``, ``demo`` and ``toy-figure`` by ``factor`` (see
    ``step_scale``); datasets keep at least 1000 transitions, as the demo's do."""
    def shrink(n: int, minimum: int = 1) -> int:
        return max(minimum, int(n * factor))

    args.scale = factor
    if factor == 1.0:
        return
    if args.command == "run":
        args.steps, args.eval_every, args.log_every = shrink(args.steps), shrink(args.eval_every), shrink(args.log_every)
        args.online_steps = shrink(args.online_steps, minimum=0)
        args.eval_episodes = shrink(args.eval_episodes)
        if args.checkpoint_every is not None:
            args.checkpoint_every = shrink(args.checkpoint_every)
    elif args.command == "data" and args.data_command == "build":
        from harness import datasets

        size = args.transitions if args.transitions is not None else datasets.get_builder(args.name).default_transitions
        args.transitions = shrink(size, minimum=1000)
    elif args.command == "toy-figure":
        args.samples = shrink(args.samples, minimum=50)
    print(f"{SCALE_VARIABLE}={factor:g}: step counts, evaluation episodes and dataset sizes shrunk", file=sys.stderr)


def tracker_settings(args: argparse.Namespace, kind: str) -> Any:
    """``TrackerSettings`` of ``kind`` with the ``--wandb-*`` options."""
    from harness.tracking import TrackerSettings

    tags = tuple(t.strip() for t in (args.wandb_tags or "").split(",") if t.strip())
    return TrackerSettings(kind=kind, project=args.wandb_project, entity=args.wandb_entity, mode=args.wandb_mode,
                           tags=tags)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.run import RunSpec, train_seeds

    if args.seeds is not None and args.seed is not None:
        raise ValueError("give --seed or --seeds, not both")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [args.seed or 0]
    if args.out and len(seeds) > 1 and "{seed}" not in args.out:
        raise ValueError(f"--out {args.out!r} with {len(seeds)} seeds: each seed needs its own run directory; "
                         f"put {{seed}} in it, e.g. --out {args.out.rstrip('/')}/seed{{seed}}")
    specs = [RunSpec(
        algo=args.algo, dataset=args.dataset, seed=seed, steps=args.steps, online_steps=args.online_steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, out=args.out.replace("{seed}", str(seed)) if args.out else None,
        overrides=parse_overrides(args.set), profile=args.profile, normalize_obs=args.normalize_obs,
        log_every=args.log_every, checkpoint_every=args.checkpoint_every, device=args.device,
        cuda_graph=args.cuda_graph, compile=args.compile, tf32=args.tf32, tracker=tracker_settings(args, args.tracker),
    ) for seed in seeds]
    for spec, summary in zip(specs, train_seeds(specs)):
        final = summary["final"] or {}
        print(f"{spec.algo} on {spec.dataset} (seed {spec.seed}): step {summary['steps']}, "
              f"normalized score {final.get('normalized_score', float('nan')):.1f}, "
              f"return {final.get('return_mean', float('nan')):.4g}, success {final.get('success_rate', float('nan')):.2f}"
              f", training step {summary.get('training_step', 'eager')} -> {spec.out_dir()}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from harness import datasets

    already = not args.force and datasets.already_built(args.name, args.transitions, args.seed)
    path = datasets.build(args.name, args.transitions, args.seed, force=args.force)
    transitions = datasets.build_settings(args.name)["transitions"]
    print(f"{'already built' if already else 'built'} {args.name} at {path}, {transitions} transitions")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    import minari

    from harness import datasets

    local = minari.list_local_datasets()
    print(f"{'dataset':40s} {'status':10s} {'transitions':>12s} {'episodes':>9s}  description")
    for name in sorted(set(datasets.BUILDERS) | set(local)):
        meta = local.get(name, {})
        builder = datasets.BUILDERS.get(name)
        status = ("built" if name in local else "buildable") if builder else "local"
        print(f"{name:40s} {status:10s} {meta.get('total_steps', ''):>12} {meta.get('total_episodes', ''):>9}  "
              f"{builder.description if builder else meta.get('description', '')}")
    print(f"\nMinari root: {datasets.minari_root()}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from harness import data

    print(json.dumps(data.load(args.id, build_missing=False).info(), indent=2))
    return 0


def cmd_toy_figure(args: argparse.Namespace) -> int:
    from harness.toy_figure import make_toy_figure

    make_toy_figure(out=args.out, samples=args.samples, seed=args.seed, scale=args.scale)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    run_demo(out=args.out, runs_dir=args.runs, scale=args.scale, all_algos=args.all)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.files import atomic_write_text
    from harness.reporting.report import collect

    evals = collect(Path(args.dir))
    out = Path(args.out) if args.out else Path(args.dir) / "evals.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, evals.to_csv(index=False))
    print(f"wrote {len(evals)} evaluations of {evals['run'].nunique()} runs to {out}")
    return 0


def protocol_and_results(args: argparse.Namespace) -> tuple[Any, Any, Any, str, Any]:
    """What ``report``, ``aggregate`` and ``plot`` share: the protocol for ``args.dir`` (the suite's, unless
    ``--metric``/``--final`` say otherwise), every evaluation and final score of ``args.phase``, the caption's
    origin line, and the per-task selection (None with ``--select none``). With a selection, the evaluations
    and final scores are the picked variants' on the reported seeds, labelled by suite entry."""
    from pathlib import Path

    from harness.protocol import resolve_protocol, resolve_selection
    from harness.reporting.report import load_results
    from harness.reporting.selection import select

    protocol = resolve_protocol(Path(args.dir), args.metric, args.final)
    rule = resolve_selection(Path(args.dir), args.select,
                             parse_seeds(args.tune_seeds) if args.tune_seeds is not None else None,
                             args.tune_on_reported_seeds)
    evals, final = load_results(Path(args.dir), protocol.metric, protocol.last_k, args.phase)
    origin = protocol_origin(protocol.origin, args.phase)
    if not rule.picks:
        return protocol, evals, final, origin, None
    selection = select(final, rule)
    return protocol, selection.evals(evals), selection.final, f"{origin}; {selection.caption()[:-1]}", selection


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.files import atomic_write_text
    from harness.reporting.report import render, score_table

    from harness.reporting.selection import export_selection

    if args.export_selection and args.select == "none":
        raise ValueError("--export-selection writes the values a rule picked: give --select best-per-task")
    protocol, _, final, origin, selection = protocol_and_results(args)
    if args.export_selection and selection is None:
        raise ValueError("--export-selection writes the values a rule picked, and these runs' suite declares no "
                         "selection: give --select best-per-task with --tune-seeds")
    # the table's caption states the protocol; the selection's own sentence is added by the table itself
    table = score_table(final, protocol.metric, args.stat, protocol.last_k, args.published,
                        protocol_origin(protocol.origin, args.phase), selection)
    text = render(table, args.format)
    print(text, end="")
    if args.out:
        atomic_write_text(Path(args.out), text)
    if args.export_selection:
        entries = export_selection(selection, Path(args.dir), Path(args.export_selection))
        print(f"\nwrote the picked values of {', '.join(entries)} to {args.export_selection}", file=sys.stderr)
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.reporting.aggregate import aggregate, render_aggregates_markdown, write_aggregates

    protocol, _, final, origin, _ = protocol_and_results(args)
    result = aggregate(final, protocol.metric, protocol.last_k, args.reps, args.seed, args.baseline, origin)
    print(render_aggregates_markdown(result), end="")
    paths = write_aggregates(result, Path(args.out) if args.out else Path(args.dir) / "report")
    print(f"\nwrote {', '.join(map(str, paths))}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.reporting.aggregate import NoCommonTasks, aggregate
    from harness.reporting.plots import plot_results

    protocol, evals, final, origin, _ = protocol_and_results(args)
    try:
        result = aggregate(final, protocol.metric, protocol.last_k, args.reps, args.seed, args.baseline, origin)
    except NoCommonTasks as e:  # an early sweep: its learning curves are still worth drawing
        print(f"aggregate plots skipped: {e}")
        result = None
    paths = plot_results(evals, result, Path(args.out) if args.out else Path(args.dir) / "report", protocol.metric)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


def cmd_timing(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from harness import timing

    if args.from_benchmark:
        frame = timing.from_benchmark_json(Path(args.from_benchmark))
    else:
        spec = timing.TimingSpec(
            algos=tuple(parse_list(args.algos, str)) if args.algos else timing.TIMED_ALGOS,
            flow_steps=tuple(parse_list(args.flow_steps, int, "--flow-steps")), parts=tuple(parse_list(args.parts, str)),
            updates=args.updates, rounds=args.rounds, warmup=args.warmup, batch_size=args.batch_size,
            act_batch=args.act_batch, profile=args.profile, device=args.device, seed=args.seed,
            seeds=tuple(parse_list(args.seeds, int, "--seeds")), cuda_graph=tuple(parse_list(args.cuda_graph, str)),
            compile=tuple(parse_list(args.compile, str)), tf32=args.tf32)
        frame = timing.measure(spec)
    paths = timing.write_outputs(frame, Path(args.out), "flowbench " + " ".join(map(shlex.quote, args.argv)))
    table = timing.ratio_table(frame)
    if not table.empty:
        print(f"time(K={frame.K.max()}) / time(K={frame.K.min()}), measured in this run:")
        print(table.to_markdown(floatfmt=".2f"))
    speedups = timing.speedup_table(frame)
    if len(speedups.columns) > 1:
        print("\nfull updates: seed-updates per second per setting, and speed-ups over one seed eager (same run):")
        print(speedups.to_markdown(floatfmt=".2f"))
    print(f"\nwrote {paths['csv']}, {paths['plot']} and {paths['summary']}")
    return 0


def parse_list(text: str, kind: type, option: str = "list") -> list:
    """``"a,b,c"`` → ``[kind(a), kind(b), kind(c)]``; a bad item is a clear error."""
    try:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"{option} expects comma-separated {kind.__name__} values, got {text!r}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.cluster.suites import load_suite
    from harness.cluster.sweep import load_profile, sweep

    suite = load_suite(args.suite, results=args.results)
    profile = load_profile(args.cluster_profile) if args.cluster_profile else None
    result = sweep(suite, executor=args.executor, profile=profile, dry_run=args.dry_run, wait=args.wait)
    return 1 if result.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.tracking import export_run

    settings = tracker_settings(args, args.to)
    settings.check("--to")
    runs = rundir.find_run_dirs(Path(args.dir), started_only=True)
    if not runs:
        raise ValueError(f"no run directories under {args.dir}")
    for run in runs:
        print(f"{run}: {export_run(settings, run)} rows -> {args.to}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.cluster.status import collect_status, status_table

    print(status_table(collect_status(Path(args.dir))))
    return 0


# What the fields every family shares mean (a field's own trailing comment in its config class wins): the
# shared vocabulary, one name per concept (README, "Config vocabulary").
COMMON_FIELD_MEANINGS = {
    "reward_transform": "dataset rewards → training rewards (none, minus_one, iql_locomotion, cql_antmaze, "
                        "standardize, times_100); set per benchmark by presets",
    "discount": "γ", "tau": "Polyak rate of the target networks", "batch_size": "transitions per update",
    "sampling_steps": "K, steps of the policy's sampler (Euler steps of a flow, DDPM denoising steps, "
                      "consistency-model steps)",
    "actor_lr": "Adam learning rate of the policy-side networks", "critic_lr": "Adam learning rate of the critic",
    "value_lr": "Adam learning rate of the value network V",
    "actor_lr_schedule": "cosine: the policy's lr decays to 0 over the run | constant",
    "critic_lr_schedule": "cosine: the critic's lr decays to 0 over the run | constant",
    "actor_hidden_dims": "hidden layer widths of the policy-side network(s)",
    "value_hidden_dims": "hidden layer widths of the critic and value networks",
    "critic_layer_norm": "LayerNorm after each hidden activation of the critic and value networks",
    "actor_layer_norm": "LayerNorm after each hidden activation of the policy-side network(s)",
    "activation": "hidden activation ('gelu': tanh form, as flax)", "expectile": "τ of the in-sample value (IQL)",
    "num_qs": "critic ensemble size", "max_weight": "clip of the advantage weights",
    "awr_temperature": "β, the inverse temperature of the advantage weights exp(β A)",
    "energy_scale": "λ (β), the inverse temperature of the target π ∝ π_β exp(λ Q)",
    "num_candidates": "N, actions drawn per state when acting, the best (or one by weight) taken",
}


@dataclass(frozen=True)
class FieldDoc:
    """One config field as ``flowbench algos -v`` shows it."""

    name: str
    default: Any
    choices: tuple[Any, ...]  # a Literal field's allowed values; () for any value of its type
    meaning: str  # its trailing comment in the config class, else COMMON_FIELD_MEANINGS, else ""


def describe(cls: type) -> tuple[str, list[FieldDoc]]:
    """An agent's one-paragraph summary (its module docstring's first paragraph, or its own class docstring
    where one module holds several agents) and its config fields with their meanings and choices."""
    module_doc = (inspect.getmodule(cls).__doc__ or "").strip()
    summary = " ".join((cls.__dict__.get("__doc__") or module_doc).strip().split("\n\n")[0].split())
    meanings = dict(COMMON_FIELD_MEANINGS)
    for klass in reversed(cls.config_class.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for match in re.finditer(r"^\s+(\w+): [^=\n]+=[^#\n]*#\s*(.+)$", source, re.MULTILINE):
            meanings[match.group(1)] = match.group(2).strip()
    hints = typing.get_type_hints(cls.config_class)
    docs = [FieldDoc(f.name, f.default, typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is
                     typing.Literal else (), meanings.get(f.name, "")) for f in fields(cls.config_class)]
    return summary, docs


def cmd_algos(args: argparse.Namespace) -> int:
    for name, cls in sorted(REGISTRY.items()):
        summary, docs = describe(cls)
        print(f"{name}: {summary if args.verbose else summary.split('. ')[0].rstrip('.') + '.'}")
        if args.verbose:
            for doc in docs:
                choices = f"  (one of: {', '.join(map(str, doc.choices))})" if doc.choices else ""
                meaning = f"  # {doc.meaning}" if doc.meaning else ""
                print(f"    {doc.name} = {doc.default!r}{choices}{meaning}")
            for prof, vals in cls.profiles.items():
                print(f"    profile {prof}: {vals}")
            for pattern, vals in cls.presets:
                print(f"    preset {pattern}: {vals}")
            print()
    return 0


def add_cuda_graph_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cuda-graph", default="auto", choices=("auto", "off"),
                        help="auto: on CUDA, capture the training step once per code path as a CUDA graph and "
                             "replay it (eager, with a warning, where capture fails); off: always eager")


def add_compile_option(parser: argparse.ArgumentParser, default: str, choices: tuple[str, ...]) -> None:
    parser.add_argument("--compile", default=default, choices=choices,
                        help="the training step compiled for the CPU by torch.compile, one compiled function per code "
                             "path, cached on disk ($FLOWBENCH_COMPILE_CACHE, else ~/.cache/flowbench/inductor); "
                             "on: always; off: eager; auto (default): on the CPU for runs long enough to recover the "
                             "compile time (harness/compiling.py)")


def add_tf32_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-tf32", dest="tf32", action="store_false",
                        help="on CUDA, full float32 matmuls (default: TF32, as the JAX reference code runs them)")


def add_tracker_options(parser: argparse.ArgumentParser) -> None:
    from harness.tracking import TRACKERS

    parser.add_argument("--tracker", default="none", choices=TRACKERS,
                        help=f"also mirror the run to TensorBoard (event files in RUN/{rundir.TENSORBOARD}/) or Weights "
                             f"& Biases (one W&B run per run directory, resumed with it); default none. The CSV files "
                             f"stay the record: a failing tracker costs one warning line")
    add_wandb_options(parser)


def add_wandb_options(parser: argparse.ArgumentParser) -> None:
    from harness.tracking import WANDB_MODES

    parser.add_argument("--wandb-project", help="W&B project (default: the run's suite, else flowbench)")
    parser.add_argument("--wandb-entity", help="W&B entity, a team or user (default: the API key's)")
    parser.add_argument("--wandb-mode", choices=WANDB_MODES,
                        help="W&B mode (default: W&B's own: WANDB_MODE, else online); offline writes "
                             f"RUN/{rundir.WANDB}/offline-run-*, uploaded later by `wandb sync`")
    parser.add_argument("--wandb-tags", metavar="TAG,TAG,...", help="W&B tags added to the run's own (label, "
                                                                     "dataset, seed)")


# --metric and --final default to None so that a value given on the command line can be told apart from
# none: unless given, the suite's reporting protocol (suite.json at its results root) applies.
PROTOCOL_DEFAULT = "default: the suite's protocol (its YAML's {key}), else {fallback}"


def protocol_origin(origin: str, phase: str) -> str:
    """The caption's account of the protocol, and of the phase when only one phase's evaluations count."""
    return origin if phase == "all" else f"{origin}; {phase} evaluations only"


def add_protocol_options(parser: argparse.ArgumentParser, metrics: Sequence[str]) -> None:
    parser.add_argument("--metric", default=None, choices=list(metrics),
                        help=PROTOCOL_DEFAULT.format(key="metric", fallback="normalized_score"))
    parser.add_argument("--final", default=None, metavar="last|avg-last-K",
                        help="a run's final score: its last evaluation, or the mean of its last K (finished runs "
                             "only); " + PROTOCOL_DEFAULT.format(key="final", fallback="last"))
    parser.add_argument("--phase", default="all", choices=("all", "offline", "online"),
                        help="which evaluations of runs with an online phase (--online-steps) count: all (default: "
                             "a run's final score is its last), offline (up to the end of offline training) or online")
    parser.add_argument("--select", default=None, choices=("none", "best-per-task"),
                        help="grid variants: none shows each as its own column; best-per-task picks, per algorithm "
                             "and dataset, the variant with the best mean final score on the tuning seeds and "
                             "reports it on the other seeds (default: the suite's selection, else none)")
    parser.add_argument("--tune-seeds", metavar="S,S,...",
                        help="best-per-task: the seeds the pick is made on, e.g. 0,1 or 0-1 (default: the suite's "
                             "selection.tune_seeds); every other seed is reported")
    parser.add_argument("--tune-on-reported-seeds", action="store_true",
                        help="best-per-task: allow picking on seeds that are reported (every seed is reported; the "
                             "caption says the scores are inflated by the pick)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowbench", description="Benchmark harness for flow- and diffusion-based offline RL.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train one algorithm on one dataset")
    p.add_argument("algo", help=f"algorithm: {', '.join(sorted(REGISTRY))}")
    p.add_argument("dataset", help="Minari dataset id, e.g. toy/bimodal-v0 or D4RL/antmaze/umaze-v1")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default 0)")
    p.add_argument("--seeds", metavar="S,S,...",
                   help="several seeds (e.g. 0,1,2,3 or 0-3) trained in this process as one batched model, each "
                        "in its own run directory")
    p.add_argument("--steps", type=int, default=1_000_000,
                   help="gradient updates (default 1000000, the papers' length: hours on a GPU, days on a CPU; "
                        "try --steps 3000 --profile cpu first)")
    p.add_argument("--online-steps", type=int, default=0,
                   help="after the offline --steps, this many updates of online fine-tuning, one environment "
                        "step before each (the FQL code's protocol; a finished offline run continues)")
    p.add_argument("--eval-every", type=int, default=100_000, help="updates between evaluations (default 100000)")
    p.add_argument("--eval-episodes", type=int, default=50, help="episodes per evaluation (default 50)")
    p.add_argument("--log-every", type=int, default=1000,
                   help=f"updates between {rundir.TRAIN_LOG} rows of averaged losses (default 1000)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="updates between checkpoints (default: at "
                                                                       "every evaluation)")
    p.add_argument("--out", help="run directory (default runs/ALGO/DATASET/seedS); with several seeds it must "
                                 "contain {seed}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override an agent config field")
    p.add_argument("--profile", help="named override set, e.g. 'cpu' (small networks for CPU runs; default: none, "
                                     "the paper's sizes)")
    p.add_argument("--normalize-obs", action="store_true", help="standardise observations with dataset statistics")
    p.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ...")
    add_cuda_graph_option(p)
    add_compile_option(p, "auto", ("auto", "on", "off"))  # harness.compiling.COMPILE_MODES (cli imports no torch)
    add_tf32_option(p)
    add_tracker_options(p)
    p.set_defaults(func=cmd_run)

    data = sub.add_parser("data", help="build, list and inspect datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("build", help="build a local dataset with its simulator")
    p.add_argument("name")
    p.add_argument("--transitions", type=int, help="dataset size (default: the builder's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true",
                   help="rebuild even if built (needed to change the size or seed of a built dataset)")
    p.set_defaults(func=cmd_data_build)
    p = data.add_parser("list", help="buildable and local datasets")
    p.set_defaults(func=cmd_data_list)
    p = data.add_parser("info", help="size, spaces, rewards and reference scores of a dataset")
    p.add_argument("id")
    p.set_defaults(func=cmd_data_info)

    p = sub.add_parser("demo", help="train FlowQ, FQL, QIPO and the baselines that frame them (3 seeds) on small "
                                    "local datasets; table and figures under runs/demo/report")
    p.add_argument("--out", help="where the evaluations, tables, aggregates and plots go (default RUNS/report; "
                                 "--out results/demo regenerates the copy shipped in the repository)")
    p.add_argument("--runs", default="runs/demo", help="where the run directories go")
    p.add_argument("--all", action="store_true", help="every registered algorithm, not only the demo's six")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("toy-figure", help="train the flow methods on toy/bimodal-v0 and scatter their actions "
                                          "next to the data (results/toy)")
    p.add_argument("--out", default="results/toy", help="where the figure, samples and summary go")
    p.add_argument("--samples", type=int, default=1000, help="actions drawn per panel")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_toy_figure)

    p = sub.add_parser("collect", help="one tidy CSV of every evaluation of the runs under DIR")
    p.add_argument("dir", help="a directory holding run directories, e.g. runs/demo")
    p.add_argument("--out", help="the CSV to write (default DIR/evals.csv)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("report", help="table of final scores (datasets by domain × algorithms) from run directories")
    p.add_argument("dir", help="a directory holding run directories")
    add_protocol_options(p, ["normalized_score", "success_rate", "return_mean"])
    p.add_argument("--stat", default="std", choices=["std", "ci95"],
                   help="spread over seeds: sample std, or 95%% Student-t CI half-width of the mean")
    p.add_argument("--format", default="md", choices=["md", "latex", "csv"])
    p.add_argument("--published", action="store_true",
                   help="add columns of published numbers (FQL paper) for the algorithms and datasets present")
    p.add_argument("--out", help="also write the table to this file")
    p.add_argument("--export-selection", metavar="FILE",
                   help="with a selection rule: write the picked values as suite `algorithms:` entries with "
                        "per_dataset overrides (YAML), for a later suite")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("timing", help="time the policy update, the full update and acting against the number of "
                                      "flow steps K; CSV, plot and ratios (results/timing)")
    p.add_argument("--algos", help="comma-separated algorithms (default: every one with flow/diffusion steps)")
    p.add_argument("--flow-steps", default="1,2,4,8,16,32", help="comma-separated values of K")
    p.add_argument("--parts", default="policy_update,full_update,act", help="what to time")
    p.add_argument("--updates", type=int, default=10, help="timed calls per cell (at least; cheap cells make more)")
    p.add_argument("--rounds", type=int, default=5, help="the timed calls are split into rounds that visit every cell")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per cell first")
    p.add_argument("--batch-size", type=int, default=256, help="transitions per update")
    p.add_argument("--act-batch", type=int, default=256, help="observations per act call")
    p.add_argument("--profile", help="network profile, e.g. cpu (default: the paper's network sizes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default="1", metavar="N[,N...]",
                   help="seeds trained as one batched model per timed call, e.g. 1,8 (each count is a cell; "
                        "throughput is reported per seed-update)")
    p.add_argument("--cuda-graph", default="auto", metavar="auto|off[,...]",
                   help="auto: on CUDA, each timed call is captured as a CUDA graph and replayed; off: eager; "
                        "auto,off times both in the same run")
    p.add_argument("--compile", default="off", metavar="auto|on|off[,...]",
                   help="the full update compiled for the CPU (harness/compiling.py): on, off (eager; default), auto "
                        "(on where the agent's compiled step pays off); off,on times both in the same run")
    add_tf32_option(p)
    p.add_argument("--out", default="results/timing", help="where timing.csv, timing.png and summary.md go")
    p.add_argument("--from-benchmark", metavar="JSON", help="plot a saved pytest-benchmark JSON of tests/benchmarks "
                                                            "instead of measuring")
    p.set_defaults(func=cmd_timing)

    for name, func, what in (("aggregate", cmd_aggregate, "IQM, mean, median, optimality gap with stratified "
                                                          "bootstrap CIs and P(X > baseline) (rliable); "
                                                          "aggregates.md and .csv"),
                             ("plot", cmd_plot, "learning curves per dataset and rliable's aggregate plots, "
                                                "PNG and PDF")):
        p = sub.add_parser(name, help=f"{what}, under DIR/report")
        p.add_argument("dir", help="a directory holding run directories")
        add_protocol_options(p, ["normalized_score", "success_rate"])
        p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
        p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
        p.add_argument("--baseline", help="probability of improvement of every other algorithm over this one "
                                          "(default: the highest IQM)")
        p.add_argument("--out", help="output directory (default DIR/report)")
        p.set_defaults(func=func)

    p = sub.add_parser("sweep", help="run a suite (algorithms × datasets × seeds) as submitit jobs: a SLURM job "
                                     "array, or local processes")
    p.add_argument("suite", help="suite YAML file, or the name of a shipped suite (slurm/suites/NAME.yaml)")
    p.add_argument("--executor", default="local", choices=["local", "slurm", "debug"],
                   help="local: processes on this machine (default); slurm: one job array; debug: in this process")
    p.add_argument("--cluster-profile", help="cluster profile YAML, or a name in slurm/profiles/ (e.g. example-gpu)")
    p.add_argument("--results", default="runs", help="run directories go to RESULTS/SUITE/ALGO/DATASET/seedS")
    p.add_argument("--dry-run", action="store_true", help="print the runs and what would happen; submit nothing")
    p.add_argument("--wait", action="store_true", help="slurm: wait until every job has ended")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("status", help="one row per run under DIR: state, step, last score, job id; errors of failed runs")
    p.add_argument("dir", help="a suite's results directory, e.g. runs/demo")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="replay run directories (config, CSV rows, summary) into TensorBoard or W&B")
    p.add_argument("dir", help="a run directory, or a directory holding run directories")
    p.add_argument("--to", required=True, choices=("tensorboard", "wandb"),
                   help=f"tensorboard: RUN/{rundir.TENSORBOARD}/ written anew; wandb: a new W&B run per run directory")
    add_wandb_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("algos", help="list registered algorithms")
    p.add_argument("-v", "--verbose", action="store_true", help="show config fields and profiles")
    p.set_defaults(func=cmd_algos)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command as given, recorded next to results it regenerates
    from harness.data import DatasetUnavailable
    from harness.datasets import UnknownDataset
    from harness.files import CheckpointCorrupt, DiskFull
    from harness.locks import RunLocked
    from harness.online import OnlineResumeMismatch
    from harness.run import RunConfigMismatch
    from harness.trainer import RunDiverged

    try:
        scale_arguments(args, step_scale())
        return args.func(args)
    except (*EXPECTED_ERRORS, DatasetUnavailable, UnknownDataset, RunConfigMismatch, RunLocked, CheckpointCorrupt) as e:
        print(f"flowbench: error: {e}", file=sys.stderr)
        return 2
    except (RunDiverged, DiskFull, OnlineResumeMismatch) as e:  # the run's fault or the machine's: no traceback
        print(f"flowbench: error: {e.strerror if isinstance(e, OSError) else e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flowbench: interrupted; the run resumes from its last checkpoint when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
