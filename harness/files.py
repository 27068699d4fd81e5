"""File I/O that no fault leaves half-done: atomic writes, checksummed checkpoints, clear disk-full errors.

Every file is written to a hidden temporary beside its target (``.NAME.tmpPID``) and renamed over it,
so a reader (or a resumed run) sees the old file or the new one, never a mix. A write that fails
removes its temporary; a run starting in a directory first removes temporaries that a killed
writer left (``remove_temporaries``), so an earlier disk-full or kill cannot keep the disk full.

A checkpoint is ``torch.save``'s bytes behind a one-line header holding their SHA-256. It is
verified after writing and before use; until the new one is verified, the previous one is kept as
``checkpoint.prev.pt`` (at every moment ``checkpoint.pt`` holds a complete checkpoint, old or new).
It is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, so a
checkpoint someone else wrote (a shared cluster file system) cannot run code when a run resumes from it
(the checksum proves the file is whole, not who wrote it).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch

CHECKPOINT_MAGIC = b"FLOWBENCH-CHECKPOINT sha256="
PREVIOUS_SUFFIX = ".prev"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """A write ran out of space; nothing of it is left on disk."""


class CheckpointCorrupt(RuntimeError):
    """A checkpoint file is truncated, empty or fails its checksum."""


def temporary_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and ".tmp" in path.name


def remove_temporaries(directory: Path) -> list[Path]:
    """Deletes the hidden temporaries of interrupted writes in ``directory`` (call it holding the
    directory's lock, so no live writer owns them) and returns them."""
    removed = [p for p in directory.iterdir() if p.is_file() and is_temporary(p)] if directory.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """Yields the temporary to write; renames it over ``path`` on success, removes it on any failure and
    turns running out of space into ``DiskFull`` naming ``path``. (Writers serialise in memory first, so
    the failing call is a plain write: torch's own writer would say "unexpected pos" instead.)"""
    tmp = temporary_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            raise no_space_error(path) from e
        raise


def no_space_error(path: Path) -> DiskFull:
    free = shutil.disk_usage(path.parent).free
    return DiskFull(errno.ENOSPC, f"no space left on device: {path} ({free} bytes free); free some space and run "
                                  f"the same command again: it resumes from the last checkpoint")


def atomic_write_bytes(path: Path, data: bytes, sync: bool = False) -> None:
    with _writing(Path(path)) as tmp:
        with tmp.open("wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(obj: Any, path: Path) -> None:
    """Writes ``obj`` with its checksum, verifies what landed on disk, and only then replaces ``path``;
    the checkpoint it replaces stays as ``checkpoint.prev.pt``."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    data = CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    with _writing(path) as tmp:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _verified_payload(tmp.read_bytes(), tmp)
        if path.exists():  # keep the last good one: hard-link it to .prev, so checkpoint.pt never goes missing
            previous = previous_checkpoint(path)
            staged = temporary_for(previous)
            staged.unlink(missing_ok=True)
            try:
                os.link(path, staged)
            except OSError as e:  # a file system without hard links: a copy does the same, slower
                if e.errno in NO_SPACE:
                    raise
                shutil.copyfile(path, staged)
            os.replace(staged, previous)


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(f"{path.stem}{PREVIOUS_SUFFIX}{path.suffix}")


def load_checkpoint(path: Path) -> Any:
    """The checkpoint at ``path``, verified; ``CheckpointCorrupt`` says which file is broken and what to do."""
    path = Path(path)
    try:
        payload = _verified_payload(path.read_bytes(), path)
        return _unpickle_data_only(payload)
    except CheckpointCorrupt as e:
        raise CheckpointCorrupt(f"{e}; {_recovery_advice(path)}") from None
    except pickle.UnpicklingError as e:
        raise CheckpointCorrupt(f"checkpoint {path} holds something other than tensors and plain values, which "
                                f"flowbench never writes; it was refused unread ({str(e).splitlines()[0]}). "
                                f"{_recovery_advice(path)}") from None
    except Exception as e:  # noqa: BLE001 — an unreadable checkpoint of any kind gets the same advice
        raise CheckpointCorrupt(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                                f"{_recovery_advice(path)}") from None


def _unpickle_data_only(payload: bytes) -> Any:
    """``torch.load`` restricted to data (``weights_only``): a pickle that would import or call anything raises
    ``pickle.UnpicklingError`` before it runs."""
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _verified_payload(data: bytes, path: Path) -> bytes:
    if not data:
        raise CheckpointCorrupt(f"checkpoint {path} is empty")
    if not data.startswith(CHECKPOINT_MAGIC):
        return data  # written before checksums: torch.load still says whether it is whole
    header, newline, payload = data.partition(b"\n")
    expected = header[len(CHECKPOINT_MAGIC):].decode(errors="replace")
    if not newline or hashlib.sha256(payload).hexdigest() != expected:
        raise CheckpointCorrupt(f"checkpoint {path} fails its checksum (truncated or altered on disk)")
    return payload


def _recovery_advice(path: Path) -> str:
    previous = previous_checkpoint(path)
    restart = f"delete {path} (and {previous.name}) to restart the run from step 0"
    if not previous.exists():
        return restart
    try:
        step = _unpickle_data_only(_verified_payload(previous.read_bytes(), previous))["agent"]["step"]
    except Exception:  # noqa: BLE001 — the previous one is broken too
        return f"{previous.name} is broken too; {restart}"
    return f"resume from the previous checkpoint (step {step}) with: mv {previous} {path}; or {restart}"


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it does not exist or is not (yet) valid JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class CsvLog:
    """Append-only CSV whose header is fixed by its first row; rows are flushed as written."""

    def __init__(self, path: Path, columns: list[str] | None = None, defaults: dict[str, str] | None = None):
        """``columns`` fixes a new file's header; an existing file written before some of them existed gets
        them (filled from ``defaults``) so later rows lose nothing."""
        self.path = path
        self.columns = columns
        if path.exists() and path.stat().st_size:
            with path.open(newline="") as f:
                existing = next(csv.reader(f))
            if columns and set(existing) < set(columns):
                rows = [{**(defaults or {}), **r} for r in read_csv(path)]
                self._rewrite(rows)
            else:
                self.columns = existing

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, text.getvalue())

    def truncate_after(self, step: int) -> None:
        """Drops rows past ``step`` (written after the checkpoint a resumed run starts from)."""
        rows = [r for r in read_csv(self.path) if _complete_row_step(r) <= step]
        if self.columns is None:
            return
        self._rewrite(rows)

    def write(self, row: dict[str, Any]) -> dict[str, Any]:
        """Appends one row and returns it as written (floats to 6 significant digits); a row that cannot be
        written whole (disk full) is cut off again, so the file always ends with a complete row."""
        if self.columns is None:
            self.columns = list(row)
        size = self.path.stat().st_size if self.path.exists() else 0
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        if size == 0:
            writer.writeheader()
        written = {k: _fmt(row.get(k, "")) for k in self.columns}
        writer.writerow(written)
        data = text.getvalue().encode()
        with self.path.open("ab", buffering=0) as f:
            try:
                while data:
                    data = data[f.write(data):]
            except OSError as e:
                os.ftruncate(f.fileno(), size)
                if e.errno in NO_SPACE:
                    raise no_space_error(self.path) from e
                raise
        return written


def _complete_row_step(row: dict[str, str | None]) -> float:
    """A row's step, or inf for a row cut short (by a kill in the middle of its write): dropped on resume."""
    try:
        return float(row["step"]) if None not in row.values() and None not in row else math.inf
    except (TypeError, ValueError):
        return math.inf


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
