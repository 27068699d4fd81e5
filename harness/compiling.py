"""The training step compiled for the CPU with ``torch.compile`` (inductor), one compiled function per code path.

On the CPU a small-MLP update spends much of its time in Python, per-op dispatch and unfused elementwise
passes; inductor fuses the elementwise work into vectorised C++ loops and runs each graph from one call.
``CompiledCall`` compiles one training step — the minibatch drawn from the buffer, then ``agent.train_step`` on
it, the unit a CUDA graph captures — for one code path (``agent.graph_key()``) so that it trains exactly as the
eager step does:

- One graph per code path: while compiling, ``Agent.minimize`` and ``Agent.coast`` run their functional form
  (``algos/kit/traced_optim.py``: ``torch.autograd.grad``, which dynamo traces with ``trace_autograd_ops``, and
  Adam's arithmetic on the optimiser's own state), so losses, gradients and optimiser steps of every network
  compile together, where ``backward()`` and ``optimizer.step()`` would break the graph at each call.

- Random numbers: every draw of a training step goes through the minibatch sampler or ``agent.rng`` (each an
  ``algos.kit.seeds.SeedRandom``). The first call of a code path runs eagerly with a ``RecordingRandom`` in
  place of each, which logs every draw (method and arguments, in order). Later calls draw those tensors eagerly
  from the real generators in the same order (the minibatch's first, as the eager step draws them), before the
  compiled call — so the generators advance exactly as in eager training and checkpoints stay valid — and the
  compiled function takes them from a ``ReplayRandom`` in each one's place: the minibatch's rows are drawn
  outside, its gathers from the buffer compile with the rest of the step.
  A draw whose arguments are tensors computed inside the step (``multinomial``) cannot be drawn ahead: that
  code path stays eager, and says so.
- Learning rates become 0-d tensors (``set_lr`` then changes them in place): a Python float would be a
  constant of the compiled graph, and a schedule would recompile it every step.
- If compiling fails, or a code path keeps recompiling (its guards fail: the step reads Python state that
  changes), that code path runs eagerly from then on, with one ``CompileFallbackWarning`` naming the reason.
  A failure on the first compiled call restores the agent's state from before it and reruns the step eagerly.
- Compiled artifacts are cached on disk across processes (inductor's FX graph cache and the AOT autograd
  cache) under ``$FLOWBENCH_COMPILE_CACHE``, else ``$TORCHINDUCTOR_CACHE_DIR``, else
  ``~/.cache/flowbench/inductor`` (``configure_compile_cache``), so the tests, the demo and a sweep's jobs
  compile each code path once per machine.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Hashable, Protocol

import torch

from algos.kit.agent import Agent, Batch
from algos.kit.seeds import SeedRandom

COMPILE_MODES = ("auto", "on", "off")
# After its first compiled call a code path may compile again this many times (a new shape, a dynamo
# recompile for a reason that goes away) before it counts as recompiling repeatedly and runs eagerly.
MAX_RECOMPILES = 2
# ``--compile auto`` compiles CPU runs of at least this many updates of these agents (``compile_pays_off``).
# Measured here (results/timing/cpu_compile.md: default threads, eager and compiled each in its own process, timed
# in turns), compiled / eager: 1.2–2.5× for every agent but SRPO (1.03–1.40× over runs: its update is mostly
# 1024-wide matrix products, which compiling does not speed up), after a cold compile of 21–101 s (4–18 s warm);
# the updates a cold compile takes to pay for itself, cold seconds / (eager − compiled seconds per update): 3k
# (Diffusion-QL) to 14k (BC, flow BC) for all but SRPO (~0.3M at 1.03×, which a full SRPO run exceeds).
AUTO_MIN_UPDATES = 30_000
AUTO_COMPILE_AGENTS: frozenset[str] = frozenset({
    "bc", "cac", "diffusion_ql", "fawac", "fbrac", "flow_bc", "flowq", "fql", "idql", "ifql", "iql", "qipo",
    "qipo_diff", "rebrac", "srpo"})


class MinibatchSource(Protocol):
    """What a step draws its minibatch from (``harness.data.TransitionBuffer``, ``harness.online.OnlineReplay``)."""

    def sample(self, batch_size: int, rng: SeedRandom) -> Batch: ...


class CompileFallbackWarning(UserWarning):
    """A code path could not be compiled (or kept recompiling); it runs eagerly."""


class UnreplayableDraw(Exception):
    """A step drew random numbers whose arguments it computed itself: they cannot be drawn ahead."""


def default_cache_dir() -> Path:
    """Where compiled artifacts are kept: ``$FLOWBENCH_COMPILE_CACHE``, else ``$TORCHINDUCTOR_CACHE_DIR``, else
    ``~/.cache/flowbench/inductor``."""
    for var in ("FLOWBENCH_COMPILE_CACHE", "TORCHINDUCTOR_CACHE_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return Path.home() / ".cache" / "flowbench" / "inductor"


def configure_compile_cache() -> Path:
    """Turns on inductor's on-disk caches (FX graphs, AOT autograd) in ``default_cache_dir()``; returns it.
    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it looks up its cache, so setting it here, before the
    first compile, is enough."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    path = default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    inductor_config.fx_graph_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = True
    return path


