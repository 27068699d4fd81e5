"""One training step — each seed's minibatch, the update, the metric sums — eager, or as a CUDA graph.

On a GPU these small MLP updates are bound by Python and kernel launches, not arithmetic: hundreds
of tiny kernels per step, each launched from Python. ``TrainingStep`` therefore captures the whole
step (batch sampling from the device generators, ``agent.train_step``, the target updates inside it
and the accumulation of the metrics into device tensors) once per code path — ``agent.graph_key()``,
e.g. ReBRAC's delayed actor step, QIPO's phases and renewals, Diffusion-QL's EMA steps — as a CUDA
graph, and replays it; ``agent.advance()`` (step count, learning rates) runs in Python after each
replay. Nothing is read back to the host until ``read_means()`` at a logging step.

- ``cuda_graph="auto"``: graphs on CUDA, eager elsewhere. ``"off"``: always eager.
- Each code path first runs eagerly ``warmup`` times (real updates, on a side stream): optimiser
  state and library workspaces must exist before capture. Then it is captured and replayed.
- Every generator the step draws from (each seed's agent and sampler generator) is registered with
  every graph, so replays draw fresh noise and the generators' states — saved in checkpoints — advance.
- If a capture fails, that code path runs eagerly, with one warning that names the reason.

On the CPU, ``compile="on"`` runs the step (the minibatch's gathers from the buffer, then ``agent.train_step``)
compiled by ``torch.compile`` instead, one compiled function per code path (``harness.compiling``); the draws of
its random numbers and the metric sums stay eager around it.
``"auto"`` compiles where ``harness.compiling.compile_pays_off`` says it pays (CPU, a run of ``updates`` long
enough); ``"off"``: never.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Hashable, Sequence

import torch

from algos.kit.agent import Agent
from algos.kit.networks import bias_activation_fusion
from algos.kit.seeds import SeedRandom
from harness.compiling import CompiledSteps, compile_wanted
from harness.data import TransitionBuffer

GRAPH_MODES = ("auto", "off")


def configure_matmul_precision(device: torch.device, tf32: bool = True) -> None:
    """On CUDA, float32 matmuls in TF32 (default) or full float32. TF32 is what the JAX reference code
    runs at (JAX's default float32 matmul precision on these GPUs), so it is flowbench's default too;
    ``--no-tf32`` asks for full precision. Nothing changes on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when there is one; asking for CUDA where there is none is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return resolved


def uses_cuda_graph(cuda_graph: str, device: torch.device) -> bool:
    """Whether ``--cuda-graph MODE`` captures the training step: ``auto`` on CUDA."""
    return cuda_graph == "auto" and device.type == "cuda"


def step_compiles(compile: str, cuda_graph: str, agent_name: str, device: torch.device, updates: int | None) -> bool:
    """Whether a training step is compiled: as ``--compile`` asks (``harness.compiling.compile_wanted``), and never
    a step captured as a CUDA graph."""
    return compile_wanted(compile, agent_name, device, updates) and not uses_cuda_graph(cuda_graph, device)


class GraphFallbackWarning(UserWarning):
    """A CUDA graph could not be captured; that call runs eagerly."""


class GraphPool:
    """One CUDA graph memory pool for graphs that never run at the same time (one per code path)."""

    def __init__(self) -> None:
        self.handle = None


class GraphedCall:
    """``fn()`` run eagerly ``warmup`` times (real calls, on a side stream: optimiser state and library
    workspaces must exist before capture), then captured once as a CUDA graph and replayed; returns
    what ``fn`` returned at capture (static tensors that every replay overwrites).

    ``fn`` must do tensor work only on ``device``: no reads back to the host, no allocation that
    depends on values. Every generator it draws from must be in ``generators`` (registered with the
    graph, so each replay draws fresh numbers and advances the generator). If capture fails, the call
    stays eager and one ``GraphFallbackWarning`` names the reason.
    """

    def __init__(self, fn: Callable[[], Any], device: torch.device, generators: Sequence[torch.Generator],
                 warmup: int = 3, pool: GraphPool | None = None, name: str = "call"):
        self.fn, self.device, self.generators = fn, torch.device(device), list(generators)
        self.warmup, self.pool, self.name = warmup, pool or GraphPool(), name
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Any = None
        self.eager_runs = 0
        self.fallback_reason: str | None = None
        self.side_stream = torch.cuda.Stream(self.device)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> Any:
        if self.graph is None and self.fallback_reason is None and self.eager_runs >= self.warmup:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
            return self.output
        self.eager_runs += 1
        current = torch.cuda.current_stream(self.device)
        self.side_stream.wait_stream(current)
        with torch.cuda.stream(self.side_stream):
            out = self.fn()
        current.wait_stream(self.side_stream)
        return out

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        if not hasattr(graph, "register_generator_state"):
            return self._fall_back(f"torch {torch.__version__} cannot register generators with a CUDA graph "
                                   f"(CUDAGraph.register_generator_state): replays would repeat the same noise")
        for generator in self.generators:
            graph.register_generator_state(generator)
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph, pool=self.pool.handle):
                self.output = self.fn()
        except Exception as e:  # noqa: BLE001 — any capture failure means: run eagerly, and say why
            self.output = None
            return self._fall_back(f"{type(e).__name__}: {e}")
        if self.pool.handle is None:
            self.pool.handle = graph.pool()
        self.graph = graph

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = f"capturing {self.name} failed: {reason}"
        torch.cuda.synchronize(self.device)
        warnings.warn(f"CUDA graph off for {self.name}, running it eagerly: {reason}", GraphFallbackWarning,
                      stacklevel=4)


