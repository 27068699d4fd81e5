"""The house's plan, checked on its source: one module owns the run directory's file names, and the scheduler
(``harness/cluster``) does not reach into the reports (``harness/reporting``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from harness import rundir

HARNESS = Path(__file__).resolve().parent.parent / "harness"
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
