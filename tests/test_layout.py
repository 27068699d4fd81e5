"""The house's plan, checked on its source: one module owns the run directory's file names; algorithm files
stand on the kit (``algos/kit``) and never on each other; every import goes down the floors below (none up, no
cycle); and the scheduler (``harness/cluster``) does not reach into the reports (``harness/reporting``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from harness import rundir

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"
RUN_FILES = [rundir.CONFIG, rundir.TRAIN_LOG, rundir.EVAL_LOG, rundir.CHECKPOINT, rundir.SUMMARY, rundir.ERROR,
             rundir.JOB, rundir.LOCK, rundir.PROTOCOL, rundir.TRACKER]


def string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal in the module's code (f-string parts included), docstrings and comments left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_run_directory_file_names_are_written_in_rundir_only():
    pattern = re.compile("|".join(rf"(^|[^\w.]){re.escape(name)}($|\W)" for name in RUN_FILES))
    offenders = [f"{path.relative_to(HARNESS.parent)}:{line}: {text!r}"
                 for path in sorted(HARNESS.rglob("*.py")) if path.name != "rundir.py"
                 for line, text in string_constants(path) if pattern.search(text)]
    assert not offenders, "run-directory file names outside harness/rundir.py:\n" + "\n".join(offenders)


def test_the_check_finds_a_file_name_written_as_a_literal(tmp_path):
    """The grep above is no tautology: a module that writes a name itself is caught."""
    module = tmp_path / "m.py"
    module.write_text('"""A docstring naming config.json is fine."""\nPATH = "runs/x/" + "summary.json"\n')
    assert [text for _, text in string_constants(module)] == ["runs/x/", "summary.json"]


def test_the_scheduler_does_not_import_the_reports():
    for path in sorted((HARNESS / "cluster").rglob("*.py")):
        imported = [node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module] + \
                   [alias.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)
                    for alias in node.names]
        assert not [m for m in imported if m.startswith("harness.reporting")], (path, imported)


# -- floors ------------------------------------------------------------------------------------------------

# The house's floors, bottom up: a unit imports from its own floor or below. A unit is a module, or a whole
# package where its modules belong together (the kit, the algorithms, a scheduler, the reports, the dataset
# builders). README, "Layout", describes them.
FLOORS: list[tuple[str, ...]] = [
    ("algos.kit",),
    ("algos",),
    ("harness", "harness.files", "harness.rundir", "harness.protocol", "harness.provenance", "harness.seeding",
     "harness.locks", "harness.envs", "harness.grids", "harness.cpu_allocator"),
    ("harness.datasets", "harness.data", "harness.reporting", "harness.tracking"),
    ("harness.training", "harness.evaluation", "harness.online"),
    ("harness.trainer",),
    ("harness.run",),
    ("harness.timing", "harness.toy_figure", "harness.demo", "harness.cluster"),
    ("harness.cli",),
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def unit_of(module: str) -> str:
    """The floor unit a dotted module name belongs to: its longest prefix that is a unit."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in FLOOR:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to the README's layout)")


def project_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted([*(ROOT / "algos").rglob("*.py"), *HARNESS.rglob("*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts as a.b where that is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {name for name in names if name in modules}


def import_graph() -> tuple[set[str], set[tuple[str, str]]]:
    """Units and the edges between different units."""
    modules = project_modules()
    edges = {(unit_of(m), unit_of(i)) for m, path in modules.items() for i in imports_of(path, modules)}
    return {unit_of(m) for m in modules}, {(a, b) for a, b in edges if a != b}


def test_algorithm_files_import_only_the_kit():
    modules = project_modules()
    for name, path in modules.items():
        if name.startswith("algos.") and not name.startswith("algos.kit"):
            assert all(i.startswith("algos.kit") for i in imports_of(path, modules)), (name, imports_of(path, modules))
        if name.startswith("algos.kit"):
            assert all(i.startswith("algos.kit") for i in imports_of(path, modules)), (name, imports_of(path, modules))


def test_every_import_goes_down_a_floor_or_stays_and_none_is_a_cycle():
    units, edges = import_graph()
    assert set(FLOOR) == units, f"units on no floor or floors without a unit: {set(FLOOR) ^ units}"
    upward = sorted((a, b) for a, b in edges if FLOOR[b] > FLOOR[a])
    assert not upward, f"imports that go up a floor: {upward}"
    graph = {unit: {b for a, b in edges if a == unit} for unit in units}
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> None:
        assert unit not in path, f"import cycle: {' -> '.join(path[path.index(unit):] + [unit])}"
        if unit not in done:
            for nxt in graph[unit]:
                visit(nxt, [*path, unit])
            done.add(unit)

    for unit in sorted(units):
        visit(unit, [])


def test_the_floor_check_sees_an_upward_import():
    """Not a tautology: the kit importing an algorithm would be an edge up two floors."""
    assert FLOOR[unit_of("algos.fql")] > FLOOR[unit_of("algos.kit.agent")]
    assert FLOOR[unit_of("harness.cli")] > FLOOR[unit_of("harness.cluster.sweep")] > FLOOR[unit_of("harness.run")]
