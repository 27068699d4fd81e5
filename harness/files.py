"""File I/O that no fault leaves half-done: atomic writes, checksummed checkpoints, clear disk-full errors.

Every file is written to a hidden temporary beside its target (``.NAME.tmpPID``) and renamed over it,
so a reader (or a resumed run) sees the old file or the new one, never a mix. A write that fails
removes its temporary; a run starting in a directory first removes temporaries that a killed
writer left (``remove_temporaries``), so an earlier disk-full or kill cannot keep the disk full.

A checkpoint is ``torch.save``'s bytes behind a one-line header holding their SHA-256. It is
verified after writing and before use; until the new one is verified, the previous one is kept as
``checkpoint.prev.pt`` (at every moment ``checkpoint.pt`` holds a complete checkpoint, old or new).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
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
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    except CheckpointCorrupt as e:
        raise CheckpointCorrupt(f"{e}; {_recovery_advice(path)}") from None
    except Exception as e:  # noqa: BLE001 — an unreadable checkpoint of any kind gets the same advice
        raise CheckpointCorrupt(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                                f"{_recovery_advice(path)}") from None


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
        step = torch.load(io.BytesIO(_verified_payload(previous.read_bytes(), previous)), map_location="cpu",
                          weights_only=False)["agent"]["step"]
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
