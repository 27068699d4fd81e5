"""One writer per run directory: an exclusive lock held for a run's life, released on any exit.

The lock is ``flock`` on ``RUN_DIR/.lock``: the kernel releases it when its holder exits, however
it exits (``kill -9`` included), so no lock outlives a process on this machine. The holder writes
who it is into the file (pid, host, SLURM job id, start time), which names it to a second writer
and to ``flowbench status``. Where ``flock`` is not shared between the nodes of a cluster (some
network file systems keep it per node), the file is the fallback: a holder recorded on another
node still counts while its SLURM job runs, unless that job is this very job (a requeued job that
landed on another node: its earlier attempt is gone).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from harness import rundir

LOCK_FILE = rundir.LOCK


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    job_id: str | None
    since: str

    def describe(self) -> str:
        job = f", SLURM job {self.job_id}" if self.job_id else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.since}"


class RunLocked(RuntimeError):
    """Another live process writes this run directory."""


def this_job_id() -> str | None:
    """This process's SLURM job (``ARRAYJOB_TASK`` for an array task, as ``squeue`` names it)."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def me() -> Holder:
    return Holder(os.getpid(), socket.gethostname(), this_job_id(), time.strftime("%Y-%m-%d %H:%M:%S"))


def read_holder(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # no file, or empty: nobody recorded


def slurm_job_running(job_id: str) -> bool:
    """Whether SLURM still runs (or holds) ``job_id``; True when it cannot be asked (assume the holder lives)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return True
    if out.returncode != 0:
        return "Invalid job id" not in out.stderr
    return bool(out.stdout.strip())


def _recorded_holder_lives(holder: Holder | None) -> bool:
    """For a lock this process could take: does the file still name a live holder on another node?"""
    if holder is None or holder.host == socket.gethostname():
        return False  # on this machine flock is authoritative: the holder has exited
    if holder.job_id is None:
        return False  # flock was free, and no scheduler to ask: the node that held it let go
    return holder.job_id != this_job_id() and slurm_job_running(holder.job_id)


class RunDirLock:
    """``with RunDirLock(run_dir):`` holds ``run_dir``'s lock, or raises ``RunLocked`` naming the holder."""

    def __init__(self, run_dir: Path, advice: str = "wait for it to finish (flowbench status shows it), or stop it, "
                                                     "or choose another --out"):
        self.path = Path(run_dir) / LOCK_FILE
        self.advice = advice
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> None:
        self.created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(6):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_holder(self.path)
                if holder is not None or attempt == 5:  # no holder recorded: `status` peeking; try again
                    os.close(fd)
                    raise RunLocked(self._message(holder)) from None
                time.sleep(0.05)
        holder = read_holder(self.path)
        if _recorded_holder_lives(holder):
            os.close(fd)
            raise RunLocked(self._message(holder))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me())).encode(), 0)
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)  # nobody holds it now
        if self.created and [p.name for p in self.path.parent.iterdir()] == [LOCK_FILE]:
            self.path.unlink()  # a run refused before writing anything leaves no empty directory behind
            self.path.parent.rmdir()
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None

    def _message(self, holder: Holder | None) -> str:
        who = holder.describe() if holder else "another process"
        return f"{self.path.parent} is being written by {who}; {self.advice}"

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def run_dir_locks(run_dirs: list[Path]) -> Iterator[None]:
    """Holds every directory's lock (all or none), in a fixed order so that two writers cannot deadlock."""
    with contextlib.ExitStack() as stack:
        for run_dir in sorted({Path(d).resolve() for d in run_dirs}):
            stack.enter_context(RunDirLock(run_dir))
        yield


def current_holder(run_dir: Path) -> Holder | None:
    """Who holds ``run_dir``'s lock now, or None if nobody does (for ``flowbench status``)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or Holder(0, "?", None, "?")
    else:
        holder = read_holder(path)
        return holder if _recorded_holder_lives(holder) else None
    finally:
        os.close(fd)
