"""torch.compile's activation-memory partitioner, read at a ladder of budgets.

Every private PyTorch API memadvise uses to see what ``torch.compile`` would save for
backward lives in this module, and nowhere else; each failure becomes one
``CompileCaptureError`` sentence that the profile records as the reason compile plans are
unavailable.

How (PyTorch 2.4+; read against ``torch/_functorch/partitioners.py`` of 2.13):

1. ``capture``: the root model is compiled with dynamo + AOTAutograd as
   ``torch.compile(model)`` would (Inductor's decompositions, Inductor's joint-graph
   passes, via ``torch._inductor.compile_fx.partition_fn`` with a partitioner override
   that records the joint graph), but the forward and backward graphs are run by the fx
   interpreter instead of being compiled to kernels: one forward of the captured batch,
   no backward, no code generation. Dynamo graph breaks give several joint graphs.
2. ``partition``: PyTorch's own ``min_cut_rematerialization_partition`` on a fresh copy
   of each joint graph under ``torch._functorch.config.patch(activation_memory_budget=b)``:
   the saved values (the forward graph's outputs past the user outputs), their bytes from
   each node's fake tensor (``meta["val"]``), and the ops found in both the forward and
   the backward graph (recomputed in backward).

3. ``inductor_buffers``: each partition's forward and backward graph go through
   Inductor's ``compile_fx_inner`` as ``torch.compile`` runs them (post-grad passes, the
   scheduler's fusion and reordering for peak memory, buffer reuse, the backward's inputs
   restrided to the compiled forward's outputs and AOTAutograd's donated buffers), stopped
   after code generation: the planned wrapper lines say which storage each kernel
   allocates, reuses and frees. No kernel is compiled. Where this fails, ``_lifetimes``
   estimates the same from the graphs' op order, and the profile says why.

Nothing here runs the compiled model at a budget: the partition is a graph computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

LADDER = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
MAX_SAVED_LISTED = 400  # saved values named per budget in the profile; bytes always cover all


class CompileCaptureError(Exception):
    """One sentence: why torch.compile's partition could not be read for this model."""


@dataclass
class JointGraph:
    """One graph dynamo captured, joint forward + backward, before partitioning."""

    module: Any  # torch.fx.GraphModule, after Inductor's joint-graph passes
    inputs: Any  # the joint inputs (fake tensors), as AOTAutograd hands them over
    kwargs: dict  # num_fwd_outputs, static_lifetime_input_indices
    modules: list[str] = field(default_factory=list)  # module paths its forward ops came from
    generated: dict = field(default_factory=dict)  # Inductor's buffers per partition (budgets often share one)


@dataclass
class Capture:
    graphs: list[JointGraph]
    graph_count: int  # graphs dynamo compiled, with or without a backward
    breaks: list[dict]  # {"reason": ..., "where": "file:line"} per graph break
    capture_s: float


def _one_line(exc: BaseException) -> str:
    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    if inner is not None and type(exc).__name__ == "BackendCompilerFailed":
        exc = inner  # dynamo's wrapper says only "backend raised:"; the cause is the sentence
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _copy_graph_module(gm: Any) -> Any:
    """A fresh GraphModule over a node-by-node copy of ``gm``'s graph (node meta copied
    shallowly: the fake tensors are shared, the partitioner only reads them)."""
    import torch.fx as fx

    graph = fx.Graph()
    out = graph.graph_copy(gm.graph, {})
    graph.output(out)
    return fx.GraphModule(gm, graph)


def _module_paths(gm: Any) -> list[str]:
    """Module paths (``blocks.0.attn``) the graph's forward ops were traced in, from
    dynamo's ``nn_module_stack`` node meta (keys like ``L['self'].blocks[0].attn``)."""
    import re

    paths: set[str] = set()
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        for value in stack.values():
            name = value[0] if isinstance(value, tuple) else str(value)
            name = re.sub(r"^L\['self'\]\.?|^L__self__\.?", "", name)
            name = re.sub(r"\[(\d+)\]", r".\1", name).replace("._modules['", ".").replace("']", "")
            name = name.strip(".")
            paths.add(name)
    return sorted(paths)


