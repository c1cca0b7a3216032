"""``show --trace``: the step as a Chrome trace, checked against the trace event format
(the JSON Object Format of Chrome's "Trace Event Format" document, which Perfetto's
JSON importer reads): required fields per phase, timestamps that never go back,
B/E pairs that match, slices that nest, counters that are numbers."""

import bisect
import json

import numpy as np
import pytest

from memadvise.schema.trace import Trace
from memadvise.report.perfetto import chrome_trace
from memadvise.schema.categories import CATEGORY_NAMES
from memadvise.schema.profile import Profile, read_profile
from memadvise.testing.synthetic import chain_profile

from helpers import ROOT

N, A, B, S = 8, 4096, 1024, 4
GOLDEN = ROOT / "tests" / "data" / "profile_v1.json"
REQUIRED = {"X": ("name", "ts", "dur", "pid", "tid"), "B": ("name", "ts", "pid", "tid"), "E": ("ts", "pid", "tid"),
            "C": ("name", "ts", "pid", "args"), "M": ("name", "pid", "args")}


def trace_format_errors(doc) -> list[str]:
    """Every way ``doc`` breaks the trace event format (empty: it is a valid trace)."""
    errors = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["no traceEvents list"]
    last_ts: dict = {}
    stacks: dict = {}  # per thread: open slices as (end ts or None for B, name)
    for k, e in enumerate(doc["traceEvents"]):
        ph = e.get("ph")
        if ph not in REQUIRED:
            errors.append(f"event {k}: phase {ph!r} not used here")
            continue
        missing = [f for f in REQUIRED[ph] if f not in e]
        if missing:
            errors.append(f"event {k} ({ph}): missing {missing}")
            continue
        if not isinstance(e["pid"], int) or not isinstance(e.get("tid", 0), int):
            errors.append(f"event {k}: pid/tid not integers")
        if ph == "M":
            continue
        ts = e["ts"]
        if not isinstance(ts, (int, float)) or ts < 0:
            errors.append(f"event {k}: bad ts {ts!r}")
            continue
        track = (e["pid"], e["tid"]) if ph != "C" else (e["pid"], "C", e["name"])
        if ts < last_ts.get(track, 0):
            errors.append(f"event {k}: ts {ts} goes back on {track}")
        last_ts[track] = ts
        if ph == "C":
            if not isinstance(e["args"], dict) or not all(isinstance(v, (int, float)) for v in e["args"].values()):
                errors.append(f"event {k}: counter values are not numbers")
            continue
        stack = stacks.setdefault(track, [])
        while stack and stack[-1][0] is not None and stack[-1][0] <= ts:  # complete slices that ended
            stack.pop()
        if ph == "E":
            if stack and stack[-1][0] is not None:
                errors.append(f"event {k}: E while slice {stack[-1][1]!r} inside it is still open on {track}")
            elif not stack:
                errors.append(f"event {k}: E with no open B on {track}")
            elif e.get("name") not in (None, stack[-1][1]):
                errors.append(f"event {k}: E {e.get('name')!r} closes B {stack[-1][1]!r}")
            else:
                stack.pop()
            continue
        if ph == "X":
            if not isinstance(e["dur"], (int, float)) or e["dur"] < 0:
                errors.append(f"event {k}: bad dur")
                continue
            end = ts + e["dur"]
            enclosing = next((s for s in reversed(stack) if s[0] is not None), None)
            if enclosing is not None and end > enclosing[0] + 1e-9:
                errors.append(f"event {k}: X {e['name']!r} ends after its parent on {track}")
            stack.append((end, e["name"]))
        else:  # B
            stack.append((None, e["name"]))
    for track, stack in stacks.items():
        if any(s[0] is None for s in stack):
            errors.append(f"unclosed B on {track}: {[s[1] for s in stack if s[0] is None]}")
    return errors


def test_the_validator_catches_broken_traces():
    ok = {"traceEvents": [{"ph": "B", "name": "f", "ts": 0, "pid": 1, "tid": 1},
                          {"ph": "X", "name": "a", "ts": 0, "dur": 2, "pid": 1, "tid": 1},
                          {"ph": "E", "name": "f", "ts": 2, "pid": 1, "tid": 1}]}
    assert trace_format_errors(ok) == []
    bad = json.loads(json.dumps(ok))
    del bad["traceEvents"][2]
    assert "unclosed B" in trace_format_errors(bad)[0]
    bad = json.loads(json.dumps(ok))
    bad["traceEvents"][1]["ts"] = -1
    assert "bad ts" in trace_format_errors(bad)[0]
    bad = json.loads(json.dumps(ok))
    bad["traceEvents"].append({"ph": "X", "name": "b", "ts": 1, "dur": 0, "pid": 1, "tid": 1})
    assert "goes back" in trace_format_errors(bad)[0]
    bad = json.loads(json.dumps(ok))
    bad["traceEvents"][2]["ts"] = 1  # the phase ends while its op runs
    assert "E while slice 'a' inside it is still open" in trace_format_errors(bad)[0]
    bad = {"traceEvents": [{"ph": "X", "name": "p", "ts": 0, "dur": 2, "pid": 1, "tid": 1},
                           {"ph": "X", "name": "c", "ts": 1, "dur": 2, "pid": 1, "tid": 1}]}
    assert "ends after its parent" in trace_format_errors(bad)[0]
    assert "missing" in trace_format_errors({"traceEvents": [{"ph": "X", "name": "a", "ts": 0, "pid": 1}]})[0]


