"""Experiment trackers: a run's config, rows and summary mirrored to TensorBoard or Weights & Biases.

The run directory's CSV files stay the ground truth; a tracker is a view of them for watching, filtering and
sharing runs. It is never a failure cause: a tracker that fails (at start or mid-run: a read-only log dir, W&B
unreachable) is reported in one warning line and switched off, and the run goes on writing its CSV files.

One tracker run per run directory (seeds batched in one process: one each), created by ``open_tracker``:

- ``tensorboard``: event files in the run directory's ``tensorboard/`` folder (``harness.rundir.TENSORBOARD``),
  so ``tensorboard --logdir runs/SUITE`` names each run by its path, ``LABEL/DATASET/seedS``. Rows are written as
  they come and flushed before each checkpoint is saved; a resumed run first rewrites its event files without
  the events past the checkpoint's step (each file replaced atomically) and opens its writer with that
  ``purge_step``, so a TensorBoard already showing the dropped points drops them too.
- ``wandb``: one W&B run whose id is kept in the run directory (``harness.rundir.TRACKER``) and resumed
  (``resume="allow"``) by every later attempt. W&B cannot take a logged step back, so rows are sent once they
  are final: those up to a checkpoint's step right after that checkpoint is saved (the W&B view lags by up to
  ``--checkpoint-every`` steps). A kill also loses what W&B had not yet written or sent (its transaction log is
  written in 32 KiB blocks), so a resumed attempt first asks what W&B holds — online the resumed run's starting
  step, offline the history in the earlier attempts' run files, read with W&B's own reader — and sends the CSV
  rows after that up to its checkpoint. Offline mode (``mode: offline``) writes ``wandb/offline-run-*`` in the
  run directory, one per attempt, for ``wandb sync`` later.

Each row goes under its CSV column names, ``train/<column>`` and ``eval/<column>`` (numeric columns; the
values as written to the CSV), at its step; the resolved config (``config.json``'s content) is the tracker
run's config (TensorBoard: a ``config`` text at step 0), and the summary its summary (TensorBoard: a text).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness import rundir
from harness.files import atomic_write_bytes, atomic_write_text, read_csv, read_json

TRACKERS = ("none", "tensorboard", "wandb")
WANDB_MODES = ("online", "offline")
# the package each tracker needs, and the extra of flowbench that installs it
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
DEFAULT_PROJECT = "flowbench"


class TrackerUnavailable(ValueError):
    """A tracker was asked for whose package is not installed."""


@dataclass(frozen=True)
class TrackerSettings:
    """Which tracker a run mirrors itself to, and W&B's options (a suite's ``tracker:`` block, or
    ``flowbench run --tracker ... --wandb-*``)."""

    kind: str = "none"  # none | tensorboard | wandb
    project: str | None = None  # W&B project (default: the suite's name, else "flowbench")
    entity: str | None = None  # W&B entity (team or user; default: the API key's)
    mode: str | None = None  # W&B mode: online | offline (default: W&B's own, WANDB_MODE, else online)
    tags: tuple[str, ...] = ()  # W&B tags added to the run's own (suite, label, dataset, seed)
    suite: str | None = None  # the suite the run belongs to (set by the suite, not by hand)

    def check(self, where: str = "--tracker") -> None:
        """Valid choices, and the tracker's package importable: before anything is written."""
        if self.kind not in TRACKERS:
            raise ValueError(f"{where}: unknown tracker {self.kind!r}; valid choices: {', '.join(TRACKERS)}")
        if self.mode is not None and self.mode not in WANDB_MODES:
            raise ValueError(f"{where}: W&B mode must be one of {', '.join(WANDB_MODES)}, got {self.mode!r}")
        wandb_only = [name for name in ("project", "entity", "mode", "tags") if getattr(self, name)]
        if wandb_only and self.kind != "wandb":
            raise ValueError(f"{where}: {', '.join(wandb_only)} appl{'ies' if len(wandb_only) == 1 else 'y'} to the "
                             f"wandb tracker only (tracker is {self.kind!r})")
        if self.kind != "none":
            check_installed(self.kind)


