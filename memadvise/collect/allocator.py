"""The device allocator's own statistics, read around every recorded op.

The recorder sees tensors; the allocator sees every allocation, tensors or not: library
workspaces (cuBLAS, cuDNN), buffers a kernel allocates for itself and frees before it
returns (scratch), and the rounding of each block. On CUDA the caching allocator keeps
host-side counters that need no synchronisation (``torch.cuda.memory_allocated``,
``max_memory_allocated`` after ``reset_peak_memory_stats``), so the recorder reads them
before and after each op:

* ``peak - allocated_after``: the op's transient scratch above its outputs;
* ``allocated_after - tensor bytes live``: what no tensor explains (the profile's
  ``untracked`` category: workspaces, blocks held by C++);
* ``allocated_after - allocated_before``: the blocks the op's new tensors got, which
  can exceed the rounded request when the allocator hands out a cached block whole.

``AllocatorStats`` is the interface; ``CudaAllocatorStats`` reads the CUDA caching
allocator, ``FakeAllocatorStats`` stands in for it in tests on CPU (it injects chosen
scratch and workspace bytes on top of the tensor bytes the recorder counts). The CUDA
allocator history (``torch.cuda.memory._record_memory_history``) is deliberately not
used: with Python stacks it crashed a run during checkpoint recompute.
"""

from __future__ import annotations

from typing import Callable

import torch

# The CUDA caching allocator rounds every request up to a multiple of 512 bytes
# (kMinBlockSize in c10/cuda/CUDACachingAllocator.cpp); zero-byte requests take no block.
CUDA_BLOCK_BYTES = 512
# A cached block is split only when more than 1 MiB would remain (kSmallSize, large pool),
# so an allocation may get up to 1 MiB more than it asked for, counted as allocated
MAX_BLOCK_SLACK_BYTES = 1 << 20


class AllocatorStats:
    """Counters of one device's allocator, in bytes. Subclasses implement the first three."""

    name = "none"
    # True where allocated() is computed from the recorder's own tensor count, which
    # includes an op's outputs only once the recorder has seen them (fakes)
    reads_recorded_tensors = False

    def allocated(self) -> int:
        """Bytes allocated now."""
        raise NotImplementedError

    def reset_peak(self) -> None:
        """Start a new peak window: the peak becomes what is allocated now."""
        raise NotImplementedError

    def peak(self) -> int:
        """Highest ``allocated()`` since the last ``reset_peak``."""
        raise NotImplementedError

    def block_bytes(self, nbytes: int) -> int:
        """Bytes one allocation of ``nbytes`` occupies in this allocator."""
        return int(nbytes)

    def reset_window(self) -> None:
        """A new step starts (counters kept across ops, such as the reserved peak, restart)."""

    def bind(self, live_tensor_bytes: Callable[[], int]) -> None:
        """The recorder's running count of tensor bytes on the device (used by fakes)."""

    def op_begin(self, name: str) -> int:
        """Called just before the op ``name`` runs; returns the bytes allocated then."""
        before = self.allocated()
        self.reset_peak()
        return before

    def op_end(self) -> tuple[int, int]:
        """(bytes allocated after the op, peak bytes during it), just after it returned."""
        return self.allocated(), self.peak()


class CudaAllocatorStats(AllocatorStats):
    """The CUDA caching allocator's counters for one device (host-side, no sync)."""

    name = "cuda"

    def __init__(self, device: torch.device) -> None:
        self.index = device.index if device.index is not None else torch.cuda.current_device()
        # torch.cuda.memory_allocated() flattens the whole nested stats dict in Python
        # (~100 µs a call); the C functions it wraps are read directly where they exist
        self._stats = getattr(torch._C, "_cuda_memoryStats", None)
        self._reset = getattr(torch._C, "_cuda_resetPeakMemoryStats", None)
        self.reserved_max = 0  # largest reserved peak seen since the last reset_window (bytes)

    def _read(self) -> tuple[int, int, int]:
        """(allocated now, allocated peak, reserved peak)."""
        if self._stats is not None:
            s = self._stats(self.index)
            a, r = s["allocated_bytes"]["all"], s["reserved_bytes"]["all"]
            return int(a["current"]), int(a["peak"]), int(r["peak"])
        return (torch.cuda.memory_allocated(self.index), torch.cuda.max_memory_allocated(self.index),
                torch.cuda.max_memory_reserved(self.index))

    def allocated(self) -> int:
        return self._read()[0]

    def op_begin(self, name: str) -> int:
        before = self._read()[0]
        self.reset_peak()
        return before

    def reset_peak(self) -> None:
        if self._reset is not None:
            self._reset(self.index)
        else:
            torch.cuda.reset_peak_memory_stats(self.index)

    def reset_window(self) -> None:
        self.reserved_max = 0

    def peak(self) -> int:
        now, peak, reserved = self._read()
        self.reserved_max = max(self.reserved_max, reserved)
        return peak

    def op_end(self) -> tuple[int, int]:
        now, peak, reserved = self._read()  # one read for every counter
        if reserved > self.reserved_max:
            self.reserved_max = reserved
        return now, peak

    def block_bytes(self, nbytes: int) -> int:
        if nbytes <= 0:
            return 0
        return -(-int(nbytes) // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES


class FakeAllocatorStats(AllocatorStats):
    """An allocator for tests without a GPU: the tensor bytes the recorder counts, plus

    * ``workspace_bytes`` held from the first op named ``workspace_op`` (any op when
      None) to the end, as cuBLAS holds its workspace;
    * ``scratch_bytes[name]`` allocated and freed inside every op called ``name``.
    """

    name = "fake"
    reads_recorded_tensors = True

    def __init__(self, *, workspace_bytes: int = 0, workspace_op: str | None = None,
                 scratch_bytes: dict[str, int] | None = None) -> None:
        self.workspace_bytes = int(workspace_bytes)
        self.workspace_op = workspace_op
        self.scratch_bytes = dict(scratch_bytes or {})
        self._live: Callable[[], int] = lambda: 0
        self._workspace = 0
        self._peak = 0
        self._op: str | None = None

    def bind(self, live_tensor_bytes: Callable[[], int]) -> None:
        self._live = live_tensor_bytes

    def allocated(self) -> int:
        return self._live() + self._workspace

    def reset_peak(self) -> None:
        self._peak = self.allocated()

    def peak(self) -> int:
        return max(self._peak, self.allocated())

    def op_begin(self, name: str) -> int:
        self.reset_peak()
        self._op = name
        return self.allocated()

    def op_end(self) -> tuple[int, int]:
        name, self._op = self._op, None
        if self.workspace_bytes and not self._workspace and (self.workspace_op in (None, name)):
            self._workspace = self.workspace_bytes
        now = self.allocated()
        return now, max(self._peak, now + self.scratch_bytes.get(name or "", 0))


def for_device(device: torch.device) -> AllocatorStats | None:
    """The allocator statistics of ``device``, or None where there are none (CPU)."""
    if device.type == "cuda":
        return CudaAllocatorStats(device)
    return None