def capture(module: torch.nn.Module, args: tuple, kwargs: dict) -> Capture:
    """Trace ``module(*args, **kwargs)`` as ``torch.compile(module)`` would and return its
    joint graphs. Runs one forward (graphs interpreted, not compiled); dynamo's caches
    are reset before and after, and the RNG state is restored."""
    import time

    try:
        import torch._dynamo
        from torch._dynamo.backends.common import aot_autograd
        from torch._functorch.partitioners import min_cut_rematerialization_partition
        from torch._inductor.compile_fx import partition_fn as inductor_partition_fn
        from torch._inductor.decomposition import select_decomp_table
        from torch._inductor.virtualized import V
        from torch._guards import detect_fake_mode
    except Exception as exc:  # an older or stripped PyTorch: no compile plans, said in one line
        raise CompileCaptureError(f"this PyTorch has no torch.compile partitioner ({_one_line(exc)})") from None

    graphs: list[JointGraph] = []
    compiled = [0]

    def record(gm, joint_inputs, **kw):
        graphs.append(JointGraph(_copy_graph_module(gm), joint_inputs, dict(kw), _module_paths(gm)))
        return min_cut_rematerialization_partition(gm, joint_inputs, compiler="inductor", **kw)

    def interpret(gm, example_inputs):  # run the graph as fx code: no kernels compiled
        compiled[0] += 1
        return gm.forward

    def inference(gm, example_inputs):  # a graph with nothing to differentiate
        compiled[0] += 1
        return gm.forward

    def partition_fn(gm, joint_inputs, **kw):  # Inductor's joint passes read V.fake_mode, as compile_fx sets it
        with V.set_fake_mode(detect_fake_mode(joint_inputs)):
            return inductor_partition_fn(gm, joint_inputs, partitioner_fn_override=record, **kw)

    backend = aot_autograd(
        fw_compiler=interpret, bw_compiler=interpret, inference_compiler=inference,
        partition_fn=partition_fn,
        decompositions=select_decomp_table(),
    )
    start = time.perf_counter()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    breaks: list[dict] = []
    torch._dynamo.reset()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            state = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()
                     if isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter)}
            try:
                from torch._dynamo.utils import counters

                counters.clear()
                compiled_module = torch.compile(module, backend=backend)
                with torch.enable_grad():
                    out = compiled_module(*args, **kwargs)
                del out
                if sum(counters["graph_break"].values()) or compiled[0] > 1:  # explain traces again: only then
                    breaks = _graph_breaks(module, args, kwargs)
            finally:
                with torch.no_grad():  # buffers the extra forward updated (BatchNorm statistics)
                    current = module.state_dict(keep_vars=True)
                    for k, v in state.items():
                        if k in current:
                            current[k].copy_(v)
    except CompileCaptureError:
        raise
    except Exception as exc:  # dynamo or AOTAutograd refused the model: the eager profile stands
        raise CompileCaptureError(f"torch.compile could not capture the model ({_one_line(exc)})") from None
    finally:
        torch._dynamo.reset()
    if not graphs:
        if compiled[0] == 0:
            raise CompileCaptureError(
                "torch.compile captured no graph of the model's forward (dynamo skipped it: "
                "torch.compiler.disable, or code it cannot trace), so compiling it would change nothing"
            )
        raise CompileCaptureError(
            f"torch.compile captured {compiled[0]} graph(s) of the model's forward, none with a backward "
            f"({len(breaks)} graph break(s)): no activations to partition"
        )
    return Capture(graphs=graphs, graph_count=max(compiled[0] - len(graphs), len(graphs)), breaks=breaks,
                   capture_s=time.perf_counter() - start)


def _graph_breaks(module: torch.nn.Module, args: tuple, kwargs: dict) -> list[dict]:
    """Dynamo's graph breaks of one more forward (``torch._dynamo.explain``), as
    {"reason", "where"}; [] where explain is unavailable."""
    import torch._dynamo

    torch._dynamo.reset()
    try:
        with torch.no_grad():
            explained = torch._dynamo.explain(module)(*args, **kwargs)
    except Exception:  # explain is a diagnosis: without it the plans stand, breaks unknown
        return []
    out = []
    for br in getattr(explained, "break_reasons", []) or []:
        where = ""
        stack = getattr(br, "user_stack", None) or []
        if stack:
            frame = stack[-1]
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        reason = str(getattr(br, "reason", br)).strip().splitlines()
        out.append({"reason": reason[0][:200] if reason else "", "where": where})
    return out


