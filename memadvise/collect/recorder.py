"""The instrumentation of recorded steps: every aten op, storage, saved tensor and module call.

One ``Recorder`` is active while recorded steps run. It combines four public PyTorch
mechanisms:

* a ``TorchDispatchMode`` that sees every aten op below autograd (forward, backward and
  optimizer), with its inputs, outputs and duration;
* weak references on storages (``Tensor.untyped_storage()``, kept alive by PyTorch's
  PyObject preservation exactly as long as the ``StorageImpl``) and on tensors, which
  tell when a storage is freed and when the last *user-visible* tensor on it died;
* ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves for
  backward is packed as a detached alias, so the death of that alias is the moment the
  graph released it, and the death of the user's tensors is the moment the storage
  would have been freed had autograd not saved it (what a checkpointed region does);
* global module forward hooks, for the module-call tree and unit boundaries.

Everything is stamped with one event clock (ops, frees, packs, unpacks, releases), so
the simulator can replay the step exactly. All state lives in flat lists (columns):
recorded steps can hold hundreds of thousands of events.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from time import monotonic_ns, perf_counter_ns
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from memadvise.collect import _torch_internals as internals
from memadvise.collect.allocator import AllocatorStats, for_device
from memadvise.schema.ops import RNG_OPS

PHASE_FORWARD = 0
PHASE_BACKWARD = 1
PHASE_OPTIMIZER = 2


@dataclass
class StepMark:
    """Clock and op-count boundaries of one recorded step, plus what the optimizer showed."""

    index: int
    start_clock: int
    start_op: int
    end_clock: int = -1
    end_op: int = -1
    wall_ns: int = 0
    overhead_ns: int = 0
    cuda_max_allocated: int | None = None
    cuda_max_reserved: int | None = None
    cuda_allocated_at_start: int | None = None
    optimizer_start_clock: int = -1
    optimizer_end_clock: int = -1
    allocator_at_start: int | None = None  # bytes the device allocator held at the step's start
    allocator_max: int | None = None  # the allocator's peak over the whole step (bytes)
    nvml: dict | None = None
    extra: dict = field(default_factory=dict)


def _plain(t: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors holding ``t``'s memory: itself, or the inner tensors of a wrapper
    subclass (DTensor's local shard, FSDP2's sharded parameters)."""
    if type(t) is torch.Tensor or type(t) is torch.nn.Parameter:
        return [t]
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is None:
        return [t]
    try:
        names, _ = flatten()
    except Exception:  # a subclass whose flatten fails: counted as one tensor
        return [t]
    out: list[torch.Tensor] = []
    for name in names:
        inner = getattr(t, name, None)
        if isinstance(inner, torch.Tensor):
            out.extend(_plain(inner))
    return out


# Collectives whose buffers are model state: DDP's gradient buckets (all-reduce), FSDP's
# gathered (unsharded) parameters (all-gather) and reduce-scattered gradients.
COLLECTIVES = {
    "allreduce_": "gradient", "all_reduce": "gradient", "reduce_scatter_": "gradient",
    "_reduce_scatter_base_": "gradient", "reduce_scatter_tensor": "gradient",
    "allgather_": "parameter", "_allgather_base_": "parameter", "allgather_into_tensor_coalesced_": "parameter",
    "all_gather_into_tensor": "parameter",
}


