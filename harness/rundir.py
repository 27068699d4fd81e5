"""The run directory: the names of its files, where runs live, how they are found, and what finished means.

One run (one algorithm, dataset, config and seed) writes one directory. This module is the only place
that names its files; every other module asks it.

- ``config.json``  (``CONFIG``) the resolved config: written when the run starts (``harness.run``);
- ``train.csv``    (``TRAIN_LOG``) and ``eval.csv`` (``EVAL_LOG``) the logs, appended as the run trains;
- ``checkpoint.pt`` (``CHECKPOINT``) the latest checkpoint, and ``checkpoint.prev.pt`` the one before it
  until the run finishes (``harness.files``);
- ``summary.json`` (``SUMMARY``) written when the run finishes: a run is *finished* when it has one;
- ``error.txt``    (``ERROR``) the traceback of a failed attempt, or why the run diverged;
- ``job.json``     (``JOB``) the scheduler's record of the job it was last submitted in (``harness.cluster``);
- ``.lock``        (``LOCK``) held by the one process writing the directory (``harness.locks``);
- ``tensorboard/`` (``TENSORBOARD``) the TensorBoard tracker's event files (``harness.tracking``);
- ``tracker.json`` (``TRACKER``) the W&B tracker's run id and the last step it sent; ``wandb/`` (``WANDB``) W&B's
  own files (offline runs: ``wandb/offline-run-*/run-ID.wandb``, for ``wandb sync``).

A suite's results root holds ``suite.json`` (``PROTOCOL``: the suite's reporting protocol,
``harness.protocol``) above its runs, laid out ``ROOT/LABEL/DATASET/seedS`` (``run_path``), the same
scheme as ``flowbench run``'s default ``runs/single/ALGO/DATASET/seedS``. A grid variant's label
(``fql[alpha=3,sampling_steps=10]``, ``harness.grids``) names its directory with ``@`` for the brackets
(``fql@alpha=3,sampling_steps=10``: ``label_dir``, reversed by ``dir_label``): shells read brackets as
glob patterns (zsh refuses an unmatched one), and no suite label or grid value holds an ``@``.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.json"
TRAIN_LOG = "train.csv"
EVAL_LOG = "eval.csv"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
ERROR = "error.txt"
JOB = "job.json"
LOCK = ".lock"
PROTOCOL = "suite.json"
TENSORBOARD = "tensorboard"
TRACKER = "tracker.json"
WANDB = "wandb"

# eval.csv's columns: phase is offline, or online after --online-steps; online_return is the mean return of the
# online episodes since the last row.
EVAL_COLUMNS = ["step", "seconds", "return_mean", "return_std", "normalized_score", "success_rate", "phase",
                "online_return"]
# What may sit in a run directory before the run has started: the scheduler's job record (written when it is
# submitted) and an earlier attempt's error. Anything else there that is not a run is refused.
FILES_BEFORE_START = frozenset({ERROR, JOB})
# What a fresh start removes: logs of an earlier attempt that never checkpointed are stale.
LOGS = (TRAIN_LOG, EVAL_LOG, SUMMARY)
# submitit's own folder of job scripts and logs, beside the runs of a sweep: never a run.
SUBMITIT_FOLDER = ".submitit"

SINGLE_RUNS = Path("runs/single")  # where `flowbench run` puts a run without --out


VARIANT_MARK = "@"  # stands for a grid variant's "[" in its directory's name; its "]" is dropped


def label_dir(label: str) -> str:
    """The directory name of a label: itself, or for a grid variant ``entry[k=v,...]`` → ``entry@k=v,...``."""
    if label.endswith("]") and "[" in label:
        return label[:-1].replace("[", VARIANT_MARK, 1)
    return label


def dir_label(name: str) -> str:
    """The label a directory name stands for (``label_dir`` reversed)."""
    entry, mark, values = name.partition(VARIANT_MARK)
    return f"{entry}[{values}]" if mark else name


def run_path(root: Path | str, label: str, dataset: str, seed: int) -> Path:
    """``ROOT/LABEL/DATASET/seedS``, the label as ``label_dir`` names it, the dataset id's slashes as underscores
    (one folder per dataset)."""
    return Path(root) / label_dir(label) / dataset.replace("/", "_") / f"seed{seed}"


def is_finished(run_dir: Path) -> bool:
    """A run is finished when it has written its summary (its last act)."""
    return (Path(run_dir) / SUMMARY).exists()


def has_started(run_dir: Path) -> bool:
    """A run has started when it has written its config."""
    return (Path(run_dir) / CONFIG).exists()


def find_run_dirs(root: Path | str, started_only: bool = False) -> list[Path]:
    """Run directories below ``root`` (``root`` itself included), sorted: those holding a ``config.json`` (started)
    or a ``job.json`` (submitted, maybe not started yet); ``started_only``: the started ones. submitit's folders
    are never runs."""
    root = Path(root)
    markers = (CONFIG,) if started_only else (CONFIG, JOB)
    found = {p.parent for marker in markers for p in root.rglob(marker)}
    return sorted(p for p in found if SUBMITIT_FOLDER not in p.parts)


def find_protocol_files(root: Path) -> list[Path]:
    """The ``suite.json`` files below ``root``, sorted (submitit's folders left out)."""
    return sorted(p for p in Path(root).rglob(PROTOCOL) if SUBMITIT_FOLDER not in p.parts)
