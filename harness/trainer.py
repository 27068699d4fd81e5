"""The training loop as objects: ``Trainer`` trains an agent of S seeds on a buffer; ``RunTrainer`` adds what a
run does around it — logs, evaluations, checkpoints, the online phase — with each phase a method.

``Trainer`` is what every caller that trains shares (a run, ``flowbench timing``'s full update, the toy
figure): each seed's minibatch drawn from its own sampler generator, the training step (eager, or a CUDA
graph per code path, ``harness.training``), the metric sums kept on the device until read.

``RunTrainer`` is one group of seeds of a run at the same step (all fresh, or all resumed from checkpoints of
one step), one batched agent; ``harness.run`` decides what a run is (spec, identity, locking, resume, seed
grouping) and hands it the group. Its loop, per update: the online phase's environment step (after the
offline steps), the update, then at their steps the logs (``train.csv``), an evaluation (``eval.csv``), a
checkpoint and the stop request; a diverged agent is never logged, evaluated or saved.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from algos import AgentConfig
from algos.kit.agent import Agent
from algos.kit.registry import make_seeded_agent
from algos.kit.seeds import SeedRandom, seed_state
from harness import data as data_lib
from harness import rundir
from harness.cpu_allocator import configure_cpu_allocator
from harness.evaluation import evaluate_seeds
from harness.files import CsvLog, atomic_write_text, previous_checkpoint, read_csv, save_checkpoint
from harness.online import OnlineEnvs, OnlineReplay
from harness.tracking import Tracker, open_trackers
from harness.training import TrainingStep, configure_matmul_precision

# How a run shows its progress: "bar" (tqdm), "lines" (one line per evaluation on stderr, for logs and
# cluster jobs), "off", or "auto" (a bar on a terminal, lines otherwise).
Progress = Literal["auto", "bar", "lines", "off"]


class RunInterrupted(Exception):
    """Training stopped early on request (``should_stop``), right after saving a checkpoint."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}, checkpoint saved")
        self.step = step


class RunDiverged(FloatingPointError):
    """A loss or a parameter became NaN or infinite; the run stopped before evaluating or saving it."""


class Trainer:
    """Trains ``agent`` (S seeds) one update per call on minibatches of ``batch_size`` from ``buffer``, seed i's
    drawn from a generator seeded ``seeds[i]``; ``cuda_graph``, ``compile`` and ``updates`` (the run's length, for
    ``compile="auto"``) as ``harness.training.TrainingStep``. On the CPU it first sets glibc's malloc for training
    (``harness.cpu_allocator``)."""

    def __init__(self, agent: Agent, buffer: data_lib.TransitionBuffer, seeds: Sequence[int], batch_size: int,
                 cuda_graph: str = "auto", compile: str = "off", updates: int | None = None):
        if agent.device.type == "cpu":
            configure_cpu_allocator()
        self.agent, self.batch_size, self.cuda_graph = agent, batch_size, cuda_graph
        self.samplers = [torch.Generator(device=agent.device).manual_seed(seed) for seed in seeds]
        self.step_fn = TrainingStep(agent, buffer, batch_size, SeedRandom(self.samplers, agent.device), cuda_graph,
                                    compile=compile, updates=updates)

    def __call__(self) -> None:
        """One update of every seed."""
        self.step_fn()

    def train(self, updates: int) -> Agent:
        for _ in range(updates):
            self.step_fn()
        return self.agent

    def read_means(self) -> list[dict[str, float]]:
        """Each seed's metrics averaged since the last read (``TrainingStep.read_means``)."""
        return self.step_fn.read_means()

    @property
    def mode(self) -> str:
        """How the steps ran (``TrainingStep.mode``: eager, cuda-graph, ...)."""
        return self.step_fn.mode

    def switch_buffer(self, buffer: data_lib.TransitionBuffer) -> None:
        """Minibatches from ``buffer`` from now on (the online phase's replay); the unread metric sums carry over."""
        sums, count = self.step_fn.state()
        compiled = self.step_fn.compiled  # its compiled code paths serve the new buffer's batches too
        self.step_fn = TrainingStep(self.agent, buffer, self.batch_size, self.step_fn.sampler, self.cuda_graph)
        self.step_fn.compiled = compiled
        self.step_fn.load_state(sums, count)