def check_installed(kind: str) -> None:
    package = PACKAGES[kind]
    try:
        __import__(package)
    except ImportError as e:
        raise TrackerUnavailable(f"the {kind} tracker needs the {package} package, which is not installed "
                                 f"({e}); install it with: pip install \"flowbench[{package}]\"") from None


def warn(kind: str, out: Path, error: BaseException) -> None:
    """The one line a failing tracker costs."""
    reason = " ".join(str(error).split()) or type(error).__name__
    print(f"flowbench: warning: {kind} tracker of {out} switched off ({type(error).__name__}: {reason[:300]}); "
          f"the run goes on, its CSV files hold everything", file=sys.stderr, flush=True)


def numeric(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's numeric values (as written to the CSV), without its step."""
    out = {}
    for key, value in row.items():
        if key == "step" or value is None or value == "" or isinstance(value, bool):
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue  # text columns (eval's phase) stay in the CSV
    return out


class Tracker:
    """The calls a run makes; the base class tracks nothing (``--tracker none``). A subclass's failure in any
    call is caught by ``GuardedTracker``."""

    kind = "none"

    def log(self, kind: str, step: int, row: Mapping[str, Any]) -> None:
        """A ``train`` or ``eval`` row, as written to its CSV."""

    def before_checkpoint(self, step: int) -> None:
        """A checkpoint at ``step`` is about to be saved."""

    def after_checkpoint(self, step: int) -> None:
        """A checkpoint at ``step`` was saved: rows up to it are final."""

    def finish(self, summary: Mapping[str, Any]) -> None:
        """The run finished with ``summary``."""

    def close(self) -> None:
        """The attempt ends (finished, interrupted, failed)."""


class GuardedTracker(Tracker):
    """Forwards every call to ``inner`` until one raises; then one warning line, and nothing more."""

    def __init__(self, inner: Tracker | None, out: Path, kind: str):
        self.inner, self.out, self.kind = inner, out, kind

    def _call(self, method: str, *args: Any) -> None:
        if self.inner is None:
            return
        try:
            getattr(self.inner, method)(*args)
        except Exception as e:  # noqa: BLE001 — a tracker never stops a run
            inner, self.inner = self.inner, None
            warn(self.kind, self.out, e)
            try:
                inner.close()
            except Exception:  # noqa: BLE001 — already reported
                pass

    def log(self, kind: str, step: int, row: Mapping[str, Any]) -> None:
        self._call("log", kind, step, row)

    def before_checkpoint(self, step: int) -> None:
        self._call("before_checkpoint", step)

    def after_checkpoint(self, step: int) -> None:
        self._call("after_checkpoint", step)

    def finish(self, summary: Mapping[str, Any]) -> None:
        self._call("finish", summary)

    def close(self) -> None:
        if self.inner is not None:
            self._call("close")
            self.inner = None


def open_tracker(settings: TrackerSettings, out: Path, resolved: Mapping[str, Any], resume_step: int | None
                 ) -> Tracker:
    """The tracker of the run in ``out`` (config ``resolved``), fresh or resuming from a checkpoint at
    ``resume_step``; one that fails to start is reported and replaced by none."""
    if settings.kind == "none":
        return Tracker()
    try:
        inner: Tracker = (TensorBoardTracker if settings.kind == "tensorboard" else WandbTracker)(
            settings, out, resolved, resume_step)
    except Exception as e:  # noqa: BLE001 — a tracker never stops a run
        warn(settings.kind, out, e)
        return Tracker()
    return GuardedTracker(inner, out, settings.kind)


def config_markdown(resolved: Mapping[str, Any]) -> str:
    return "```json\n" + json.dumps(resolved, indent=2, default=str) + "\n```"


# -- TensorBoard ---------------------------------------------------------------------------------------

def event_files(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.glob("events.out.tfevents.*") if p.is_file())


def drop_events_after(log_dir: Path, step: int) -> int:
    """Rewrites each event file of ``log_dir`` without its events past ``step`` (each file replaced atomically:
    a kill in the middle leaves every file old or new, and the next resume does the rest). Returns the number
    of events dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for path in event_files(log_dir):
        records = list(RawEventFileLoader(str(path)).Load())  # a record cut short by a kill is left out
        kept = [r for r in records if event_pb2.Event.FromString(r).step <= step]
        if len(kept) == len(records) and path.stat().st_size == sum(len(r) + 16 for r in records):
            continue
        dropped += len(records) - len(kept)
        buffer = io.BytesIO()
        writer = RecordWriter(buffer)
        for record in kept:
            writer.write(record)
        atomic_write_bytes(path, buffer.getvalue())
    return dropped


def quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a failed write after storing it for the writer's next call, where our
    guard reports it in one line; Python would also print the thread's traceback. That print alone is left out."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "flowbench_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.thread, _AsyncWriterThread):
            previous(args)

    hook.flowbench_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class TensorBoardTracker(Tracker):
    kind = "tensorboard"

    def __init__(self, settings: TrackerSettings, out: Path, resolved: Mapping[str, Any], resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        quiet_writer_threads()
        log_dir = out / rundir.TENSORBOARD
        log_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:  # a fresh start: events of an attempt that never saved a checkpoint are stale
            for path in event_files(log_dir):
                path.unlink()
        else:
            drop_events_after(log_dir, resume_step)
        self.writer = SummaryWriter(str(log_dir), purge_step=None if resume_step is None else resume_step + 1)
        if resume_step is None:
            self.writer.add_text("config", config_markdown(resolved), 0)

    def log(self, kind: str, step: int, row: Mapping[str, Any]) -> None:
        for key, value in numeric(row).items():
            self.writer.add_scalar(f"{kind}/{key}", value, step)

    def before_checkpoint(self, step: int) -> None:
        self.writer.flush()  # everything up to the checkpoint's step is on disk before the checkpoint is

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.writer.add_text("summary", config_markdown(summary), int(summary.get("steps", 0)))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# -- Weights & Biases ----------------------------------------------------------------------------------

def wandb_names(settings: TrackerSettings, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """Group, job type, name and tags: a suite's runs group by algorithm label × dataset with no manual work."""
    run = resolved.get("run", {})
    label = run.get("label") or run.get("algo")
    dataset, seed = run.get("dataset"), run.get("seed")
    group = f"{label}/{dataset}" if settings.suite is None else f"{settings.suite}/{label}/{dataset}"
    tags = [t for t in (settings.suite, label, dataset, f"seed{seed}") if t] + list(settings.tags)
    return {"group": group, "job_type": label, "name": f"{group}/seed{seed}",
            "tags": [t[:64] for t in dict.fromkeys(tags)]}  # W&B's tags are at most 64 characters


class WandbTracker(Tracker):
    kind = "wandb"

    def __init__(self, settings: TrackerSettings, out: Path, resolved: Mapping[str, Any], resume_step: int | None,
                 new_run: bool = False):
        """``new_run``: a W&B run of its own, not the run directory's (``export``)."""
        import wandb
        from wandb.sdk.lib.runid import generate_id

        self.out = out
        self.run_id = None if new_run else (read_json(out / rundir.TRACKER) or {}).get("wandb_run_id")
        if self.run_id is None:
            self.run_id = generate_id()
            if not new_run:
                atomic_write_text(out / rundir.TRACKER, json.dumps({"wandb_run_id": self.run_id}, indent=2))
        self.offline = settings.mode == "offline" or (settings.mode is None and wandb_mode_from_env() == "offline")
        # what earlier attempts made durable: offline, the rows in their run files (read before this attempt adds
        # its own); online, the server says (the resumed run's starting step)
        durable = durable_offline_step(out, self.run_id) if self.offline and resume_step is not None else None
        self.pending: dict[int, dict[str, float]] = {}
        wandb.setup(wandb.Settings(silent=True))  # W&B's own notices (credentials, sync hints) stay out of the logs
        self.run = wandb.init(
            id=self.run_id, resume="allow", project=settings.project or settings.suite or DEFAULT_PROJECT,
            entity=settings.entity, mode=settings.mode, dir=str(out), config=dict(resolved), allow_val_change=True,
            reinit="create_new", settings=wandb.Settings(silent=True, console="off", disable_git=True),
            **wandb_names(settings, resolved))
        self.sent_through = 0
        if resume_step is not None:
            self.sent_through = durable if durable is not None else max(0, self.run.starting_step - 1)
            # the rows up to the checkpoint that W&B lost (a kill loses what W&B had not written or sent yet)
            for kind, name in (("train", rundir.TRAIN_LOG), ("eval", rundir.EVAL_LOG)):
                for row in read_csv(out / name):
                    if self.sent_through < float(row["step"]) <= resume_step:
                        self.log(kind, int(float(row["step"])), row)
            self.after_checkpoint(resume_step)

    def log(self, kind: str, step: int, row: Mapping[str, Any]) -> None:
        self.pending.setdefault(step, {}).update({f"{kind}/{k}": v for k, v in numeric(row).items()})

    def after_checkpoint(self, step: int) -> None:
        for s in sorted(s for s in self.pending if s <= step):
            if s > self.sent_through:
                self.run.log(self.pending[s], step=s)
            del self.pending[s]
        self.sent_through = max(self.sent_through, step)

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.after_checkpoint(int(summary.get("steps", 0)))
        self.run.summary.update({f"summary/{k}": v for k, v in summary.items()})
        self.run.finish(exit_code=0)
        self.run = None

    def close(self) -> None:
        if self.run is not None:  # interrupted or failed: W&B shows it as not finished
            self.run.mark_preempting()
            self.run.finish(exit_code=1)
            self.run = None


def wandb_mode_from_env() -> str | None:
    return os.environ.get("WANDB_MODE")


def offline_run_files(out: Path, run_id: str) -> list[Path]:
    """The W&B transaction logs of ``run_id``'s offline attempts in the run directory, oldest first."""
    return sorted((out / rundir.WANDB).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))