def _is_view_of_input(node: Any) -> bool:
    """A value that aliases a graph input (a parameter's transpose): saving it keeps no
    extra bytes."""
    from torch._inductor.fx_utils import get_node_storage

    storage = get_node_storage(node)
    if storage is None:
        return node.op == "placeholder"
    seen = 0
    n = node
    while n is not None and seen < 64:
        if n.op == "placeholder":
            return get_node_storage(n) == storage
        tensor_args = [a for a in n.all_input_nodes if get_node_storage(a) == storage]
        n = tensor_args[0] if tensor_args else None
        seen += 1
    return False


def _op_name(node: Any) -> str:
    target = node.target
    packet = getattr(target, "_overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


def partition(graph: JointGraph, budget: float) -> dict:
    """PyTorch's min-cut partition of ``graph`` at ``activation_memory_budget=budget``.

    Returns ``saved`` ([name, bytes, dtype, shape] per saved tensor that is not a view of
    a graph input, largest first), ``saved_bytes`` (their storages, each counted once),
    ``saved_input_count`` (saved graph inputs and their views: no extra bytes),
    ``recomputed`` ({aten op: count} of ops in both graphs) and ``recomputed_count``.
    """
    from torch._functorch import config as functorch_config
    from torch._functorch.partitioners import _size_of, min_cut_rematerialization_partition
    from torch._inductor.fx_utils import get_node_storage

    gm = _copy_graph_module(graph.module)
    try:
        with functorch_config.patch(activation_memory_budget=float(budget)):
            fw, bw = min_cut_rematerialization_partition(gm, graph.inputs, compiler="inductor", **graph.kwargs)
    except Exception as exc:  # the partitioner's own failure at this budget, said in one line
        raise CompileCaptureError(f"the partitioner failed at budget {budget:g} ({_one_line(exc)})") from None
    output = next(n for n in reversed(fw.graph.nodes) if n.op == "output")
    outs = output.args[0]
    n_fwd = int(graph.kwargs.get("num_fwd_outputs", 0))
    saved_nodes = [n for n in outs[n_fwd:] if hasattr(n, "op")]
    saved: list[list] = []
    storages: dict[Any, int] = {}
    inputs = 0
    for n in saved_nodes:
        val = n.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue  # symbolic sizes, RNG seeds: no tensor memory
        if _is_view_of_input(n):
            inputs += 1
            continue
        nbytes = int(_size_of(n))
        key = get_node_storage(n) or id(n)
        storage_bytes = int(val.untyped_storage().nbytes()) if torch._C._has_storage(val) else nbytes
        storages[key] = max(storages.get(key, 0), storage_bytes)
        saved.append([n.name, nbytes, str(val.dtype).replace("torch.", ""), list(map(int, val.shape))])
    saved.sort(key=lambda s: -s[1])
    recomputed, flops = _recomputed(fw, bw)
    try:  # Inductor's own buffers, as its code generation plans them
        key = (fw.code, bw.code)  # the same partition at another budget: generated once
        if key not in graph.generated:
            graph.generated[key] = inductor_buffers(fw, bw, n_fwd)
        generated = graph.generated[key]
        buffers = "inductor"
    except Exception as exc:  # the graph-order estimate stands; the profile says why
        lifetimes, work = _lifetimes(fw, bw, saved_nodes)
        generated = {"saved_lifetimes": lifetimes, "backward_work": work}
        buffers = f"estimated from graph order (Inductor's code generation failed: {_one_line(exc)})"
    return {
        "saved": saved[:MAX_SAVED_LISTED],
        "saved_count": len(saved),
        "saved_bytes": int(sum(storages.values())),
        "saved_input_count": inputs,
        "recomputed": dict(sorted(recomputed.items())),
        "recomputed_count": int(sum(recomputed.values())),
        "recomputed_flops": int(flops),
        **generated,
        "buffers": buffers,
        "forward_nodes": sum(1 for n in fw.graph.nodes if n.op == "call_function"),
        "backward_nodes": sum(1 for n in bw.graph.nodes if n.op == "call_function"),
    }


# ops Inductor does not fuse (library kernels: their inputs and outputs are buffers)
EXTERN_OPS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward",
              "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
              "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
              "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_cudnn_attention_backward",
              "embedding_dense_backward", "_embedding_bag", "index_put", "scatter_add", "sort", "topk"}
