"""Scheduling suites: suite files (``suites``), submitting them as job arrays or local processes (``sweep``),
what a job runs (``jobs``, entered through ``preemption``), and where every run stands (``status``).

Kept free of imports: a SLURM job's Python starts in ``harness.cluster.preemption``, which must block SIGUSR2
before anything heavy is imported.
"""