def read_wandb_file(path: Path) -> list[dict[str, Any]]:
    """The records of a W&B transaction log, read by W&B's own reader (``wandb leet inspect --json``); a log cut
    short by a kill gives the records written before it."""
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"wandb leet inspect {path} failed: {result.stderr.strip()[-300:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def durable_offline_step(out: Path, run_id: str) -> int:
    """The last step in the history of ``run_id``'s offline run files (0 if none). W&B writes its log in blocks,
    so a killed attempt's file holds only the rows of its completed blocks."""
    steps = [int(record["history"]["step"]["num"]) for path in offline_run_files(out, run_id)
             for record in read_wandb_file(path) if record.get("type") == "history"]
    return max(steps, default=0)


def open_trackers(settings: TrackerSettings, outs: Sequence[Path], resolved: Sequence[Mapping[str, Any]],
                  resume_step: int | None) -> list[Tracker]:
    """One tracker run per run directory (seeds batched in one process: one each)."""
    return [open_tracker(settings, out, res, resume_step) for out, res in zip(outs, resolved)]


def export_run(settings: TrackerSettings, out: Path) -> int:
    """Replays the run directory ``out`` (its config, every CSV row, its summary if finished) into a new tracker
    run: TensorBoard's event files in ``out/tensorboard`` are written anew; W&B gets a run of its own (the run
    directory's live W&B run, if any, is left as it is). Returns the number of rows replayed. Unlike a run's
    tracker, a failure here is an error."""
    resolved = read_json(out / rundir.CONFIG)
    if resolved is None:
        raise ValueError(f"{out} holds no started run ({rundir.CONFIG} is missing)")
    run = resolved.get("run", {})
    suite = settings.suite or (run.get("tracker") or {}).get("suite")
    settings = TrackerSettings(settings.kind, settings.project, settings.entity, settings.mode, settings.tags, suite)
    tracker: Tracker = (TensorBoardTracker(settings, out, resolved, None) if settings.kind == "tensorboard"
                        else WandbTracker(settings, out, resolved, None, new_run=True))
    rows, last = 0, 0
    try:
        for kind, name in (("train", rundir.TRAIN_LOG), ("eval", rundir.EVAL_LOG)):
            for row in read_csv(out / name):
                step = int(float(row["step"]))
                tracker.log(kind, step, row)
                rows, last = rows + 1, max(last, step)
        tracker.before_checkpoint(last)
        tracker.after_checkpoint(last)
        summary = read_json(out / rundir.SUMMARY)
        if summary is not None:
            tracker.finish(summary)
    finally:
        tracker.close()
    return rows