# reductions: Inductor writes their results to buffers
REDUCTION_OPS = {"sum", "mean", "amax", "amin", "max", "min", "var_mean", "var", "prod", "any", "all",
                 "argmax", "argmin", "_log_softmax", "_softmax", "native_layer_norm", "native_batch_norm"}
# a pointwise value read by this many ops or more is taken as written to a buffer. Inductor
# inlines cheap ones into each reader; counting them from 2 readers erred high (+4%/+9%/+1%/-2%
# at budgets 1.0/0.7/0.5/0.3, sample GPT tiny, CPU), from 3 low (+1%/-4%/-8%/-12%)
MATERIALIZE_USERS = 2
MATMUL_FLOP_OPS = {"mm", "addmm", "bmm", "baddbmm", "convolution"}


def _recomputed(fw: Any, bw: Any) -> tuple[dict[str, int], int]:
    """{aten op: count} of the ops both graphs run (recomputed in backward), and the
    matmul/convolution FLOPs among them (2 per multiply-add)."""
    fw_names = {n.name for n in fw.graph.nodes if n.op == "call_function"}
    recomputed: dict[str, int] = {}
    flops = 0
    for n in bw.graph.nodes:
        if n.op != "call_function" or n.name not in fw_names:
            continue
        name = _op_name(n)
        if name == "getitem":
            continue
        recomputed[name] = recomputed.get(name, 0) + 1
        if name in MATMUL_FLOP_OPS:
            flops += _matmul_flops(n, name)
    return dict(sorted(recomputed.items())), flops


def _matmul_flops(node: Any, name: str) -> int:
    out = node.meta.get("val")
    if not isinstance(out, torch.Tensor):
        return 0
    try:
        if name == "convolution":
            weight = node.args[1].meta["val"]
            k = 1
            for d in weight.shape[1:]:
                k *= int(d)
        else:
            a = node.args[1] if name in ("addmm", "baddbmm") else node.args[0]
            k = int(a.meta["val"].shape[-1])
        return 2 * int(out.numel()) * k
    except Exception:  # a symbolic or unusual shape: priced at nothing, rather than guessed
        return 0


def _storage_key(node: Any) -> Any:
    from torch._inductor.fx_utils import get_node_storage

    return get_node_storage(node)


