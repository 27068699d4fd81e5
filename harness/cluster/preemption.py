"""A SLURM job's Python starts here, so that a SIGUSR2 in its first seconds is a preemption, not a death.

submitit runs ``PYTHON -u -m submitit.core._submit FOLDER`` and installs its SIGUSR2 handler only
after importing itself and unpickling the job (seconds: torch, gymnasium, MuJoCo); a SIGUSR2 before
that (a preemption or time-limit warning in a job's first seconds) killed the process, and SLURM
marked the job FAILED. ``flowbench sweep`` sets submitit's ``python`` to
``PYTHON -u -m harness.cluster.preemption``: this module imports nothing heavy and *blocks* SIGUSR2 at once,
so a signal that arrives while the job starts stays pending. Children started meanwhile inherit the
block (SLURM signals every process of the job step, and glfw's import runs helper Pythons).
``RunJob`` (harness.cluster.jobs) unblocks it once its own handler is in place: the pending signal then
stops the job at a clean point and requeues it. Only the interpreter's own start-up, tens of
milliseconds before this module runs, is left uncovered.
"""

from __future__ import annotations

import signal
import sys


def hold_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})


def deliver_held_signals() -> None:
    """Unblocks SIGUSR2; one that arrived while it was held is delivered now, to the current handler."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})


def main() -> None:
    hold_signals()
    from submitit.core.submission import process_job

    process_job(sys.argv[-1])  # argv: [-u -m submitit.core._submit] FOLDER


if __name__ == "__main__":
    main()