def configure_dynamo() -> None:
    """Dynamo's per-code-object recompile limit (8) counts every agent and code path of a process that runs
    the same functions (``Agent.minimize``, the layers): a test process of every agent passes it. Raise it,
    and make hitting it an error (caught: that code path falls back with a warning) rather than a silent
    switch to eager."""
    import torch._dynamo

    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), 256))
    if hasattr(config, "accumulated_recompile_limit"):
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4096)
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True
    # trace torch.autograd.grad into the graph: the whole update (losses, gradients, Adam) becomes one graph
    # (algos/kit/traced_optim.py), where backward() and optimizer.step() would each break it
    if hasattr(config, "trace_autograd_ops"):
        config.trace_autograd_ops = True


def configure_inductor() -> None:
    """tanh as ``2 / (1 + exp(-2x)) - 1`` in inductor's C++ kernels (``cpp.use_decompose_tanh``): GELU in its tanh
    form is every MLP layer's activation here, and the decomposed form halved its kernels' time in the compiled
    FQL step (6.1 → 3.1 ms of 21 per update, profiled, one process) at the same accuracy (a GELU of 256×256
    N(0, 9) inputs: largest error against float64 5.0e-7, eager's 4.3e-7; ±inf and NaN as eager)."""
    import torch._inductor.config as inductor_config

    if hasattr(inductor_config.cpp, "use_decompose_tanh"):
        inductor_config.cpp.use_decompose_tanh = True


def compile_pays_off(agent_name: str, device: torch.device, updates: int | None) -> bool:
    """``--compile auto``: compile where it pays off — the CPU (CUDA has its CUDA graphs), an agent whose
    compiled step measured faster (``AUTO_COMPILE_AGENTS``) and a run of at least ``AUTO_MIN_UPDATES``
    updates (a cold compile costs tens of seconds here; see results/timing/cpu_compile.md)."""
    return (device.type == "cpu" and agent_name in AUTO_COMPILE_AGENTS
            and updates is not None and updates >= AUTO_MIN_UPDATES)