def _lifetimes(fw: Any, bw: Any, saved_nodes: list) -> tuple[list[list], list[list]]:
    """Where, in the forward graph and in the backward graph (as fractions of each graph's
    ops), each saved storage is made and last read; and the backward graph's own buffers
    (``[made, last read, bytes]``): outputs of library kernels and reductions, inputs of
    library kernels, values read twice or more. Pointwise values read once are assumed
    fused into their reader (Inductor's default); views hold no bytes; the gradients the
    graph returns are left out (the profile already has them, at the same moment)."""
    fw_ops = [n for n in fw.graph.nodes if n.op == "call_function"]
    fw_pos = {n.name: (i + 1) / max(1, len(fw_ops)) for i, n in enumerate(fw_ops)}
    bw_nodes = list(bw.graph.nodes)
    bw_ops = [n for n in bw_nodes if n.op == "call_function"]
    n_bw = max(1, len(bw_ops))
    last_use: dict[Any, int] = {}  # storage → last backward op that reads it
    for i, n in enumerate(bw_ops):
        for a in n.all_input_nodes:
            key = _storage_key(a)
            if key is not None:
                last_use[key] = i
    output = next(n for n in reversed(bw_nodes) if n.op == "output")
    returned = {_storage_key(a) for a in output.all_input_nodes}
    placeholders = {_storage_key(n) for n in bw_nodes if n.op == "placeholder"}
    lifetimes: dict[Any, list] = {}
    by_name = {n.name: n for n in bw_nodes if n.op == "placeholder"}
    for node in saved_nodes:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or _is_view_of_input(node):
            continue
        ph = by_name.get(node.name)
        key = _storage_key(ph) if ph is not None else None
        nbytes = int(val.untyped_storage().nbytes()) if torch._C._has_storage(val) else 0
        last = last_use.get(key, -1) if key is not None else -1
        entry = lifetimes.get(key if key is not None else id(node))
        made = fw_pos.get(node.name, 1.0)
        if entry is None:
            lifetimes[key if key is not None else id(node)] = [round(made, 5), round((last + 1) / n_bw, 5), nbytes]
        else:
            entry[0] = min(entry[0], round(made, 5))
            entry[2] = max(entry[2], nbytes)
    extern_inputs: set = set()
    for n in bw_ops:
        if _op_name(n) in EXTERN_OPS:
            extern_inputs.update(_storage_key(a) for a in n.all_input_nodes)
    work: dict[Any, list] = {}
    for i, n in enumerate(bw_ops):
        val = n.meta.get("val")
        key = _storage_key(n)
        if not isinstance(val, torch.Tensor) or key is None or key in placeholders or key in returned or key in work:
            continue
        users = [u for u in n.users if u.op == "call_function"]
        name = _op_name(n)
        if not (name in EXTERN_OPS or name in REDUCTION_OPS or key in extern_inputs or len(users) >= MATERIALIZE_USERS):
            continue
        nbytes = int(val.untyped_storage().nbytes()) if torch._C._has_storage(val) else 0
        work[key] = [round((i + 1) / n_bw, 5), round((last_use.get(key, i) + 1) / n_bw, 5), nbytes]
    return sorted(lifetimes.values()), sorted(work.values())


class _Generated(BaseException):  # not an Exception: passes through Inductor's own handlers
    pass


def _generate(gm: Any, is_backward: bool, strides: dict[str, tuple] | None = None,
              donated: list[int] | None = None) -> Any:
    """Inductor's GraphLowering of ``gm`` after its code generation, as ``torch.compile``
    runs it (post-grad passes, scheduler with its reordering for peak memory, buffer
    reuse), stopped before the generated code is compiled or loaded: no kernel is built."""
    from torch._guards import detect_fake_mode
    from torch._inductor import config as inductor_config
    from torch._inductor import graph as inductor_graph
    from torch._inductor.compile_fx import compile_fx_inner
    from torch._inductor.graph import GraphLowering
    from torch._inductor.virtualized import V

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    inputs = [n.meta.get("val") for n in placeholders]
    fake_mode = detect_fake_mode(inputs)
    if strides:  # as AOTAutograd restrides the backward's inputs to the compiled forward's outputs
        with fake_mode:
            inputs = [torch.empty_strided(v.shape, strides[n.name], dtype=v.dtype, device=v.device)
                      if isinstance(v, torch.Tensor) and n.name in strides and tuple(v.stride()) != strides[n.name]
                      else v for n, v in zip(placeholders, inputs)]
    got: list = []
    original = GraphLowering.compile_to_module

    def stop(self):
        self.codegen()
        got.append(self)
        raise _Generated

    GraphLowering.compile_to_module = stop
    # the backward's inputs AOTAutograd donates (saved values nothing else holds): Inductor
    # reuses their storage in place; AOTAutograd hands them over through its tracing context
    donated_idxs = inductor_graph.get_donated_idxs
    inductor_graph.get_donated_idxs = lambda: donated
    try:
        with inductor_config.patch(fx_graph_cache=False, fx_graph_remote_cache=False), \
                V.set_fake_mode(fake_mode):
            try:
                compile_fx_inner(gm, inputs, is_backward=is_backward)
            except _Generated:
                pass
    finally:
        GraphLowering.compile_to_module = original
        inductor_graph.get_donated_idxs = donated_idxs
    if not got:
        raise RuntimeError("Inductor generated no code for the graph")
    return got[0]