class TrainingStep:
    """Calls of this object train ``agent`` one step each; ``read_means`` gives each seed's mean metrics."""

    def __init__(self, agent: Agent, buffer: TransitionBuffer, batch_size: int, sampler: SeedRandom,
                 cuda_graph: str = "auto", warmup: int = 3, compile: str = "off", updates: int | None = None):
        if cuda_graph not in GRAPH_MODES:
            raise ValueError(f"--cuda-graph must be one of {', '.join(GRAPH_MODES)}, got {cuda_graph!r}")
        self.agent, self.buffer, self.batch_size, self.sampler = agent, buffer, batch_size, sampler
        self.use_graph = uses_cuda_graph(cuda_graph, agent.device)
        self.compiled: CompiledSteps | None = None
        if step_compiles(compile, cuda_graph, agent.name, agent.device, updates):
            self.compiled = CompiledSteps(agent, buffer, batch_size, sampler)
        self.warmup = warmup
        self.paths: dict[Hashable, GraphedCall] = {}
        self.pool = GraphPool()
        self.sums: dict[str, torch.Tensor] | None = None
        self.count = 0
        self.pending_sums: list[dict[str, float]] | None = None

    @property
    def mode(self) -> str:
        """How the steps ran: ``cuda-graph``; ``cuda-graph (partly)`` where some code path could not be
        captured; ``eager`` (no graph asked for, none captured, or every capture failed). A code path that
        ran too few times to be captured (e.g. a renewal that happened once) is no failure. Compiled steps:
        ``compiled``, ``compiled (partly)`` where some code path runs eagerly (``CompiledSteps.mode``)."""
        if self.compiled is not None:
            return self.compiled.mode
        if not self.use_graph:
            return "eager"
        captured = any(p.captured for p in self.paths.values())
        failed = any(p.fallback_reason for p in self.paths.values())
        return ("cuda-graph (partly)" if failed else "cuda-graph") if captured else "eager"

    def __call__(self) -> None:
        if self.use_graph:
            key = self.agent.graph_key()
            if key not in self.paths:
                self.paths[key] = GraphedCall(self._step, self.agent.device,
                                              [*self.agent.generators, *self.sampler.generators], self.warmup,
                                              self.pool, f"{type(self.agent).__name__}.train_step (code path {key!r})")
            with bias_activation_fusion():  # read at warm-up and capture only: a replay runs no Python
                self.paths[key]()
        else:
            self._step()
        self.agent.advance()
        self.count += 1

    def _step(self) -> None:
        if self.compiled is None:
            metrics = self.agent.train_step(self.buffer.sample(self.batch_size, self.sampler))
        else:  # the minibatch's draw compiles with the step
            metrics = self.compiled()
        if self.sums is None:
            self.sums = {k: torch.zeros_like(v) for k, v in metrics.items()}
            if self.pending_sums is not None:
                self._load_sums(self.pending_sums)
        torch._foreach_add_([self.sums[k] for k in metrics], list(metrics.values()))

    # -- metrics ---------------------------------------------------------------------------------
    def non_finite_seeds(self) -> list[int]:
        """Positions of the seeds whose losses since the last read, or whose parameters, are not finite
        (one read back to the host). The unread sums hold every step since the last read — a NaN or inf
        in any one of them stays in its sum — so the check covers every step without a sync per step."""
        seeds = self.agent.num_seeds
        flags = [torch.isfinite(p).reshape(seeds, -1).all(1) if p.dim() and p.shape[0] == seeds
                 else torch.isfinite(p).all().expand(seeds)
                 for m in self.agent.modules().values() for p in m.parameters()]
        if self.sums:
            flags.append(torch.isfinite(torch.stack(list(self.sums.values()))).all(0))
        if not flags:
            return []
        finite = torch.stack(flags).all(0).cpu()
        return [i for i, ok in enumerate(finite.tolist()) if not ok]

    def read_means(self) -> list[dict[str, float]]:
        """Each seed's metrics averaged since the last read (one read back to the host), then reset."""
        if self.sums is None or self.count == 0:
            return [{} for _ in range(self.agent.num_seeds)]
        means = [{k: v / self.count for k, v in sums.items()} for sums in self.state()[0]]
        for v in self.sums.values():
            v.zero_()
        self.count = 0
        return means

    def state(self) -> tuple[list[dict[str, float]], int]:
        """Each seed's unread sums and their count (a checkpoint keeps them, so a resumed run logs exactly)."""
        if self.sums is None:
            return [{} for _ in range(self.agent.num_seeds)], self.count
        values = torch.stack(list(self.sums.values())).double().cpu()  # one read back for every metric
        return [{k: float(values[j, i]) for j, k in enumerate(self.sums)} for i in range(self.agent.num_seeds)], self.count

    def load_state(self, sums: list[dict[str, float]], count: int) -> None:
        self.count = count
        if self.sums is None:
            self.pending_sums = sums
        else:
            self._load_sums(sums)

    def _load_sums(self, sums: list[dict[str, float]]) -> None:
        for k, v in self.sums.items():
            v.copy_(torch.tensor([s.get(k, 0.0) for s in sums], dtype=v.dtype))