@pytest.fixture(scope="module", params=["chain", "golden"])
def profile(request):
    return Profile(chain_profile(N, A, B, S)) if request.param == "chain" else read_profile(GOLDEN)


def test_trace_is_valid_and_survives_json(profile):
    doc = json.loads(json.dumps(chrome_trace(profile)))
    assert trace_format_errors(doc) == []
    assert doc["displayTimeUnit"] == "ms"


def test_one_slice_per_op_inside_its_phase(profile):
    t = Trace(profile)
    events = chrome_trace(profile)["traceEvents"]
    ops = [e for e in events if e["ph"] == "X" and e["cat"] == "op"]
    assert [e["args"]["op"] for e in ops] == list(range(len(t.op_clock)))
    assert [e["name"] for e in ops] == [t.op_name_str(i) for i in range(len(t.op_clock))]
    phases = [e for e in events if e["ph"] in "BE"]
    spans = list(zip(phases[::2], phases[1::2]))
    assert all(b["ph"] == "B" and e["ph"] == "E" and b["name"] == e["name"] for b, e in spans)
    for op in ops:  # each op lies in a phase slice of its own phase
        assert any(b["ts"] <= op["ts"] and op["ts"] + op["dur"] <= e["ts"] and b["name"] == op["args"]["phase"]
                   for b, e in spans)
    # ops back to back, adding up to the uninstrumented step time
    assert ops[-1]["ts"] + ops[-1]["dur"] == pytest.approx(profile.summary["step_time_s"] * 1e6, abs=0.5)


def test_ops_carry_module_shape_and_bytes():
    profile = read_profile(GOLDEN)
    ops = [e for e in chrome_trace(profile)["traceEvents"] if e.get("cat") == "op"]
    addmm = [e for e in ops if e["name"] == "addmm"]
    assert [e["args"]["module"] for e in addmm] == ["blocks.0.fc", "blocks.1.fc", "head"]
    assert addmm[0]["args"]["shape"] == "float32[4, 16]" and addmm[0]["args"]["out_bytes"] == 256
    # backward ops are attributed to the module that owns their autograd node
    mm = [e for e in ops if e["name"] == "mm"]
    assert mm and all(e["args"]["phase"] == "backward" and e["args"]["module"] for e in mm)


def test_module_calls_nest_on_their_own_track():
    profile = Profile(chain_profile(N, A, B, S))
    events = chrome_trace(profile)["traceEvents"]
    mods = [e for e in events if e.get("cat") == "module"]
    assert [e["name"] for e in mods] == ["(root)"] + [f"blocks.{i}" for i in range(N)]
    root = mods[0]
    assert all(root["ts"] <= m["ts"] and m["ts"] + m["dur"] <= root["ts"] + root["dur"] for m in mods[1:])
    bwd = [e["name"] for e in events if e.get("cat") == "backward"]
    assert bwd == [f"blocks.{i}" for i in reversed(range(N))]


def test_counters_follow_the_baseline_timeline(profile):
    t = Trace(profile)
    by = t.baseline_timeline().by_category
    events = [e for e in chrome_trace(profile)["traceEvents"] if e["ph"] == "C"]
    assert {e["name"] for e in events} == {"memory"}
    # replaying the counter values op by op gives the timeline back, category by category
    ops = [e for e in chrome_trace(profile)["traceEvents"] if e.get("cat") == "op"]
    current: dict = {}
    stamps, states = [], []
    for e in events:
        current.update(e["args"])
        stamps.append(e["ts"])
        states.append(dict(current))
    for i, op in enumerate(ops):
        if op["dur"] == 0:
            continue  # a zero-length op shares its timestamp with the next one, which wins
        values = states[bisect.bisect_right(stamps, op["ts"]) - 1]
        assert [values[c] for c in CATEGORY_NAMES] == by[i].tolist()
        assert values["total"] == int(by[i].sum())
    assert max(e["args"].get("total", 0) for e in events) == int(by.sum(axis=1).max())


def test_timestamps_are_exact_in_nanoseconds():
    """Readers convert µs to integer ns (×1000): ends must not drift past parents."""
    profile = read_profile(GOLDEN)
    for e in chrome_trace(profile)["traceEvents"]:
        for key in ("ts", "dur"):
            if key in e:
                assert float(e[key] * 1000).is_integer()
    assert np.isfinite([e["ts"] for e in chrome_trace(profile)["traceEvents"] if "ts" in e]).all()
