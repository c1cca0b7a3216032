"""Hand-built profiles of a chain of blocks whose memory follows closed formulas.

Each block ``i`` of the chain is ``h = addmm(x_i); x_{i+1} = gelu(h)``: ``addmm`` saves
its input ``x_i`` (``boundary_bytes`` B), ``gelu`` saves its input ``h`` (``inner_bytes``
A). A loss op reads ``x_N`` and makes a scalar of ``loss_bytes`` S. Backward runs the
blocks in reverse: ``gelu_backward`` makes a gradient of A bytes, ``mm`` one of B bytes.
The input ``x_0`` is live throughout. With checkpointed blocks C (CUDA profile, so no
RNG state on the device), the simulator's peak is exactly::

    (N+1)·B + S + A·(N − |C|) + A·(1 + [N−1 ∈ C])

and the activation memory ``A·(N − |C|) + (N−1)·B``. Used by the tests and by the
solver benchmark (thousands of units, varying sizes per block).
"""

from __future__ import annotations

from typing import Sequence

from memadvise.schema.categories import Category, Phase
from memadvise.schema.profile import FORMAT, SCHEMA_VERSION


def chain_profile(
    n_blocks: int,
    inner_bytes: int | Sequence[int] = 4096,
    boundary_bytes: int | Sequence[int] = 1024,
    loss_bytes: int = 4,
    *,
    device_type: str = "cuda",
    fwd_us: float | Sequence[float] = 100.0,
    gelu_us: float = 10.0,
    bwd_us: float = 150.0,
    step_time_s: float | None = None,
    checkpoint_call_ms: float = 0.0,
) -> dict:
    """A profile document (schema of ``memadvise.schema.profile``) for the chain above."""
    n = n_blocks
    A = list(inner_bytes) if isinstance(inner_bytes, Sequence) else [inner_bytes] * n
    B = list(boundary_bytes) if isinstance(boundary_bytes, Sequence) else [boundary_bytes] * (n + 1)
    if len(B) == n:
        B = B + [B[-1]]
    F = list(fwd_us) if isinstance(fwd_us, Sequence) else [fwd_us] * n
    strings = ["addmm", "gelu", "sum", "ones_like", "gelu_backward", "mm"]
    S_ = {s: i for i, s in enumerate(strings)}
    ops = {k: [] for k in ("name", "clock", "phase", "call", "owner", "dur_us", "flops", "in_bytes", "out_bytes", "shape", "mutates")}
    st = {k: [] for k in ("bytes", "device", "category", "alloc", "free", "natural_free", "op", "call")}
    sv = {k: [] for k in ("storage", "pack", "call", "phase", "unpack", "release")}
    calls = {k: [] for k in ("unit", "parent", "phase", "start", "end", "start_op", "end_op", "wall_us", "inputs", "outputs")}
    clock = [0]

    def tick() -> int:
        c = clock[0]
        clock[0] += 1
        return c

    def op(name: str, phase: Phase, call: int, dur: float, owner: int = -1) -> int:
        i = len(ops["name"])
        ops["name"].append(S_[name])
        ops["clock"].append(tick())
        ops["phase"].append(int(phase))
        ops["call"].append(call)
        ops["owner"].append(owner if owner >= 0 else call)
        ops["dur_us"].append(dur)
        ops["flops"].append(0)
        ops["in_bytes"].append(0)
        ops["out_bytes"].append(0)
        ops["shape"].append(0)
        ops["mutates"].append(-1)
        return i

    def storage(nbytes: int, cat: Category, alloc: int, op_index: int, call: int) -> int:
        i = len(st["bytes"])
        for k, v in (("bytes", nbytes), ("device", 0), ("category", int(cat)), ("alloc", alloc),
                     ("free", -1), ("natural_free", -1), ("op", op_index), ("call", call)):
            st[k].append(v)
        return i

    def save(sid: int, call: int) -> int:
        i = len(sv["storage"])
        for k, v in (("storage", sid), ("pack", tick()), ("call", call), ("phase", int(Phase.FORWARD)),
                     ("unpack", -1), ("release", -1)):
            sv[k].append(v)
        return i

    def free(sid: int, natural: bool = True) -> None:
        c = tick()
        st["free"][sid] = c
        if natural and st["natural_free"][sid] < 0:
            st["natural_free"][sid] = c

    # forward: the root call spans the blocks
    root = 0
    calls_start = tick()
    for k, v in (("unit", 0), ("parent", -1), ("phase", 0), ("start", calls_start), ("end", -1),
                 ("start_op", 0), ("end_op", -1), ("wall_us", 0.0), ("inputs", [0]), ("outputs", [])):
        calls[k].append(v)
    x = [storage(B[0], Category.INPUT, -1, -1, -1)]
    h, sx, sh, block_call = [], [], [], []
    for i in range(n):
        c = len(calls["unit"])
        block_call.append(c)
        start = tick()
        for k, v in (("unit", i + 1), ("parent", root), ("phase", 0), ("start", start), ("end", -1),
                     ("start_op", len(ops["name"])), ("end_op", -1), ("wall_us", F[i] + gelu_us), ("inputs", [x[i]]), ("outputs", [])):
            calls[k].append(v)
        sx.append(save(x[i], c))
        o = op("addmm", Phase.FORWARD, c, F[i])
        h.append(storage(A[i], Category.ACTIVATION, ops["clock"][o], o, c))
        sh.append(save(h[i], c))
        o = op("gelu", Phase.FORWARD, c, gelu_us)
        x.append(storage(B[i + 1], Category.ACTIVATION if i + 1 < n else Category.TEMPORARY, ops["clock"][o], o, c))
        st["natural_free"][h[i]] = tick()  # `h` goes out of scope when the block returns
        calls["end"][c] = tick()
        calls["end_op"][c] = len(ops["name"])
        calls["outputs"][c] = [x[i + 1]]
        if i >= 1:
            st["natural_free"][x[i]] = tick()  # the caller rebinds its variable
    calls["end"][root] = tick()
    calls["end_op"][root] = len(ops["name"])
    o = op("sum", Phase.FORWARD, -1, 5.0)
    loss = storage(loss_bytes, Category.TEMPORARY, ops["clock"][o], o, -1)
    free(x[n])  # model output: not saved, dropped after the loss

    # backward, blocks in reverse
    o = op("ones_like", Phase.BACKWARD, -1, 1.0)
    d_next = storage(B[n], Category.TEMPORARY, ops["clock"][o], o, -1)
    for i in reversed(range(n)):
        c = block_call[i]
        sv["unpack"][sh[i]] = tick()
        o = op("gelu_backward", Phase.BACKWARD, -1, bwd_us / 3, owner=c)
        e = storage(A[i], Category.TEMPORARY, ops["clock"][o], o, -1)
        sv["release"][sh[i]] = tick()
        free(h[i], natural=False)
        free(d_next)
        sv["unpack"][sx[i]] = tick()
        o = op("mm", Phase.BACKWARD, -1, 2 * bwd_us / 3, owner=c)
        d = storage(B[i], Category.TEMPORARY, ops["clock"][o], o, -1)
        sv["release"][sx[i]] = tick()
        if i >= 1:
            free(x[i], natural=False)
        free(e)
        d_next = d
    free(d_next)
    end_clock = tick()
    del loss

    total_us = sum(ops["dur_us"])
    step_s = step_time_s if step_time_s is not None else total_us / 1e6
    units = [{"name": "", "type": "Chain", "in_root": True, "parent": None, "depth": 0, "container": None, "calls": 1,
              "activation_bytes": sum(A) + sum(B[1:n]), "fwd_time_ms": sum(F) / 1000, "bwd_time_ms": n * bwd_us / 1000,
              "input_bytes": B[0], "output_bytes": B[n], "param_bytes": 0, "uses_rng": False, "mutates_state": False,
              "inplace_on_input": False, "batchnorm_training": False, "training": True}]
    for i in range(n):
        units.append({"name": f"blocks.{i}", "type": "Block", "in_root": True, "parent": "blocks", "depth": 2,
                      "container": "ModuleList", "calls": 1, "activation_bytes": A[i] + B[i] if i else A[i],
                      "fwd_time_ms": (F[i] + gelu_us) / 1000, "bwd_time_ms": bwd_us / 1000, "input_bytes": B[i],
                      "output_bytes": B[i + 1], "param_bytes": 0, "uses_rng": False, "mutates_state": False,
                      "inplace_on_input": False, "batchnorm_training": False, "training": True})
    peak = (n + 1) * B[0] + loss_bytes + (n + 1) * A[0] if len(set(A)) == 1 and len(set(B)) == 1 else None
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created_at": "2026-01-01T00:00:00+00:00",
        "tool": {"name": "memadvise", "version": "synthetic"},
        "environment": {"torch": "2.13.0", "python": "3.11", "platform": "synthetic", "hostname": "synthetic",
                        "device": {"type": device_type, "index": 0, "name": "synthetic", "total_memory_bytes": None},
                        "cuda": None},
        "script": {"path": "/synthetic/chain.py", "args": [], "sha256": "0" * 64, "cwd": "/"},
        "settings": {"warmup": 1, "steps": 1, "timing_steps": 1},
        "model": {"found": True, "class": "Chain", "expression": "model", "function": "main", "frame_line": 1},
        "optimizer": None,
        "distributed": {"rank": 0, "world_size": 1, "backend": None, "ranks": []},
        "summary": {"peak_bytes": peak if peak is not None else 0, "activation_bytes": sum(A) + sum(B[1:n]),
                    "step_time_s": step_s, "step_times_s": [step_s], "by_category_at_peak": {},
                    "peak_phase": "backward", "peak_op": "gelu_backward", "peak_unit": None, "representative_step": 1},
        "steps": [],
        "units": units,
        "calibration": {"checkpoint_call_ms": checkpoint_call_ms, "selective_op_us": 0.0},
        "nvml": {"available": False, "reason": "synthetic"},
        "trace": {"step": 1, "end_clock": end_clock, "strings": strings, "devices": [f"{device_type}:0"],
                  "train_device": 0, "time_scale": step_s * 1e6 / total_us if total_us else 1.0,
                  "optimizer": {"start": -1, "end": -1},
                  "ops": ops, "storages": st, "saves": sv, "calls": calls},
    }


