"""A CPU ``Trainer`` sets glibc's malloc for training (harness/cpu_allocator.py): a large buffer comes from the heap
and stays there when freed, where glibc's defaults map it and unmap it again; ``FLOWBENCH_MALLOC=system`` keeps
the defaults. Each case runs in a fresh process, since the settings are per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.cpu_allocator import glibc
from tests.helpers import REPO

# In a fresh process: build a CPU Trainer, then allocate and free a 20 MiB tensor and report what mallinfo2(3)
# says about it: bytes mapped for it outside the heap, and heap bytes still held after the free.
PROBE = """
import ctypes, json, torch
from algos import make_agent, resolve_config
from harness.timing import synthetic_buffer
from harness.trainer import Trainer

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
agent = make_agent("bc", 3, 2, resolve_config("bc", {}, profile="cpu"), "cpu")
Trainer(agent, synthetic_buffer(64, 3, 2, torch.device("cpu"), torch.Generator().manual_seed(0)), [0], 8,
        cuda_graph="off")
before = libc.mallinfo2()
x = torch.ones(5 << 20)
during = libc.mallinfo2()
del x
after = libc.mallinfo2()
print(json.dumps({"mapped": during.hblkhd - before.hblkhd, "heap_kept": after.arena - before.arena}))
"""

MIB = 1 << 20


def probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(glibc(), "mallinfo2"), reason="glibc's malloc only, 2.33 or later (mallinfo2)")
def test_a_cpu_trainer_keeps_a_steps_large_buffers_in_the_heap():
    tuned = probe()
    assert tuned["mapped"] == 0, tuned  # 20 MiB < the 32 MiB mmap threshold: from the heap
    assert tuned["heap_kept"] >= 20 * MIB, tuned  # freed, not trimmed: the next step reuses the pages
    system = probe(FLOWBENCH_MALLOC="system")
    # glibc's defaults map the same buffer on its own and unmap it when freed: what the settings change
    assert system["mapped"] >= 20 * MIB and system["heap_kept"] < 20 * MIB, system
