"""``memadvise show --trace``: the recorded step as a Chrome trace (JSON trace event
format), for Perfetto (ui.perfetto.dev) and ``chrome://tracing``.

One process, three threads of slices and one group of counters:

* ``ops``: the phases (forward, backward, optimizer) as ``B``/``E`` parent slices, and
  one ``X`` slice per op inside them, with its module path, output shape and bytes;
* ``modules``: the module calls of the step as nested ``X`` slices;
* ``backward by module``: runs of backward ops by the module that owns their autograd
  node;
* counters ``memory <category>`` and ``memory total``: live bytes on the training
  device, one value per op where it changed.

Ops run one after another on the timeline (``ts`` is the running sum of op durations),
scaled, as the simulator scales them, so that they add up to the uninstrumented step
time. Timestamps are microseconds in steps of 1/8 µs: such values are exact in binary
floating point, so readers that convert them to integer nanoseconds (×1000) never move
a slice's end past its parent's.
"""

from __future__ import annotations

import json

import numpy as np

from memadvise._version import __version__
from memadvise.schema.trace import Trace
from memadvise.report.chart_data import op_modules, phase_spans
from memadvise.schema.actions import display_unit
from memadvise.schema.categories import CATEGORY_NAMES, Phase
from memadvise.schema.profile import Profile

TICKS_PER_US = 8
PID = 1
TID_OPS, TID_MODULES, TID_BACKWARD = 1, 2, 3
_ORDER = {"E": 0, "C": 1, "B": 2, "X": 3}  # at one timestamp: close, count, open, then slices


def chrome_trace(profile: Profile) -> dict:
    """The trace document (``{"traceEvents": [...], ...}``) of the profile's recorded step."""
    t = Trace(profile)
    n = len(t.op_clock)
    scale = float(profile.trace.get("time_scale", 1.0)) or 1.0
    ticks = np.round(np.concatenate(([0.0], np.cumsum(t.op_dur_us * scale))) * TICKS_PER_US).astype(np.int64)
    ticks = np.maximum.accumulate(ticks)
    modules = op_modules(t, profile.records.units)
    strings = t.strings
    shapes = profile.trace["ops"]["shape"]  # index into strings: the output's dtype and shape
    events: list[tuple[tuple, dict]] = []  # (sort key, event)
    seq = 0

    def add(ph: str, tick: int, event: dict, dur_ticks: int = 0) -> None:
        nonlocal seq
        event["ph"] = ph
        event["ts"] = tick / TICKS_PER_US
        event["pid"] = PID
        events.append(((int(tick), _ORDER[ph], -int(dur_ticks), seq), event))
        seq += 1

    # phases and ops
    for ph, s, e in phase_spans(t.op_phase):
        label = Phase(ph).label
        add("B", ticks[s], {"name": label, "cat": "phase", "tid": TID_OPS, "args": {"ops": e - s}}, ticks[e] - ticks[s])
        add("E", ticks[e], {"name": label, "cat": "phase", "tid": TID_OPS})
    for i in range(n):
        args: dict = {"op": i, "phase": Phase(int(t.op_phase[i])).label}
        if modules[i]:
            args["module"] = modules[i]
        shape = strings[shapes[i]] if 0 <= shapes[i] < len(strings) else ""
        if shape:
            args["shape"] = shape
        args["out_bytes"] = int(t.op_out_bytes[i])
        args["in_bytes"] = int(t.op_in_bytes[i])
        if t.op_flops[i]:
            args["flops"] = int(t.op_flops[i])
        if t.op_scratch[i]:
            args["scratch_bytes"] = int(t.op_scratch[i])
        dur = int(ticks[i + 1] - ticks[i])
        add("X", ticks[i], {"name": strings[int(t.op_name[i])], "cat": "op", "tid": TID_OPS,
                            "dur": dur / TICKS_PER_US, "args": args}, dur)

    # module calls, nested (calls are stored in pre-order, so parents come first)
    open_ends: list[int] = []
    for c in range(len(t.call_unit)):
        s, e = int(t.call_start_op[c]), int(t.call_end_op[c])
        if e <= s or s < 0 or e > n:
            continue
        a, b = int(ticks[s]), int(ticks[e])
        while open_ends and open_ends[-1] <= a:
            open_ends.pop()
        if open_ends and b > open_ends[-1]:
            continue  # would overlap its enclosing slice: not a nesting a viewer can draw
        open_ends.append(b)
        unit = profile.records.units[int(t.call_unit[c])]
        add("X", a, {"name": display_unit(unit.name), "cat": "module", "tid": TID_MODULES, "dur": (b - a) / TICKS_PER_US,
                     "args": {"type": unit.type, "call": c, "phase": Phase(int(t.call_phase[c])).label}}, b - a)

    # backward ops grouped by the module owning their autograd node
    bwd = np.asarray([t.op_phase[i] == Phase.BACKWARD and modules[i] != "" for i in range(n)], dtype=bool)
    i = 0
    while i < n:
        if not bwd[i]:
            i += 1
            continue
        j = i + 1
        while j < n and bwd[j] and modules[j] == modules[i]:
            j += 1
        a, b = int(ticks[i]), int(ticks[j])
        add("X", a, {"name": modules[i], "cat": "backward", "tid": TID_BACKWARD, "dur": (b - a) / TICKS_PER_US,
                     "args": {"ops": j - i}}, b - a)
        i = j

    # memory counters: live bytes after each op, where a category changed
    if n:
        by = t.baseline_timeline().by_category
        total = by.sum(axis=1)
        prev = None
        for i in range(n):
            row = by[i]
            if prev is None:
                changed = {name: int(row[c]) for c, name in enumerate(CATEGORY_NAMES)}
            else:
                changed = {name: int(row[c]) for c, name in enumerate(CATEGORY_NAMES) if row[c] != prev[c]}
            if changed:
                changed["total"] = int(total[i])
                add("C", ticks[i], {"name": "memory", "tid": TID_OPS, "args": changed})
            prev = row
        # the last values hold to the end of the step
        add("C", ticks[n], {"name": "memory", "tid": TID_OPS,
                            "args": {**{name: int(by[-1, c]) for c, name in enumerate(CATEGORY_NAMES)}, "total": int(total[-1])}})

    events.sort(key=lambda ke: ke[0])
    script = profile.records.script.file_name
    meta = [
        {"ph": "M", "name": "process_name", "pid": PID, "tid": 0, "args": {"name": f"memadvise: {script}"}},
        {"ph": "M", "name": "thread_name", "pid": PID, "tid": TID_OPS, "args": {"name": "ops"}},
        {"ph": "M", "name": "thread_name", "pid": PID, "tid": TID_MODULES, "args": {"name": "modules"}},
        {"ph": "M", "name": "thread_name", "pid": PID, "tid": TID_BACKWARD, "args": {"name": "backward by module"}},
    ] + [{"ph": "M", "name": "thread_sort_index", "pid": PID, "tid": tid, "args": {"sort_index": tid}}
         for tid in (TID_OPS, TID_MODULES, TID_BACKWARD)]
    return {
        "traceEvents": meta + [e for _, e in events],
        "displayTimeUnit": "ms",
        "otherData": {
            "tool": f"memadvise {__version__}",
            "script": profile.records.script.path,
            "profiled": profile.doc.get("created_at"),
            "device": profile.device_type,
            "time_scale": scale,
            "peak_bytes": profile.records.summary.peak_bytes,
            "note": "op durations scaled by time_scale so that they add up to the uninstrumented step time",
        },
    }


def chrome_trace_json(profile: Profile) -> str:
    return json.dumps(chrome_trace(profile), separators=(",", ":")) + "\n"