def compile_wanted(mode: str, agent_name: str, device: torch.device, updates: int | None) -> bool:
    """Whether ``--compile MODE`` compiles the training step: ``on`` always (where no CUDA graph is captured),
    ``off`` never, ``auto`` where ``compile_pays_off``."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return mode == "on" or (mode == "auto" and compile_pays_off(agent_name, device, updates))


class RecordingRandom:
    """``SeedRandom``'s draws, passed through to ``real`` and logged in order as ``(method, args)``."""

    def __init__(self, real: SeedRandom):
        self.real = real
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        self.unreplayable: str | None = None

    def __len__(self) -> int:
        return len(self.real)

    def __getattr__(self, name: str) -> Any:
        if name == "generators":  # drawing from the generators directly bypasses the log
            self.unreplayable = self.unreplayable or "the step reads agent.rng.generators (draws not logged)"
        return getattr(self.real, name)

    def randn(self, shape: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        self.log.append(("randn", (tuple(shape), dtype)))
        return self.real.randn(shape, dtype)

    def rand(self, shape: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        self.log.append(("rand", (tuple(shape), dtype)))
        return self.real.rand(shape, dtype)

    def randint(self, high: int, shape: Any) -> torch.Tensor:
        self.log.append(("randint", (int(high), tuple(shape))))
        return self.real.randint(high, shape)

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:
        self.unreplayable = self.unreplayable or "the step draws multinomial samples from probabilities it computes"
        return self.real.multinomial(probs)


class ReplayRandom:
    """Hands out tensors drawn ahead, in the order they were logged (inside the compiled step)."""

    def __init__(self, log: list[tuple[str, tuple[Any, ...]]], seeds: int):
        self.log, self.seeds = log, seeds
        self.draws: list[torch.Tensor] = []
        self.position = 0

    def __len__(self) -> int:
        return self.seeds

    def _next(self, method: str) -> torch.Tensor:
        expected = self.log[self.position][0]
        if expected != method:  # decided while tracing: the step's draws differ from the logged ones
            raise UnreplayableDraw(f"draw {self.position} is {method}, the first call drew {expected}")
        draw = self.draws[self.position]
        self.position += 1
        return draw

    def randn(self, shape: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self._next("randn")

    def rand(self, shape: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self._next("rand")

    def randint(self, high: int, shape: Any) -> torch.Tensor:
        return self._next("randint")

    def multinomial(self, probs: torch.Tensor) -> torch.Tensor:
        raise UnreplayableDraw("multinomial draws depend on the step's own tensors")


def tensor_learning_rates(agent: Agent) -> None:
    """Every optimiser's learning rates as 0-d tensors (``Agent.set_lr`` fills them in place), so a schedule
    does not change a constant of the compiled graph."""
    for optimizer in agent.optimizers().values():
        for group in optimizer.param_groups:
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=agent.device)


class StateSnapshot:
    """The agent's training state (weights, optimiser state, generators, extra state) and the minibatch
    sampler's generators, restored in place: the tensors stay the same objects, so the other code paths'
    compiled functions (whose guards check them) stay valid after a failed compile is undone."""

    def __init__(self, agent: Agent, sampler: SeedRandom):
        self.agent = agent
        self.generators = [*agent.generators, *sampler.generators]
        self.generator_states = [g.get_state() for g in self.generators]
        self.modules = {k: {n: t.detach().clone() for n, t in m.state_dict().items()}
                        for k, m in agent.modules().items()}
        self.optimizers = {k: {p: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in s.items()}
                               for p, s in o.state.items()} for k, o in agent.optimizers().items()}
        self.lrs = {k: [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"] for g in o.param_groups]
                    for k, o in agent.optimizers().items()}
        self.extra = copy.deepcopy(agent.extra_state())

    @torch.no_grad()
    def restore(self) -> None:
        agent = self.agent
        for g, state in zip(self.generators, self.generator_states):
            g.set_state(state)
        for k, m in agent.modules().items():
            for n, t in m.state_dict().items():
                t.copy_(self.modules[k][n])
        for k, o in agent.optimizers().items():
            for p in list(o.state):
                if p not in self.optimizers[k]:
                    del o.state[p]  # state the failed call created
                    continue
                for n, v in self.optimizers[k][p].items():
                    if isinstance(v, torch.Tensor):
                        o.state[p][n].copy_(v)
                    else:
                        o.state[p][n] = v
            for group, lr in zip(o.param_groups, self.lrs[k]):
                if isinstance(lr, torch.Tensor):
                    group["lr"].copy_(lr)
                else:
                    group["lr"] = lr
            for p in (p for group in o.param_groups for p in group["params"]):
                p.grad = None
        agent.load_extra_state(copy.deepcopy(self.extra))


class CompiledCall:
    """One training step of one code path (a minibatch of ``batch_size`` from ``buffer`` drawn with ``sampler``,
    then ``agent.train_step`` on it): eager with recording rngs on the first call, compiled after.

    ``compiled_calls`` counts the calls that ran the compiled function; ``fallback_reason`` says why the
    code path runs eagerly, if it does.
    """

    def __init__(self, agent: Agent, buffer: MinibatchSource, batch_size: int, sampler: SeedRandom, name: str):
        self.agent, self.buffer, self.batch_size, self.sampler, self.name = agent, buffer, batch_size, sampler, name
        self.batch_rng: Any = sampler  # what the step draws its minibatch with: the sampler, or its stand-in
        self.log: list[tuple[str, tuple[Any, ...]]] | None = None  # the agent's draws
        self.batch_log: list[tuple[str, tuple[Any, ...]]] | None = None  # the minibatch's draws
        self.replay: ReplayRandom | None = None
        self.batch_replay: ReplayRandom | None = None
        self.compiled: Callable[[], dict[str, torch.Tensor]] | None = None
        self.graphs = 0  # graphs the backend compiled for this code path
        self.graphs_after_first = -1
        self.recompiles = 0
        self.compiled_calls = 0
        self.fallback_reason: str | None = None

    @property
    def active(self) -> bool:
        """Whether the compiled function runs (or will, from the next call)."""
        return self.fallback_reason is None

    def train_step(self) -> dict[str, torch.Tensor]:
        """The step as it runs eagerly, and as it is compiled (with ``batch_rng`` and ``agent.rng`` replaying)."""
        return self.agent.train_step(self.buffer.sample(self.batch_size, self.batch_rng))

    def __call__(self) -> dict[str, torch.Tensor]:
        if self.fallback_reason is not None:
            return self.train_step()
        if self.log is None:
            return self._record()
        return self._compiled()

    def _record(self) -> dict[str, torch.Tensor]:
        real = self.agent.rng
        recorder, batch_recorder = RecordingRandom(real), RecordingRandom(self.sampler)
        self.agent.rng, self.batch_rng = recorder, batch_recorder
        try:
            metrics = self.train_step()
        finally:
            self.agent.rng, self.batch_rng = real, self.sampler
        unreplayable = batch_recorder.unreplayable or recorder.unreplayable
        if unreplayable:
            self._fall_back(unreplayable)
        self.log, self.batch_log = recorder.log, batch_recorder.log
        self.replay = ReplayRandom(self.log, len(real))
        self.batch_replay = ReplayRandom(self.batch_log, len(self.sampler))
        return metrics

    def _backend(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        return compile_fx(gm, example_inputs)

    def _compiled(self, dynamic: bool | None = None) -> dict[str, torch.Tensor]:
        agent, replay, batch_replay = self.agent, self.replay, self.batch_replay
        first = self.compiled is None
        snapshot = StateSnapshot(agent, self.sampler) if first else None
        if first:
            tensor_learning_rates(agent)
            # dynamic=None: an int the step reads (agent.step) becomes symbolic after one recompile instead of
            # recompiling every step; where that fails, static shapes are tried once more
            self.compiled = torch.compile(self.train_step, backend=self._backend, dynamic=dynamic)
        real = agent.rng
        # drawn in the eager step's order: the minibatch's rows, then the agent's numbers
        batch_replay.draws = [getattr(self.sampler, method)(*args) for method, args in self.batch_log]
        replay.draws = [getattr(real, method)(*args) for method, args in self.log]
        replay.position = batch_replay.position = 0
        agent.rng, self.batch_rng = replay, batch_replay
        try:
            metrics = self.compiled()
        except Exception as e:  # noqa: BLE001 — any compiler failure: run eagerly, and say why
            agent.rng, self.batch_rng = real, self.sampler
            if not first:
                raise RuntimeError(f"compiled {self.name} failed after it had run (the step's state may be "
                                   f"partly updated, so it is not rerun): {type(e).__name__}: {e}") from e
            snapshot.restore()  # the generators too: the rerun draws the same numbers
            if dynamic is None:
                self.compiled = None
                return self._compiled(dynamic=False)
            self._fall_back(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return self.train_step()
        finally:
            agent.rng, self.batch_rng = real, self.sampler
        for used, log in ((replay.position, self.log), (batch_replay.position, self.batch_log)):
            if used != len(log):
                # every draw the first call made must be used (a draw skipped would shift later steps' numbers);
                # the values of this call were right only if none is left, so stop here rather than diverge later
                raise RuntimeError(f"compiled {self.name} used {used} of its {len(log)} random draws")
        self.compiled_calls += 1
        if first:
            self.graphs_after_first = self.graphs
        elif self.graphs > self.graphs_after_first:
            self.recompiles += 1
            self.graphs_after_first = self.graphs
            if self.recompiles > MAX_RECOMPILES:
                self._fall_back(f"it recompiled {self.recompiles} times after its first compiled call (guards "
                                f"failing: the step reads Python state that changes between calls)")
        return metrics

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        self.compiled = None
        warnings.warn(f"compile off for {self.name}, running it eagerly: {reason}", CompileFallbackWarning,
                      stacklevel=4)


class CompiledSteps:
    """One ``CompiledCall`` per code path of ``agent`` (``agent.graph_key()``): calls train one step each, on a
    minibatch of ``batch_size`` drawn from ``buffer`` with ``sampler``; they return the step's metrics."""

    def __init__(self, agent: Agent, buffer: MinibatchSource, batch_size: int, sampler: SeedRandom):
        configure_compile_cache()
        configure_dynamo()
        configure_inductor()
        self.agent, self.buffer, self.batch_size, self.sampler = agent, buffer, batch_size, sampler
        self.paths: dict[Hashable, CompiledCall] = {}

    def __call__(self) -> dict[str, torch.Tensor]:
        key = self.agent.graph_key()
        if key not in self.paths:
            self.paths[key] = CompiledCall(self.agent, self.buffer, self.batch_size, self.sampler,
                                           f"{type(self.agent).__name__}.train_step (code path {key!r})")
        return self.paths[key]()

    @property
    def compiled_calls(self) -> int:
        return sum(p.compiled_calls for p in self.paths.values())

    @property
    def mode(self) -> str:
        """``compiled``; ``compiled (partly)`` where some code path runs eagerly; ``eager`` where none compiled."""
        compiled = any(p.compiled_calls for p in self.paths.values())
        failed = any(p.fallback_reason for p in self.paths.values())
        return ("compiled (partly)" if failed else "compiled") if compiled else "eager"