class Recorder(TorchDispatchMode):
    """Records ops, storages, saved tensors and module calls while active.

    Use ``start()``/``stop()`` around the recorded steps and ``begin_step``/``end_step``
    at the step boundaries; ``columns()`` returns the raw recording.
    """

    def __init__(self, device: torch.device, *, timing: str = "wall",
                 allocator: AllocatorStats | None | str = "auto") -> None:
        super().__init__()
        self.device = device
        # the device allocator, read around each op (None on CPU): see collect/allocator.py
        self.allocator: AllocatorStats | None = for_device(device) if allocator == "auto" else allocator  # type: ignore[assignment]
        self.live_device_bytes = 0  # tensor bytes live on `device`, counted only with an allocator
        self._counted: set[int] = set()
        self._step_alloc_max = 0
        if self.allocator is not None:
            self.allocator.bind(lambda: self.live_device_bytes)
        self.cuda_timing = timing == "cuda"
        self.clock = 0
        self.paused = 0
        self.overhead_ns = 0
        self._active = False
        self._scanning = False
        self._flops = internals.flop_registry()
        self._mutable_args: dict[Any, tuple[int, ...]] = {}
        self._strings: dict[str, int] = {}
        self._devices: dict[str, int] = {}

        # ops
        self.op_name: list[int] = []
        self.op_clock: list[int] = []
        self.op_phase: list[int] = []
        self.op_call: list[int] = []
        self.op_node: list[int] = []
        self.op_dur_ns: list[float] = []
        self.op_flops: list[int] = []
        self.op_in_bytes: list[int] = []
        self.op_out_bytes: list[int] = []
        self.op_shape: list[int] = []
        self.op_mutates: list[int] = []
        self.op_alloc_before: list[int] = []  # allocator bytes just before each op (with an allocator)
        self.op_alloc_after: list[int] = []  # allocator bytes just after each op (with an allocator)
        self.op_alloc_peak: list[int] = []  # allocator peak during each op (with an allocator)
        self._cuda_events: list[tuple[int, Any, Any]] = []

        # storages
        self.st_bytes: list[int] = []
        self.st_device: list[int] = []
        self.st_alloc_clock: list[int] = []
        self.st_free_clock: list[int] = []
        self.st_nat_clock: list[int] = []
        self.st_alloc_op: list[int] = []
        self.st_call: list[int] = []
        self.st_live: list[int] = []
        self.st_last_use: list[int] = []
        self._sid_of: dict[int, int] = {}
        self._st_refs: dict[int, weakref.ref] = {}
        self._t_refs: dict[int, weakref.ref] = {}

        # saved tensors (one record per pack)
        self.sv_storage: list[int] = []
        self.sv_pack_clock: list[int] = []
        self.sv_call: list[int] = []
        self.sv_phase: list[int] = []
        self.sv_unpack_clock: list[int] = []
        self.sv_release_clock: list[int] = []
        self._sv_refs: dict[int, weakref.ref] = {}

        # module calls
        self.modules: list[torch.nn.Module] = []
        self._module_index: dict[int, int] = {}
        self.mod_rng: list[bool] = []
        self.mod_mutates_buffer: list[bool] = []
        self.mod_inplace_input: list[bool] = []
        self.call_module: list[int] = []
        self.call_parent: list[int] = []
        self.call_phase: list[int] = []
        self.call_start_clock: list[int] = []
        self.call_end_clock: list[int] = []
        self.call_start_op: list[int] = []
        self.call_end_op: list[int] = []
        self.call_seq_start: list[int] = []
        self.call_seq_end: list[int] = []
        self.call_wall_ns: list[int] = []
        self.call_inputs: list[list[int]] = []
        self.call_outputs: list[list[int]] = []
        self.call_input_shapes: dict[int, list] = {}  # top-level calls only: the batch
        self._call_t0: list[int] = []
        self._stack: list[int] = []

        # steps and categories
        self.steps: list[StepMark] = []
        self.param_sids: set[int] = set()
        self.grad_sids: set[int] = set()
        self.opt_sids: set[int] = set()
        self.gathered_sids: set[int] = set()
        self.optimizer_phase = False
        self._hooks: list[Any] = []
        self._saved_hooks: Any = None
        from memadvise.collect.probe import PROBE_OPS, ScratchProbe

        self._probe_ops = PROBE_OPS
        self.probe = ScratchProbe()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Begin recording: scan live tensors, push the dispatch mode and hooks."""
        t0 = perf_counter_ns()
        self._scan_live_tensors()
        self._hooks.append(
            torch.nn.modules.module.register_module_forward_pre_hook(self._pre_forward)
        )
        self._hooks.append(
            torch.nn.modules.module.register_module_forward_hook(
                self._post_forward, with_kwargs=True, always_call=True
            )
        )
        self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._saved_hooks.__enter__()
        self._patch_resize()
        self.__enter__()
        self._active = True
        self.overhead_ns += perf_counter_ns() - t0

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        try:
            self.__exit__(None, None, None)
        finally:
            if self._saved_hooks is not None:
                self._saved_hooks.__exit__(None, None, None)
                self._saved_hooks = None
            for handle in self._hooks:
                internals.remove_global_module_hook(handle)
            self._hooks.clear()
            self._restore_resize()
        self._resolve_cuda_events()

    def _patch_resize(self) -> None:
        """FSDP2 frees and re-allocates unsharded parameters by resizing their storage in
        place (``UntypedStorage.resize_``), which is no aten op: watch it directly (as
        PyTorch's own MemTracker does)."""
        original = torch.UntypedStorage.resize_
        recorder = self

        def resize_(storage, size):
            result = original(storage, size)
            if recorder._active:
                recorder._resized(storage, int(size))
            return result

        self._original_resize = original
        torch.UntypedStorage.resize_ = resize_

    def _restore_resize(self) -> None:
        original = getattr(self, "_original_resize", None)
        if original is not None:
            torch.UntypedStorage.resize_ = original
            self._original_resize = None

    def _resized(self, storage: Any, nbytes: int) -> None:
        key = id(storage)
        sid = self._sid_of.get(key)
        if sid is not None and self.st_bytes[sid] == nbytes:
            return
        if sid is not None:  # the old allocation ends here
            if sid in self._counted:
                self._uncount(sid)
            c = self.tick()
            self.st_free_clock[sid] = c
            if self.st_nat_clock[sid] == -1:
                self.st_nat_clock[sid] = c
            del self._sid_of[key]
        if nbytes > 0:  # a new allocation on the same storage object
            device = storage.device
            new = self._new_storage(storage, nbytes, device, pre=False)
            self.st_alloc_clock[new] = self.tick()

    def tick(self) -> int:
        c = self.clock
        self.clock = c + 1
        return c

    # ------------------------------------------------------------------ steps
    def begin_step(self, index: int) -> None:
        mark = StepMark(index=index, start_clock=self.tick(), start_op=len(self.op_name))
        mark.extra["t_start_ns"] = monotonic_ns()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            mark.cuda_allocated_at_start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.allocator is not None:
            self.allocator.reset_window()
            self.allocator.reset_peak()
            mark.allocator_at_start = self._step_alloc_max = self.allocator.allocated()
        self.steps.append(mark)

    def end_step(self, wall_ns: int) -> StepMark:
        mark = self.steps[-1]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            mark.cuda_max_allocated = torch.cuda.max_memory_allocated(self.device)
            mark.cuda_max_reserved = torch.cuda.max_memory_reserved(self.device)
            mark.extra["reserved_now"] = torch.cuda.memory_reserved(self.device)
        if self.allocator is not None:
            # the peak counter restarts at every op: the step's peak is the largest of
            # the per-op peaks and of what came after the last op
            mark.allocator_max = max(self._step_alloc_max, self.allocator.peak())
            if self.device.type == "cuda":
                mark.cuda_max_allocated = mark.allocator_max
                reserved = getattr(self.allocator, "reserved_max", None)
                if reserved:
                    mark.cuda_max_reserved = max(reserved, mark.extra["reserved_now"])
        mark.extra["t_end_ns"] = monotonic_ns()
        mark.end_clock = self.tick()
        mark.end_op = len(self.op_name)
        mark.wall_ns = wall_ns
        return mark

    def optimizer_begin(self, optimizer: torch.optim.Optimizer) -> None:
        self.paused += 1
        try:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    self.param_sids.add(self._sid(p, pre=True))
                    if p.grad is not None:
                        self.grad_sids.add(self._sid(p.grad, pre=True))
        finally:
            self.paused -= 1
        self.optimizer_phase = True
        if self.steps:
            self.steps[-1].optimizer_start_clock = self.tick()

    def optimizer_end(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer_phase = False
        self.paused += 1
        try:
            for state in optimizer.state.values():
                for value in state.values() if isinstance(state, dict) else ():
                    if isinstance(value, torch.Tensor):
                        self.opt_sids.add(self._sid(value, pre=True))
        finally:
            self.paused -= 1
        if self.steps:
            self.steps[-1].optimizer_end_clock = self.tick()

    def note_module_state(self, module: torch.nn.Module) -> None:
        """Mark every parameter and buffer storage of ``module`` (and children)."""
        self.paused += 1
        try:
            for t in module.parameters():
                self.param_sids.add(self._sid(t, pre=True))
            for t in module.buffers():
                self.param_sids.add(self._sid(t, pre=True))
        finally:
            self.paused -= 1

    # ------------------------------------------------------------------ storages
    def _string(self, text: str) -> int:
        idx = self._strings.get(text)
        if idx is None:
            idx = self._strings[text] = len(self._strings)
        return idx

    def _device_index(self, device: torch.device) -> int:
        key = str(device)
        idx = self._devices.get(key)
        if idx is None:
            idx = self._devices[key] = len(self._devices)
        return idx

    def _storage_dead(self, key: int, _ref: Any = None) -> None:
        sid = self._sid_of.pop(key, None)
        self._st_refs.pop(key, None)
        if sid is None:
            return
        if sid in self._counted:
            self._uncount(sid)
        c = self.clock
        self.clock = c + 1
        self.st_free_clock[sid] = c
        if self.st_nat_clock[sid] == -1:
            self.st_nat_clock[sid] = c

    def _uncount(self, sid: int) -> None:
        self._counted.discard(sid)
        self.live_device_bytes -= self.st_bytes[sid]

    def _tensor_dead(self, tkey: int, sid: int, _ref: Any = None) -> None:
        self._t_refs.pop(tkey, None)
        live = self.st_live[sid] - 1
        self.st_live[sid] = live
        if live == 0 and self.st_nat_clock[sid] == -1:
            c = self.clock
            self.clock = c + 1
            self.st_nat_clock[sid] = c

    def _new_storage(self, st: Any, nbytes: int, device: torch.device, pre: bool) -> int:
        sid = len(self.st_bytes)
        key = id(st)
        self._sid_of[key] = sid
        if self.allocator is not None and device == self.device:
            self._counted.add(sid)
            self.live_device_bytes += nbytes
        self._st_refs[key] = weakref.ref(st, lambda r, k=key: self._storage_dead(k))
        self.st_bytes.append(nbytes)
        self.st_device.append(self._device_index(device))
        if pre and self._active and not self._scanning:
            # first seen mid-recording as an input: made where no aten op shows it (a
            # collective's C++ buffer, a storage resized in place): born now, not before
            pre = False
        c = -1 if pre else self.clock
        self.st_alloc_clock.append(c)
        self.st_free_clock.append(-1)
        self.st_nat_clock.append(-1)
        self.st_alloc_op.append(-1 if pre else len(self.op_name))
        self.st_call.append(self._stack[-1] if (self._stack and not pre) else -1)
        self.st_live.append(0 if not pre else -(10**9))  # unknown impl count: never "natural"
        self.st_last_use.append(c)
        return sid

    def _sid(self, t: torch.Tensor, pre: bool = False) -> int:
        """The storage id of ``t``; unseen storages are registered as pre-existing."""
        if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
            plain = _plain(t)
            t = plain[0] if plain else t
        st = t.untyped_storage()
        sid = self._sid_of.get(id(st))
        if sid is None:
            sid = self._new_storage(st, st.nbytes(), t.device, pre=True)
        return sid

    def _scan_live_tensors(self) -> None:
        """Register every tensor Python can reach as pre-existing (the dataset, the model)."""
        gc.collect()  # garbage awaiting the cycle collector is not live memory
        self.paused += 1
        self._scanning = True
        try:
            for obj in gc.get_objects():
                if type(obj) is torch.Tensor or type(obj) is torch.nn.Parameter:
                    try:
                        if obj.layout == torch.strided and obj.device.type != "meta":
                            self._sid(obj, pre=True)
                    except Exception:  # tensors without storage (functional, fake)
                        pass
        finally:
            self._scanning = False
            self.paused -= 1

    # ------------------------------------------------------------------ dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if self.paused:
            return func(*args, **kwargs)
        allocator = self.allocator
        if allocator is not None:
            before = allocator.op_begin(func._overloadpacket.__name__)
        if self.cuda_timing:
            start_ev = torch.cuda.Event(enable_timing=True)
            end_ev = torch.cuda.Event(enable_timing=True)
            start_ev.record()
            out = func(*args, **kwargs)
            end_ev.record()
            dur = 0.0
        else:
            t0 = perf_counter_ns()
            out = func(*args, **kwargs)
            t1 = perf_counter_ns()
            dur = float(t1 - t0)
        if allocator is not None and not allocator.reads_recorded_tensors:
            after, peak = allocator.op_end()  # before anything else can allocate or free
        r0 = perf_counter_ns()
        self.paused += 1
        try:
            op_index = self._record(func, args, kwargs, out, dur)
        finally:
            self.paused -= 1
        if allocator is not None:
            if allocator.reads_recorded_tensors:  # a fake: the op's outputs are counted now
                after, peak = allocator.op_end()
            self.op_alloc_before.append(before)
            self.op_alloc_after.append(after)
            self.op_alloc_peak.append(peak)
            if peak > self._step_alloc_max:
                self._step_alloc_max = peak
        if self.cuda_timing:
            self._cuda_events.append((op_index, start_ev, end_ev))
        self.overhead_ns += perf_counter_ns() - r0
        return out

    def _mutable_positions(self, func: Any) -> tuple[int, ...]:
        pos = self._mutable_args.get(func)
        if pos is None:
            try:
                pos = tuple(
                    i
                    for i, a in enumerate(func._schema.arguments)
                    if a.alias_info is not None and a.alias_info.is_write
                )
            except Exception:  # an op without an aten schema (a Python op): no argument it writes
                pos = ()
            self._mutable_args[func] = pos
        return pos

    def _record(self, func, args, kwargs, out, dur: float) -> int:
        op_index = len(self.op_name)
        clock = self.clock
        self.clock = clock + 1
        stack = self._stack
        call = stack[-1] if stack else -1
        sid_of = self._sid_of
        tensor_cls = torch.Tensor

        in_bwd = internals.in_backward()
        # inputs: bytes read, pre-existing storages, last use in a forward
        use = -1 if in_bwd else clock
        in_bytes = 0
        for a in args:
            if isinstance(a, tensor_cls):
                in_bytes += self._touch(a, use)
            elif isinstance(a, (list, tuple)):
                for b in a:
                    if isinstance(b, tensor_cls):
                        in_bytes += self._touch(b, use)
        if kwargs:
            for a in kwargs.values():
                if isinstance(a, tensor_cls):
                    in_bytes += self._touch(a, use)

        packet = func._overloadpacket
        name = packet.__name__

        # outputs: new storages and the tensors that keep them alive
        out_bytes = 0
        shape = ""
        if isinstance(out, tensor_cls):
            outs: Any = (out,)
        elif isinstance(out, (list, tuple)):
            outs = []
            for o in out:
                if isinstance(o, tensor_cls):
                    outs.append(o)
                elif isinstance(o, (list, tuple)):
                    outs.extend(x for x in o if isinstance(x, tensor_cls))
        else:
            outs = ()
        if any(type(o) is not torch.Tensor for o in outs):
            outs = [p for o in outs for p in _plain(o)]
        for o in outs:
            if o.layout != torch.strided or o.device.type == "meta":
                continue
            st = o.untyped_storage()
            key = id(st)
            sid = sid_of.get(key)
            nbytes = st.nbytes()
            if sid is None:
                sid = self._new_storage(st, nbytes, o.device, pre=False)
                self.st_alloc_clock[sid] = clock
            elif self.st_bytes[sid] != nbytes:  # resized in place (out= ops): a new allocation
                if sid in self._counted:
                    self._uncount(sid)
                self.st_free_clock[sid] = clock
                if self.st_nat_clock[sid] == -1:
                    self.st_nat_clock[sid] = clock
                del sid_of[key]
                sid = self._new_storage(st, nbytes, o.device, pre=False)
                self.st_alloc_clock[sid] = clock
            if not in_bwd:
                self.st_last_use[sid] = clock
            tkey = id(o)
            ref = self._t_refs.get(tkey)
            if ref is None or ref() is not o:
                self._t_refs[tkey] = weakref.ref(
                    o, lambda r, k=tkey, s=sid: self._tensor_dead(k, s)
                )
                self.st_live[sid] += 1
            out_bytes += o.numel() * o.element_size()
            if not shape:
                shape = f"{str(o.dtype)[6:]}{list(o.shape)}"

        # in-place writes (storage written, for selective-checkpoint safety), state
        # mutation and RNG use, attributed to the innermost module call
        mutated = -1
        mpos = self._mutable_positions(func)
        if mpos:
            for i in mpos:
                if i < len(args) and isinstance(args[i], tensor_cls):
                    s = sid_of.get(id(args[i].untyped_storage()))
                    if s is None:
                        continue
                    if mutated < 0:
                        mutated = s
                    if call >= 0 and self.st_alloc_clock[s] < self.call_start_clock[call]:
                        if s in self.param_sids:
                            self.mod_mutates_buffer[self.call_module[call]] = True
                        else:
                            self.mod_inplace_input[self.call_module[call]] = True
        if call >= 0 and name in RNG_OPS:
            self.mod_rng[self.call_module[call]] = True
        if name in COLLECTIVES or name == "split_with_sizes_copy":
            self._note_parallel_state(name, args, kwargs, outs)

        if in_bwd:
            phase = PHASE_BACKWARD
            node = internals.current_node_seq()
        else:
            phase = PHASE_OPTIMIZER if self.optimizer_phase else PHASE_FORWARD
            node = -1
        flops = internals.count_flops(self._flops, packet, args, kwargs, out) if packet in self._flops else 0

        self.op_name.append(self._string(name))
        self.op_clock.append(clock)
        self.op_phase.append(phase)
        self.op_call.append(call)
        self.op_node.append(node)
        self.op_dur_ns.append(dur)
        self.op_flops.append(flops)
        self.op_in_bytes.append(in_bytes)
        self.op_out_bytes.append(out_bytes)
        self.op_shape.append(self._string(shape))
        self.op_mutates.append(mutated)
        if name in self._probe_ops:
            self.probe.note(func, args, kwargs, op_index)
        return op_index

    def _note_parallel_state(self, name: str, args: tuple, kwargs: dict, outs: Any) -> None:
        """Buffers of collectives are parameters (gathered) or gradients (reduced), and the
        parameters FSDP2 splits out of a gathered buffer are parameters too."""
        tensors: list[torch.Tensor] = []
        for a in list(args) + list(kwargs.values()) + list(outs):
            if isinstance(a, torch.Tensor):
                tensors.append(a)
            elif isinstance(a, (list, tuple)):
                tensors.extend(x for x in a if isinstance(x, torch.Tensor))
        sids = [self._sid(t) for t in tensors if t.layout == torch.strided and t.device.type != "meta"]
        if name == "split_with_sizes_copy":
            if sids and sids[0] in self.gathered_sids:
                self.param_sids.update(sids[1:])
            return
        kind = COLLECTIVES[name]
        if kind == "parameter":
            self.gathered_sids.update(sids)
            self.param_sids.update(sids)
        else:
            self.grad_sids.update(sids)

    def _touch(self, t: torch.Tensor, use: int) -> int:
        if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
            return sum(self._touch(p, use) for p in _plain(t) if p is not t)
        if t.layout != torch.strided or t.device.type == "meta":
            return 0
        st = t.untyped_storage()
        sid = self._sid_of.get(id(st))
        if sid is None:
            sid = self._new_storage(st, st.nbytes(), t.device, pre=True)
        if use >= 0:
            self.st_last_use[sid] = use
        return t.numel() * t.element_size()

    def _resolve_cuda_events(self) -> None:
        if not self._cuda_events:
            return
        torch.cuda.synchronize()
        for op_index, start_ev, end_ev in self._cuda_events:
            self.op_dur_ns[op_index] = start_ev.elapsed_time(end_ev) * 1e6
        self._cuda_events.clear()

    # ------------------------------------------------------------------ saved tensors
    def _pack(self, t: torch.Tensor) -> Any:
        r0 = perf_counter_ns()
        self.paused += 1
        try:
            alias = t.detach()
            if t.layout != torch.strided or t.device.type == "meta":
                return (alias, -1)
            sid = self._sid(t)
        finally:
            self.paused -= 1
        rid = len(self.sv_storage)
        self.sv_storage.append(sid)
        self.sv_pack_clock.append(self.tick())
        self.sv_call.append(self._stack[-1] if self._stack else -1)
        if internals.in_backward():
            self.sv_phase.append(PHASE_BACKWARD)
        else:
            self.sv_phase.append(PHASE_OPTIMIZER if self.optimizer_phase else PHASE_FORWARD)
        self.sv_unpack_clock.append(-1)
        self.sv_release_clock.append(-1)
        self._sv_refs[rid] = weakref.ref(alias, lambda r, i=rid: self._released(i))
        self.overhead_ns += perf_counter_ns() - r0
        return (alias, rid)

    def _unpack(self, packed: Any) -> torch.Tensor:
        alias, rid = packed
        if rid >= 0 and self.sv_unpack_clock[rid] == -1:
            self.sv_unpack_clock[rid] = self.tick()
        return alias

    def _released(self, rid: int) -> None:
        self._sv_refs.pop(rid, None)
        self.sv_release_clock[rid] = self.tick()

    # ------------------------------------------------------------------ modules
    def _module_id(self, module: torch.nn.Module) -> int:
        idx = self._module_index.get(id(module))
        if idx is None:
            idx = self._module_index[id(module)] = len(self.modules)
            self.modules.append(module)
            self.mod_rng.append(False)
            self.mod_mutates_buffer.append(False)
            self.mod_inplace_input.append(False)
        return idx

    def _tensor_sids(self, obj: Any, out: list[int], depth: int = 0) -> None:
        if isinstance(obj, torch.Tensor):
            if obj.layout == torch.strided and obj.device.type != "meta":
                out.append(self._sid(obj))
        elif depth < 3 and isinstance(obj, (list, tuple)):
            for o in obj:
                self._tensor_sids(o, out, depth + 1)
        elif depth < 3 and isinstance(obj, dict):
            for o in obj.values():
                self._tensor_sids(o, out, depth + 1)

    def _pre_forward(self, module: torch.nn.Module, args: Any) -> None:
        if self.paused or not self._active:
            return
        r0 = perf_counter_ns()
        self.paused += 1
        try:
            mod = self._module_id(module)
            call = len(self.call_module)
            inputs: list[int] = []
            self._tensor_sids(args, inputs)
            self.call_module.append(mod)
            self.call_parent.append(self._stack[-1] if self._stack else -1)
            self.call_phase.append(PHASE_BACKWARD if internals.in_backward() else PHASE_FORWARD)
            self.call_start_clock.append(self.tick())
            self.call_end_clock.append(-1)
            self.call_start_op.append(len(self.op_name))
            self.call_end_op.append(-1)
            self.call_seq_start.append(internals.sequence_nr())
            self.call_seq_end.append(-1)
            self.call_wall_ns.append(0)
            self.call_inputs.append(inputs)
            self.call_outputs.append([])
            if not self._stack:
                self.call_input_shapes[call] = [
                    [str(a.dtype).replace("torch.", ""), list(a.shape)]
                    for a in (args if isinstance(args, (tuple, list)) else [args])
                    if isinstance(a, torch.Tensor)
                ]
            self._stack.append(call)
        finally:
            self.paused -= 1
        now = perf_counter_ns()
        self.overhead_ns += now - r0
        self._call_t0.append(now)

    def _post_forward(self, module: torch.nn.Module, args: Any, *rest: Any) -> None:
        # (kwargs, output) normally; (output,) when forward raised (always_call hooks),
        # as checkpoint's early stop does inside every recompute
        if self.paused or not self._active or not self._stack:
            return
        kwargs, output = rest if len(rest) == 2 else (None, rest[0] if rest else None)
        now = perf_counter_ns()
        self.paused += 1
        try:
            mod = self._module_index.get(id(module))
            # unwind calls whose post-hook never ran (an exception inside forward)
            while self._stack and self.call_module[self._stack[-1]] != mod:
                self._close_call(now)
            if not self._stack:
                return
            call = self._stack[-1]
            if kwargs:
                extra: list[int] = []
                self._tensor_sids(kwargs, extra)
                self.call_inputs[call].extend(extra)
            self._tensor_sids(output, self.call_outputs[call])
            self._close_call(now)
        finally:
            self.paused -= 1
        self.overhead_ns += perf_counter_ns() - now

    def _close_call(self, now: int) -> None:
        call = self._stack.pop()
        t0 = self._call_t0.pop()
        self.call_end_clock[call] = self.tick()
        self.call_end_op[call] = len(self.op_name)
        self.call_seq_end[call] = internals.sequence_nr()
        self.call_wall_ns[call] = max(0, now - t0)  # raw, instrumentation included

    def release(self) -> None:
        """Drop every reference to the script's objects (modules, weak references with
        callbacks into this recorder), so a finished run frees its memory at once."""
        self.modules.clear()
        self._module_index.clear()
        self._st_refs.clear()
        self._t_refs.clear()
        self._sv_refs.clear()
        self._sid_of.clear()
        self._stack.clear()

    # ------------------------------------------------------------------ output
    def strings(self) -> list[str]:
        return list(self._strings)

    def devices(self) -> list[str]:
        return list(self._devices)
