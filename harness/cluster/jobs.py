"""The callable a sweep's jobs run: one or more runs, one after another, requeued on preemption.

submitit pickles a ``RunJob`` and calls it inside the job. On SIGUSR2 (SLURM sends it before a
time limit, and on preemption or ``scancel --signal=USR2``) submitit calls ``checkpoint()``, requeues
the job and exits. Saving a run from inside the signal handler would catch the agent mid-update, so
``RunJob`` takes the signal itself and only notes it; the training loop sees the note at the next
step boundary, saves a checkpoint there and stops, and only then is submitit's handler run. The
requeued job resumes every unfinished run from its checkpoint (``harness.run`` drops CSV rows
written after a checkpoint, so none is lost or repeated) and skips the finished ones.

A SIGUSR2 that arrives before submitit's handler exists (in the job's first seconds) is held pending
by ``harness.cluster.preemption``, the job's entry point, and delivered here: the job is requeued before
anything trains. One that arrives after the last run (a late preemption, or ``scancel`` signals still in flight)
has nothing to save; it is held again, since during the interpreter's shutdown, with Python's handlers gone,
it would kill the finished job's Python, and the job would end as failed.

A run that raises leaves its traceback in ``error.txt`` in its directory (``flowbench status``
shows it); the job then goes on with its other runs and fails at the end. A run that another process
is writing (two sweeps of one suite) is left to it: skipped, not failed.
"""

from __future__ import annotations

import signal
import traceback
from typing import Any

import submitit

from harness import rundir
from harness.cluster import preemption
from harness.files import atomic_write_text
from harness.locks import RunLocked
from harness.run import RunSpec, finished_summary, train_seeds
from harness.trainer import RunInterrupted


class RunFailed(RuntimeError):
    """One or more runs of a job raised (their tracebacks are in their error.txt)."""


class RunJob(submitit.helpers.Checkpointable):
    """Trains its units one after another with ``threads`` torch threads; a unit is a list of runs that
    differ only in their seed, trained in one process as one batched model (a lone run is a unit of one)."""

    def __init__(self, units: list[list[RunSpec]] | list[RunSpec], threads: int = 1):
        self.units = [list(u) if isinstance(u, (list, tuple)) else [u] for u in units]
        self.threads = threads
        self._stop_signal: int | None = None

    @property
    def specs(self) -> list[RunSpec]:
        return [spec for unit in self.units for spec in unit]

    def __call__(self) -> list[dict[str, Any]]:
        import torch

        torch.set_num_threads(self.threads)
        submitit_handler = signal.getsignal(signal.SIGUSR2)
        if callable(submitit_handler):  # inside a submitit job: defer the checkpoint to a step boundary
            signal.signal(signal.SIGUSR2, self._note_signal)
        preemption.deliver_held_signals()  # one that came while the job started is noted now
        summaries, failed = [], []
        for unit in self.units:
            todo = [spec for spec in unit if finished_summary(spec) is None]
            if not todo:
                continue
            if self._stop_signal is not None:
                self._requeue(submitit_handler)
            outs = [spec.out_dir() for spec in todo]
            try:
                summaries.extend(train_seeds(todo, progress="lines", should_stop=lambda: self._stop_signal is not None))
            except RunInterrupted as stop:
                print(f"{', '.join(map(str, outs))}: {stop}; requeueing", flush=True)
                self._requeue(submitit_handler)
            except RunLocked as held:
                print(f"skipped: {held}", flush=True)
            except Exception:  # noqa: BLE001 — any failure is recorded for `flowbench status`, then the next unit
                for out in outs:  # the seeds of a unit train together, so each of them failed with it
                    out.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(out / rundir.ERROR, traceback.format_exc())
                    failed.append(str(out))
        preemption.hold_signals()  # every run is done or recorded: a SIGUSR2 from here on stays pending
        if failed:
            raise RunFailed(f"{len(failed)} of {len(self.specs)} runs failed (see {rundir.ERROR}): {', '.join(failed)}")
        return summaries

    def _note_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _requeue(self, submitit_handler: Any) -> None:
        """Hands over to submitit's handler: it calls ``checkpoint()``, requeues the job and exits."""
        signal.signal(signal.SIGUSR2, submitit_handler)
        submitit_handler(self._stop_signal, None)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # The runs' state is on disk (checkpoint.pt); the requeued job needs only the specs.
        return submitit.helpers.DelayedSubmission(RunJob(self.units, self.threads))

    def __repr__(self) -> str:
        return "RunJob(" + "; ".join(", ".join(f"{s.algo}/{s.dataset}/seed{s.seed}" for s in unit)
                                     for unit in self.units) + ")"