class _Walk:
    """The storages a generated wrapper allocates, in the order of its kernel calls: each
    storage as [first kernel position, freed at position or None, bytes] (positions as
    fractions of the graph's kernel calls), and where each graph input is freed."""

    def __init__(self, graph: Any) -> None:
        from torch._inductor import ir
        from torch._inductor.codegen import wrapper as w
        from torch._inductor.utils import get_dtype_size
        from torch._inductor.virtualized import V

        calls = tuple(getattr(w, k) for k in ("KernelCallLine", "ExternKernelOutLine", "ExternKernelAllocLine",
                                              "ExternKernelMultiOutLine", "IndexPutFallbackLine", "ScatterFallbackLine") if hasattr(w, k))
        lines = graph.wrapper_code.lines
        n = max(1, sum(1 for line in lines if isinstance(line, calls)))
        self.graph = graph
        self.root: dict[str, int] = {}  # buffer name -> storage
        self.storages: list[list] = []
        self.input_freed: dict[str, float] = {}
        self.donated: dict[str, str] = {}  # buffer name -> the donated input whose storage it holds

        def nbytes(node: Any) -> int:
            with V.set_graph_handler(graph):
                size = graph.sizevars.optimization_hint(graph.get_allocation_storage_size(node), fallback=0)
            return int(size) * get_dtype_size(node.get_dtype())

        def alloc(node: Any, at: float) -> None:
            if node.get_name() not in self.root:
                self.root[node.get_name()] = len(self.storages)
                self.storages.append([at, None, nbytes(node)])

        # positions in kernel calls: kernel k at k; the lines between kernels k and k+1 (frees
        # of what k last read, then allocations for k+1) in order in (k, k + 0.5]; a library
        # kernel's own outputs just before it. Divided by the call count: fractions of the graph.
        gap: list[int] = [0]
        for line in lines:
            if isinstance(line, calls):
                gap.append(0)
            else:
                gap[-1] += 1
        k = j = 0

        def at(offset: float = 0.0) -> float:
            return min(1.0, (k + offset) / n)

        for line in lines:
            if isinstance(line, calls):
                k, j = k + 1, 0
            else:
                j += 1
            here = at(0.5 * j / (gap[k] + 1))
            if isinstance(line, w.ExternKernelAllocLine):
                if not isinstance(line.node.layout, ir.MultiOutputLayout):
                    alloc(line.node, at(-0.01))
            elif isinstance(line, w.MultiOutputLine):  # one output of a library kernel that allocates
                node = graph.try_get_buffer(line.result_name)
                if node is not None and not isinstance(node.layout, ir.NonOwningLayout):
                    alloc(node, at(-0.01))  # the kernel before it allocated it
            elif isinstance(line, w.ReuseLine):
                old, new = line.node.get_name(), line.reused_as.get_name()
                sid = self.root.get(old)
                if sid is not None:
                    self.root[new] = sid
                else:  # a donated input's storage, reused in place: freed with its last holder
                    self.donated[new] = self.donated.get(old, old)
            elif isinstance(line, w.AllocateLine):
                alloc(line.node, here)
            elif isinstance(line, w.FreeIfNotReusedLine):
                name = line.node.get_name()
                sid = self.root.get(name)
                if not line.is_reused and sid is not None and self.storages[sid][1] is None:
                    self.storages[sid][1] = here
                elif not line.is_reused and name in self.donated:
                    self.input_freed.setdefault(self.donated[name], here)
            elif isinstance(line, w.FreeLine):
                self.input_freed.setdefault(line.node.get_name(), here)

    def output_strides(self, names: list, first: int) -> dict[str, tuple]:
        """{name: strides} of the graph outputs from index ``first`` on (the saved values),
        as the compiled forward lays them out (Inductor may pick channels-last)."""
        out = {}
        for name, node in zip(names, self.graph.graph_outputs[first:]):
            try:
                out[name] = tuple(int(x) for x in node.get_layout().stride)
            except Exception:  # no tensor (a symbolic size), or a symbolic stride: left as traced
                continue
        return {k: v for k, v in out.items() if k is not None}

    def output_storages(self) -> list[int | None]:
        """The storage of each graph output (None: a graph input, its view, or no tensor)."""
        from torch._inductor import ir

        out = []
        for node in self.graph.graph_outputs:
            while isinstance(node, (ir.TensorBox, ir.StorageBox, ir.BaseView)):
                node = node.data
            name = node.get_name() if isinstance(node, ir.Buffer) else None
            out.append(self.root.get(name) if name is not None else None)
        return out


