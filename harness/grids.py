"""Hyperparameter grids: how a suite entry's list-valued overrides expand into variants, and how a variant is named.

In a suite, an algorithm entry's ``overrides`` (and its ``per_dataset`` overrides) may hold lists; each list is
one axis of a grid, and the entry runs once per combination::

    fql: {overrides: {alpha: [1, 3, 10], sampling_steps: [5, 10]}}   # six variants

A config field that is itself a list (``actor_hidden_dims: [256, 256]``) takes a list as one value; its grid is
a list of lists (``actor_hidden_dims: [[256, 256], [512, 512]]``).

A variant is labelled ``ENTRY[KEY=VALUE,KEY=VALUE]`` with the grid's keys in the order written, e.g.
``fql[alpha=3,sampling_steps=10]``; a list value is written with ``x`` between its items (``256x256``). That
label is the table's column name and ``config.json``'s ``run.label``; its run directory is named by
``harness.rundir.label_dir``. Every grid value must be writable in a file name: numbers, booleans, and strings
of letters, digits, ``_ . + -`` (a list's string items without ``x``).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

OPEN, CLOSE, SEPARATOR, LIST_ITEMS = "[", "]", ",", "x"
SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.+-]+$")
VARIANT = re.compile(r"^(?P<entry>[^\[\]]+)\[(?P<values>[^\[\]]*)\]$")


class GridError(ValueError):
    """A grid that cannot be expanded: an empty list, a value of the wrong shape, a value no file name can hold."""


def value_text(value: Any, where: str) -> str:
    """How ``value`` is written in a variant's label (and so in its directory's name)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise GridError(f"{where}: an empty list cannot be a grid value")
        if any(isinstance(v, str) and LIST_ITEMS in v for v in value):  # 'x' separates a list's items
            raise GridError(f"{where}: grid value {value!r} cannot name a run directory: the items of a list "
                            f"value are numbers, true/false or strings without 'x'")
        return LIST_ITEMS.join(value_text(v, where) for v in value)
    if isinstance(value, str) and SAFE_TEXT.match(value):
        return value
    raise GridError(f"{where}: grid value {value!r} cannot name a run directory: grid values are numbers, "
                    f"true/false, or strings of letters, digits, '_', '.', '+', '-'")


def grid_axes(overrides: dict[str, Any], list_fields: set[str], where: str) -> dict[str, list[Any]]:
    """The keys of ``overrides`` that are grids, with their values. A value is a grid when it is a list, except
    for a config field that is itself a list (``list_fields``): there a grid is a list of lists."""
    axes: dict[str, list[Any]] = {}
    for key, value in overrides.items():
        if not isinstance(value, list):
            continue
        if key in list_fields and not any(isinstance(v, list) for v in value):
            continue  # one value of a list-valued field, e.g. actor_hidden_dims: [256, 256]
        at = f"{where}.{key}"
        if not value:
            raise GridError(f"{at}: an empty list is no grid; give at least one value, e.g. {key}: [1, 3]")
        if key in list_fields:
            if not all(isinstance(v, list) for v in value):
                raise GridError(f"{at}: {key} takes a list as one value, so its grid is a list of lists "
                                f"(e.g. [[256, 256], [512, 512]]); got {value!r}")
        elif any(isinstance(v, (list, dict)) for v in value):
            raise GridError(f"{at}: {key} takes one value, so its grid is a flat list (e.g. {key}: [1, 3]); "
                            f"got {value!r}")
        for v in value:
            value_text(v, at)
        if any(v == w for i, v in enumerate(value) for w in value[i + 1:]):  # 1 and 1.0 too: the same config
            raise GridError(f"{at}: grid values repeat: {value!r}")
        axes[key] = list(value)
    return axes


def expand(overrides: dict[str, Any], list_fields: set[str], where: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every combination of ``overrides``' grids, in the order written (the last key varying fastest), as
    (the variant's overrides, its grid values); a single ``({...}, {})`` when nothing is a grid."""
    axes = grid_axes(overrides, list_fields, where)
    variants = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination))
        variants.append(({**overrides, **values}, values))
    return variants


def variant_label(entry: str, values: dict[str, Any]) -> str:
    """``entry[key=value,...]``, or ``entry`` itself for no grid values."""
    if not values:
        return entry
    inner = SEPARATOR.join(f"{k}={value_text(v, f'{entry}.{k}')}" for k, v in values.items())
    return f"{entry}{OPEN}{inner}{CLOSE}"


def split_label(label: str) -> tuple[str, dict[str, str]]:
    """(the suite entry, its grid values as written in the label) of a variant label; ``(label, {})`` for a
    label of no grid."""
    match = VARIANT.match(label)
    if not match:
        return label, {}
    pairs = [item.partition("=") for item in match.group("values").split(SEPARATOR) if item]
    return match.group("entry"), {key: text for key, _, text in pairs}