class RunTrainer:
    """One group of a run's seeds at the same step, trained as one batched agent; ``run()`` trains them to the
    run's last step and returns each seed's summary. ``spec`` is the group's shared ``harness.run.RunSpec``;
    ``outs``, ``resolved`` and ``checkpoints`` are per seed (a checkpoint, or None for a fresh start)."""

    def __init__(self, spec: Any, seeds: list[int], outs: list[Path], resolved: list[dict[str, Any]],
                 checkpoints: list[dict[str, Any] | None], data: data_lib.OfflineData, agent_config: AgentConfig,
                 device: torch.device, progress: Progress = "auto",
                 on_checkpoint: Callable[[int], None] | None = None, should_stop: Callable[[], bool] | None = None):
        self.spec, self.seeds, self.outs, self.resolved = spec, seeds, outs, resolved
        self.checkpoints, self.data, self.agent_config = checkpoints, data, agent_config
        self.on_checkpoint, self.should_stop = on_checkpoint, should_stop
        configure_matmul_precision(device, spec.tf32)
        self.agent = make_seeded_agent(spec.algo, data.obs_dim, data.act_dim, agent_config, seeds, device)
        self.agent.horizon = spec.steps  # schedules that decay over the run
        self.buffer = data_lib.TransitionBuffer(data, device, reward_transform=agent_config.reward_transform)
        self.trainer = Trainer(self.agent, self.buffer, seeds, agent_config.batch_size, spec.cuda_graph,
                               compile=spec.compile, updates=spec.total_steps)
        self.online: OnlineEnvs | None = None
        self.resume = checkpoints[0] is not None
        self.seconds_before = [0.0] * len(seeds)
        self.checkpoint_every = spec.checkpoint_every or spec.eval_every
        self.total = spec.total_steps
        self.label = f"s{seeds[0]}" if len(seeds) == 1 else "seeds " + ",".join(map(str, seeds))
        self.progress = ("bar" if sys.stderr.isatty() else "lines") if progress == "auto" else progress
        self.open_run_directories()
        self.trackers: list[Tracker] = open_trackers(spec.tracker, outs, resolved,
                                                     self.agent.step if self.resume else None)
        self.last_evals = [last_eval(out) for out in outs]
        self.start_time = time.perf_counter()
        self.start_step = self.agent.step

    # -- phases --------------------------------------------------------------------------------
    def open_run_directories(self) -> None:
        """Fresh start: stale logs of an attempt that never checkpointed removed. Resume: the agent, samplers and
        log sums restored, log rows past the checkpoint dropped, the summary removed until this attempt
        finishes. Either way each ``config.json`` is (re)written with the step this attempt starts from."""
        for out in self.outs:
            out.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                for name in rundir.LOGS:
                    (out / name).unlink(missing_ok=True)
        self.train_logs = [CsvLog(out / rundir.TRAIN_LOG) for out in self.outs]
        self.eval_logs = [CsvLog(out / rundir.EVAL_LOG, rundir.EVAL_COLUMNS, {"phase": "offline"}) for out in self.outs]
        if self.resume:
            self.agent.load_seed_state_dicts([ckpt["agent"] for ckpt in self.checkpoints])
            for sampler, ckpt in zip(self.trainer.samplers, self.checkpoints):
                sampler.set_state(ckpt["sampler"].cpu())
            self.seconds_before = [ckpt["seconds"] for ckpt in self.checkpoints]
            self.trainer.step_fn.load_state([ckpt["log_sums"] for ckpt in self.checkpoints],
                                            self.checkpoints[0]["log_count"])
            for log in (*self.train_logs, *self.eval_logs):
                log.truncate_after(self.agent.step)
            for out in self.outs:
                (out / rundir.SUMMARY).unlink(missing_ok=True)
        for out, resolved in zip(self.outs, self.resolved):
            resolved["resumed_from_step"] = self.agent.step
            resolved["trained_with_seeds"] = self.seeds  # the seeds batched in this process (not part of the identity)
            atomic_write_text(out / rundir.CONFIG, json.dumps(resolved, indent=2, default=str))

    def start_online(self) -> None:
        """From the offline step on: the replay (dataset + each seed's transitions), the envs and minibatches from
        the replay; a checkpoint of the online phase restores all three."""
        replay = OnlineReplay(self.buffer, len(self.seeds), self.spec.online_steps)
        self.online = OnlineEnvs(self.data, self.seeds, replay, self.agent_config.reward_transform, self.agent.device)
        states = [ckpt.get("online") if ckpt else None for ckpt in self.checkpoints]
        if self.resume and states[0] is not None and self.agent.step > self.spec.steps:
            replay.load_seed_states([st["replay"] for st in states])
            self.online.restore([st["envs"] for st in states])
        else:
            self.online.start()
        self.trainer.switch_buffer(replay)

    def elapsed(self, i: int) -> float:
        return self.seconds_before[i] + time.perf_counter() - self.start_time

    def log(self, step: int) -> None:
        means = self.trainer.step_fn.read_means()  # the only read back to the host between evaluations
        for i, row in enumerate(means):
            written = self.train_logs[i].write({"step": step, "seconds": self.elapsed(i), **row})
            self.trackers[i].log("train", step, written)

    def evaluate(self, step: int, bar: tqdm) -> None:
        spec = self.spec
        results = evaluate_seeds(self.agent, self.data, spec.eval_episodes, [s * 1000 + 10**6 for s in self.seeds])
        online_returns = self.online.read_returns() if self.online is not None else [None] * len(self.seeds)
        for i, result in enumerate(results):
            self.last_evals[i] = {"step": step, "seconds": self.elapsed(i), **result.row(),
                                  "phase": "online" if step > spec.steps else "offline",
                                  "online_return": "" if online_returns[i] is None else online_returns[i]}
            self.trackers[i].log("eval", step, self.eval_logs[i].write(self.last_evals[i]))
        bar.set_postfix(score=" ".join(f"{r.normalized_score:.1f}" for r in results))
        if self.progress == "lines":
            rate = (step - self.start_step) / (time.perf_counter() - self.start_time)
            print(progress_line(f"{spec.algo} {spec.dataset} {self.label}", step, self.total, results, rate),
                  file=sys.stderr, flush=True)

    def save_checkpoints(self) -> None:
        state = self.agent.state_dict()
        sums, count = self.trainer.step_fn.state()
        for tracker in self.trackers:
            tracker.before_checkpoint(self.agent.step)
        for i, out in enumerate(self.outs):
            online = None if self.online is None else {"replay": self.online.replay.seed_state(i),
                                                       "envs": self.online.seed_state(i)}
            save_checkpoint({"agent": seed_state(state, i), "sampler": self.trainer.samplers[i].get_state(),
                             "seconds": self.elapsed(i), "log_sums": sums[i], "log_count": count,
                             "config_hash": self.resolved[i]["config_hash"], "online": online},
                            out / rundir.CHECKPOINT)
        for tracker in self.trackers:
            tracker.after_checkpoint(self.agent.step)
        if self.on_checkpoint:
            self.on_checkpoint(self.agent.step)

    def check_finite(self, step: int, bar: tqdm) -> None:
        """Stops the run (``RunDiverged``, an ``error.txt`` per diverged seed) if any seed's losses since the last
        read, or its parameters, are not finite."""
        diverged = self.trainer.step_fn.non_finite_seeds()
        if not diverged:
            return
        bar.close()
        message = (f"diverged: non-finite loss or parameters by step {step} in seed(s) "
                   f"{', '.join(str(self.seeds[i]) for i in diverged)}; the last checkpoint (finite) is kept; lower "
                   f"the learning rate or check the data (see {self.outs[diverged[0]] / rundir.TRAIN_LOG})")
        for i in diverged:
            atomic_write_text(self.outs[i] / rundir.ERROR, f"RunDiverged: {message}\n")
        raise RunDiverged(message)

    def finish(self) -> list[dict[str, Any]]:
        """Each seed's ``summary.json`` (the run is finished from here on); the last checkpoint is verified, so the
        one before it goes."""
        spec, summaries = self.spec, []
        for i, out in enumerate(self.outs):
            summary = {
                "algo": spec.algo,
                "dataset": spec.dataset,
                "seed": self.seeds[i],
                "steps": self.agent.step,
                "online_steps": spec.online_steps,
                "seconds": self.elapsed(i),
                "config_hash": self.resolved[i]["config_hash"],
                "final": self.last_evals[i],
                "reference_source": None if self.data.reference is None else self.data.reference.source,
                "training_step": self.trainer.mode,
            }
            atomic_write_text(out / rundir.SUMMARY, json.dumps(summary, indent=2))
            previous_checkpoint(out / rundir.CHECKPOINT).unlink(missing_ok=True)
            self.trackers[i].finish(summary)
            summaries.append(summary)
        return summaries

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        spec, agent, total = self.spec, self.agent, self.total
        bar = tqdm(total=total, initial=min(agent.step, total), desc=f"{spec.algo} {spec.dataset} {self.label}",
                   disable=self.progress != "bar", dynamic_ncols=True)
        try:  # the bar and the online envs are closed however the loop ends (finished, stopped, diverged)
            while agent.step < total:
                if agent.step >= spec.steps and self.online is None:
                    self.start_online()
                if self.online is not None:
                    self.online.step(agent)
                self.trainer()
                step = agent.step
                bar.update(1)
                last_offline = step == spec.steps
                logging = step % spec.log_every == 0 or step == total or last_offline
                evaluating = step % spec.eval_every == 0 or step == total or last_offline
                saved = step % self.checkpoint_every == 0 or step == total or last_offline
                if logging or evaluating or saved:  # never log, evaluate or save a diverged agent
                    self.check_finite(step, bar)
                if logging:
                    self.log(step)
                if evaluating:
                    self.evaluate(step, bar)
                if saved:
                    self.save_checkpoints()
                if self.should_stop is not None and step < total and self.should_stop():
                    if not saved:
                        self.check_finite(step, bar)
                        self.save_checkpoints()
                    raise RunInterrupted(step)
            return self.finish()
        finally:
            bar.close()
            if self.online is not None:
                self.online.close()
            for tracker in self.trackers:  # finished ones are closed already; others end as not finished
                tracker.close()


def progress_line(name: str, step: int, steps: int, results: Sequence[Any], updates_per_second: float) -> str:
    """``NAME: step 2500/10000 (25%), score 41.2, 38.5 updates/s, ETA 03:15`` (one score per seed)."""
    scores = " ".join(f"{r.normalized_score:.1f}" for r in results)
    eta = (steps - step) / updates_per_second if updates_per_second > 0 else float("inf")
    return (f"{name}: step {step}/{steps} ({100 * step / steps:.0f}%), score {scores}, "
            f"{updates_per_second:.1f} updates/s, ETA {tqdm.format_interval(eta) if math.isfinite(eta) else '?'}")


def last_eval(out: Path) -> dict[str, Any] | None:
    rows = read_csv(out / rundir.EVAL_LOG)
    return {k: _number_or_text(v) for k, v in rows[-1].items()} if rows else None


def _number_or_text(value: str | None) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