def _donated(fw: Any, bw: Any, n_fwd: int) -> list[int] | None:
    """The backward input indices AOTAutograd donates (``torch._functorch.config.donated_buffer``):
    saved tensors that alias no forward input, user output or gradient."""
    from torch._functorch import config as functorch_config
    from torch._functorch._aot_autograd.graph_compile import collect_fw_donated_buffer_idxs

    if not functorch_config.donated_buffer:
        return None

    def vals(nodes: Any) -> list:
        return [n.meta.get("val") if hasattr(n, "meta") else None for n in nodes]

    fw_outs = vals(next(n for n in reversed(fw.graph.nodes) if n.op == "output").args[0])
    bw_outs = vals(next(n for n in reversed(bw.graph.nodes) if n.op == "output").args[0])
    saved = [v for v in fw_outs[n_fwd:] if isinstance(v, torch.Tensor)]
    symints = sum(1 for v in fw_outs[n_fwd:] if v is not None and not isinstance(v, torch.Tensor))
    fw_ins = vals(fw.graph.find_nodes(op="placeholder"))
    idxs = collect_fw_donated_buffer_idxs(fw_ins, fw_outs[:n_fwd], bw_outs, saved)
    return [symints + i for i in idxs]


def inductor_buffers(fw: Any, bw: Any, n_fwd: int) -> dict[str, list[list]]:
    """What the compiled graphs hold, from Inductor's generated code: the storages the
    compiled forward returns for backward, as [made in forward, last read in backward,
    bytes] (made: the forward kernel that allocates it; last read: where the backward
    frees the input); the forward's and the backward's own storages (``forward_work``,
    ``backward_work``: [made, freed, bytes]); the gradients the backward returns
    (``gradients``: [made, bytes]). Inductor's scheduler reorders kernels to
    lower the peak and reuses freed buffers; its forward can return more than the
    partition's saved values (views kept with their base): the graph order cannot show
    either (see ``_lifetimes``)."""
    fwd = _Walk(_generate(fw, False))
    output = next(n for n in reversed(fw.graph.nodes) if n.op == "output")
    saved_names = [getattr(a, "name", None) for a in output.args[0][n_fwd:]]
    bwd = _Walk(_generate(bw, True, fwd.output_strides(saved_names, n_fwd), _donated(fw, bw, n_fwd)))
    storages = fwd.output_storages()
    user = {s for s in storages[:n_fwd] if s is not None}
    held: dict[int, list] = {}
    for name, sid in zip(saved_names, storages[n_fwd:]):
        if sid is None or sid in user or name is None:
            continue
        made, _free, nbytes = fwd.storages[sid]
        last = bwd.input_freed.get(name, 1.0)
        entry = held.setdefault(sid, [round(made, 5), round(last, 5), nbytes])
        entry[1] = max(entry[1], round(last, 5))
    returned = {s for s in bwd.output_storages() if s is not None}
    work = [[round(made, 5), round(1.0 if free is None else free, 5), nbytes]
            for sid, (made, free, nbytes) in enumerate(bwd.storages) if sid not in returned and nbytes]
    grads = [[round(bwd.storages[sid][0], 5), bwd.storages[sid][2]] for sid in sorted(returned)]
    kept = set(held) | {s for s in storages if s is not None}
    fw_work = [[round(made, 5), round(1.0 if free is None else free, 5), nbytes]
               for sid, (made, free, nbytes) in enumerate(fwd.storages) if sid not in kept and nbytes]
    return {"saved_lifetimes": sorted(held.values()), "backward_work": sorted(work),
            "forward_work": sorted(fw_work), "gradients": sorted(grads)}