def chain_peak_formula(n: int, A: int, B: int, S: int, checkpointed: set[int]) -> int:
    c = len(checkpointed)
    return (n + 1) * B + S + A * (n - c) + A * (1 + (1 if (n - 1) in checkpointed else 0))


def chain_activation_formula(n: int, A: int, B: int, checkpointed: set[int]) -> int:
    return A * (n - len(checkpointed)) + (n - 1) * B


def op_chain_profile(
    n_blocks: int,
    op_names: Sequence[str] | Sequence[Sequence[str]] = ("addmm", "gelu", "mul"),
    out_bytes: int | Sequence[Sequence[int]] = 4096,
    op_us: float | Sequence[Sequence[float]] = 10.0,
    input_bytes: int = 1024,
    *,
    device_type: str = "cuda",
    checkpoint_call_ms: float = 0.0,
    selective_op_us: float = 0.0,
) -> dict:
    """A chain of blocks of several ops each: the profile for per-op (selective) plans.

    Block ``i`` runs ops ``j = 0 .. m-1`` in sequence (``op_names[i][j]``, or the same
    names in every block); op ``j`` reads the previous op's output (the block's input for
    ``j = 0``), saves it for backward, and makes a tensor of ``out_bytes[i][j]`` bytes in
    ``op_us[i][j]`` µs; the last op's output is the next block's input. Backward runs the
    ops in reverse, each unpacking its saved input and making a gradient of that size.
    So keeping op ``j``'s output frees nothing and costs nothing to recompute, and
    recomputing it frees ``out_bytes[i][j]`` while the block is checkpointed (the last
    op's output excepted: the next block saves it)."""
    n = n_blocks
    names = [list(op_names[i]) for i in range(n)] if op_names and not isinstance(op_names[0], str) else [list(op_names)] * n
    m = [len(x) for x in names]
    O = [list(out_bytes[i]) for i in range(n)] if isinstance(out_bytes, Sequence) else [[out_bytes] * m[i] for i in range(n)]
    D = [list(op_us[i]) for i in range(n)] if isinstance(op_us, Sequence) else [[float(op_us)] * m[i] for i in range(n)]
    strings = sorted({s for row in names for s in row} | {"sum", "ones_like", "grad"})
    S_ = {s: i for i, s in enumerate(strings)}
    ops = {k: [] for k in ("name", "clock", "phase", "call", "owner", "dur_us", "flops", "in_bytes", "out_bytes", "shape", "mutates")}
    st = {k: [] for k in ("bytes", "device", "category", "alloc", "free", "natural_free", "op", "call")}
    sv = {k: [] for k in ("storage", "pack", "call", "phase", "unpack", "release")}
    calls = {k: [] for k in ("unit", "parent", "phase", "start", "end", "start_op", "end_op", "wall_us", "inputs", "outputs")}
    clock = [0]

    def tick() -> int:
        c = clock[0]
        clock[0] += 1
        return c

    def op(name: str, phase: Phase, call: int, dur: float, owner: int = -1) -> int:
        i = len(ops["name"])
        for k, v in (("name", S_[name]), ("clock", tick()), ("phase", int(phase)), ("call", call),
                     ("owner", owner if owner >= 0 else call), ("dur_us", dur), ("flops", 0), ("in_bytes", 0),
                     ("out_bytes", 0), ("shape", 0), ("mutates", -1)):
            ops[k].append(v)
        return i

    def storage(nbytes: int, cat: Category, alloc: int, op_index: int, call: int) -> int:
        i = len(st["bytes"])
        for k, v in (("bytes", nbytes), ("device", 0), ("category", int(cat)), ("alloc", alloc),
                     ("free", -1), ("natural_free", -1), ("op", op_index), ("call", call)):
            st[k].append(v)
        return i

    def save(sid: int, call: int) -> int:
        i = len(sv["storage"])
        for k, v in (("storage", sid), ("pack", tick()), ("call", call), ("phase", int(Phase.FORWARD)),
                     ("unpack", -1), ("release", -1)):
            sv[k].append(v)
        return i

    def free(sid: int, natural: bool = True) -> None:
        c = tick()
        st["free"][sid] = c
        if natural and st["natural_free"][sid] < 0:
            st["natural_free"][sid] = c

    def new_call(unit: int, parent: int, inputs: list[int], wall_us: float) -> int:
        c = len(calls["unit"])
        for k, v in (("unit", unit), ("parent", parent), ("phase", 0), ("start", tick()), ("end", -1),
                     ("start_op", len(ops["name"])), ("end_op", -1), ("wall_us", wall_us), ("inputs", inputs),
                     ("outputs", [])):
            calls[k].append(v)
        return c

    x = storage(input_bytes, Category.INPUT, -1, -1, -1)
    root = new_call(0, -1, [x], 0.0)
    saves: list[list[tuple[int, int]]] = []  # per block: (save, storage) per op
    block_call = []
    for i in range(n):
        c = new_call(i + 1, root, [x], sum(D[i]))
        block_call.append(c)
        row = []
        h = x
        for j in range(m[i]):
            s = save(h, c)
            row.append((s, h))
            o = op(names[i][j], Phase.FORWARD, c, D[i][j])
            last = j == m[i] - 1
            out = storage(O[i][j], Category.ACTIVATION if not (last and i == n - 1) else Category.TEMPORARY,
                          ops["clock"][o], o, c)
            if j >= 1:
                st["natural_free"][h] = tick()  # the block's local variable is rebound
            h = out
        saves.append(row)
        calls["end"][c] = tick()
        calls["end_op"][c] = len(ops["name"])
        calls["outputs"][c] = [h]
        if i >= 1:
            st["natural_free"][x] = tick()  # the caller rebinds its variable
        x = h
    calls["end"][root] = tick()
    calls["end_op"][root] = len(ops["name"])
    o = op("sum", Phase.FORWARD, -1, 5.0)
    storage(4, Category.TEMPORARY, ops["clock"][o], o, -1)
    free(x)  # the model's output: not saved, dropped after the loss

    o = op("ones_like", Phase.BACKWARD, -1, 1.0)
    g = storage(O[n - 1][-1], Category.TEMPORARY, ops["clock"][o], o, -1)
    for i in reversed(range(n)):
        c = block_call[i]
        for j in reversed(range(m[i])):
            s, h = saves[i][j]
            sv["unpack"][s] = tick()
            o = op("grad", Phase.BACKWARD, -1, 2 * D[i][j], owner=c)
            g_new = storage(int(st["bytes"][h]), Category.TEMPORARY, ops["clock"][o], o, -1)
            sv["release"][s] = tick()
            if not (i == 0 and j == 0):
                free(h, natural=False)
            free(g)
            g = g_new
    free(g)
    end_clock = tick()

    total_us = sum(ops["dur_us"])
    step_s = total_us / 1e6

    def unit(name: str, typ: str, depth: int, act: int, fwd_us: float, inp: int, outp: int) -> dict:
        return {"name": name, "type": typ, "in_root": True, "parent": None if name == "" else "blocks", "depth": depth,
                "container": None if name == "" else "ModuleList", "calls": 1, "activation_bytes": act,
                "fwd_time_ms": fwd_us / 1000, "bwd_time_ms": 2 * fwd_us / 1000, "input_bytes": inp, "output_bytes": outp,
                "param_bytes": 0, "uses_rng": False, "mutates_state": False, "inplace_on_input": False,
                "batchnorm_training": False, "training": True}

    block_in = [input_bytes] + [O[i][-1] for i in range(n - 1)]
    act = [block_in[i] + sum(O[i][:-1]) for i in range(n)]
    units = [unit("", "OpChain", 0, sum(act), sum(map(sum, D)), input_bytes, O[n - 1][-1])]
    units += [unit(f"blocks.{i}", "Block", 2, act[i], sum(D[i]), block_in[i], O[i][-1]) for i in range(n)]
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created_at": "2026-01-01T00:00:00+00:00",
        "tool": {"name": "memadvise", "version": "synthetic"},
        "environment": {"torch": "2.13.0", "python": "3.11", "platform": "synthetic", "hostname": "synthetic",
                        "device": {"type": device_type, "index": 0, "name": "synthetic", "total_memory_bytes": None},
                        "cuda": None},
        "script": {"path": "/synthetic/op_chain.py", "args": [], "sha256": "0" * 64, "cwd": "/"},
        "settings": {"warmup": 1, "steps": 1, "timing_steps": 1},
        "model": {"found": True, "class": "OpChain", "expression": "model", "function": "main", "frame_line": 1},
        "optimizer": None,
        "distributed": {"rank": 0, "world_size": 1, "backend": None, "ranks": []},
        "summary": {"peak_bytes": 0, "activation_bytes": sum(act), "step_time_s": step_s, "step_times_s": [step_s],
                    "by_category_at_peak": {}, "peak_phase": "backward", "peak_op": "grad", "peak_unit": None,
                    "representative_step": 1},
        "steps": [],
        "units": units,
        "calibration": {"checkpoint_call_ms": checkpoint_call_ms, "selective_op_us": selective_op_us},
        "nvml": {"available": False, "reason": "synthetic"},
        "trace": {"step": 1, "end_clock": end_clock, "strings": strings, "devices": [f"{device_type}:0"],
                  "train_device": 0, "time_scale": 1.0, "optimizer": {"start": -1, "end": -1},
                  "ops": ops, "storages": st, "saves": sv, "calls": calls},
    }
