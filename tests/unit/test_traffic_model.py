"""The traffic model's step time on a hand-built chain: each op at its roofline plus the
dispatch cost, computed here from the chain's own bytes and FLOPs."""

import numpy as np
import pytest

from memadvise.schema.trace import Trace
from memadvise.analysis.traffic import predict_step_time, traffic_report
from memadvise.schema.ops import VIEW_OPS
from memadvise.schema.profile import Profile
from memadvise.testing.synthetic import chain_profile

BW, MATMUL, CONV, OVERHEAD_US = 10e9, 50e9, 20e9, 3.0


def profile_with(*, conv: bool = False, **calibration) -> Profile:
    """The chain with bytes and FLOPs per op filled in (the synthetic chain has none);
    ``conv``: its backward matmul renamed to a convolution's."""
    doc = chain_profile(6, 4096, 1024, device_type="cpu")
    ops, strings = doc["trace"]["ops"], doc["trace"]["strings"]
    n = len(ops["name"])
    ops["in_bytes"] = [4096 * (1 + i % 3) for i in range(n)]
    ops["out_bytes"] = [1024 * (1 + i % 2) for i in range(n)]
    ops["flops"] = [10**6 * (1 + i % 4) if strings[k] in ("addmm", "mm") else 0 for i, k in enumerate(ops["name"])]
    if conv:
        strings[strings.index("mm")] = "convolution_backward"
    doc["calibration"].update(calibration)
    return Profile(doc)


def expected(profile: Profile, conv_rate: float, *, kinds: dict | None = None, matmul_rate=None,
             dispatch: dict | None = None, node_us: float = 0.0, module_us: float = 0.0, bandwidth: float = BW) -> float:
    """The model written out op by op: ``kinds`` op name -> bytes/s (used when under the
    bandwidth); ``matmul_rate(flops)``; ``dispatch`` kind -> µs."""
    t = Trace(profile)
    dispatch = dispatch or {}
    total = module_us / 1e6 * len(t.call_unit)
    for i in range(len(t.op_name)):
        name = t.op_name_str(i)
        view = name in VIEW_OPS
        nbytes = 0 if view else int(t.op_in_bytes[i]) + int(t.op_out_bytes[i])
        bw = min(bandwidth, (kinds or {}).get(name, bandwidth))
        flops = int(t.op_flops[i])
        rate = conv_rate if "convolution" in name else (matmul_rate(flops) if matmul_rate else MATMUL)
        kind = "view" if view else "matmul" if name in ("mm", "addmm") else "inplace" if name.endswith("_") else None
        total += max(nbytes / bw, flops / rate) + dispatch.get(kind, OVERHEAD_US) / 1e6
        if t.op_phase[i] == 1 and not view:
            total += node_us / 1e6
    return total


def test_each_op_at_its_roofline_plus_dispatch():
    p = profile_with(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    got = predict_step_time(p)
    assert got["step_time_s"] == pytest.approx(expected(p, MATMUL), rel=1e-12)
    assert got["dispatch_s"] == pytest.approx(OVERHEAD_US / 1e6 * got["ops"])
    assert got["memory_bound_s"] + got["compute_bound_s"] + got["dispatch_s"] == pytest.approx(got["step_time_s"])
    # the chain has matmuls (addmm, mm) and pointwise ops: both kinds of bound appear
    assert got["memory_bound_s"] > 0 and got["compute_bound_s"] > 0


def test_convolutions_run_at_the_convolution_rate():
    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(conv=True, conv_flops_per_s_float32=CONV, **cal)
    assert predict_step_time(p)["step_time_s"] == pytest.approx(expected(p, CONV), rel=1e-12)
    # without a probed convolution rate, the matmul rate stands in
    q = profile_with(conv=True, **cal)
    assert predict_step_time(q)["step_time_s"] == pytest.approx(expected(q, MATMUL), rel=1e-12)
    assert predict_step_time(p)["step_time_s"] > predict_step_time(q)["step_time_s"]


def test_a_faster_device_predicts_a_faster_step():
    slow = profile_with(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    fast = profile_with(bandwidth_bytes_per_s=2 * BW, matmul_flops_per_s_float32=2 * MATMUL, op_overhead_us=0.0)
    a, b = predict_step_time(slow)["step_time_s"], predict_step_time(fast)["step_time_s"]
    assert b == pytest.approx((a - OVERHEAD_US / 1e6 * predict_step_time(slow)["ops"]) / 2)


def test_ops_of_a_slower_kind_run_at_their_probed_rate():
    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(**cal)
    names = {Trace(p).op_name_str(i) for i in range(len(Trace(p).op_name))} - VIEW_OPS - {"mm", "addmm"}
    slow, fast = sorted(names)[:2]
    kinds = {slow: BW / 7, fast: BW * 3}  # a kind faster than a large copy stays at the copy's bandwidth
    q = profile_with(op_bytes_per_s=kinds, **cal)
    got = predict_step_time(q)
    assert got["step_time_s"] == pytest.approx(expected(q, MATMUL, kinds=kinds), rel=1e-12)
    assert got["step_time_s"] > predict_step_time(p)["step_time_s"]
    assert got["kind_rated_ops"] == sum(Trace(q).op_name_str(i) == slow for i in range(len(Trace(q).op_name)))


def test_matmuls_run_at_the_rate_of_their_size():
    curve = [[1e6, 10e9], [1e7, 40e9], [1e8, 80e9]]
    cal = dict(bandwidth_bytes_per_s=1e15, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(matmul_curve_float32=curve, **cal)

    def rate(flops):  # log-linear between the probed sizes, flat beyond them
        return float(np.interp(np.log(max(flops, 1)), np.log([c[0] for c in curve]), [c[1] for c in curve]))

    assert rate(2e6) == pytest.approx(10e9 + 30e9 * np.log(2) / np.log(10))
    got = predict_step_time(p)["step_time_s"]
    assert got == pytest.approx(expected(p, MATMUL, matmul_rate=rate, bandwidth=1e15), rel=1e-12)
    # the synthetic chain's matmuls are 1-4 MFLOP: slower than the large-matmul rate alone
    assert got > predict_step_time(profile_with(**cal))["step_time_s"]


def test_dispatch_by_kind_autograd_nodes_and_module_calls():
    dispatch = {"view": 0.5, "inplace": 2.0, "matmul": 6.0}
    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US,
               op_overhead_us_by_kind=dispatch, autograd_node_us=1.5, module_call_us=0.75)
    p = profile_with(**cal)
    got = predict_step_time(p)
    assert got["step_time_s"] == pytest.approx(
        expected(p, MATMUL, dispatch=dispatch, node_us=1.5, module_us=0.75), rel=1e-12)
    assert got["module_calls_s"] == pytest.approx(0.75e-6 * len(Trace(p).call_unit))
    assert got["module_calls_s"] > 0


def test_replayed_ops_are_priced_at_their_replay():
    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=0.0)
    p = profile_with(**cal)
    t = Trace(p)
    matmuls = [i for i in range(len(t.op_name)) if t.op_name_str(i) in ("mm", "addmm")]
    assert matmuls
    before = predict_step_time(p)
    p.trace["ops"]["replay_us"] = [250.0 if i in matmuls else None for i in range(len(t.op_name))]
    got = predict_step_time(p)
    # with no dispatch cost, each matmul's roofline is max(bytes/bw, flops/rate)
    roof = sum(max((int(t.op_in_bytes[i]) + int(t.op_out_bytes[i])) / BW, int(t.op_flops[i]) / MATMUL) for i in matmuls)
    assert got["step_time_s"] == pytest.approx(before["step_time_s"] - roof + 250e-6 * len(matmuls), rel=1e-12)
    assert got["replayed_ops"] == len(matmuls)
    assert got["replayed_s"] == pytest.approx(250e-6 * len(matmuls))
    # the roofline-only figure ignores the replays
    assert got["roofline_step_time_s"] == pytest.approx(before["step_time_s"], rel=1e-12)


def test_the_optimizer_step_is_priced_as_measured_on_copies():
    from memadvise.schema.categories import Phase

    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(**cal)
    n = len(p.trace["ops"]["name"])
    last = list(range(n - 3, n))  # the chain's last ops, relabelled as the optimizer's step
    for i in last:
        p.trace["ops"]["phase"][i] = int(Phase.OPTIMIZER)
    ops_only = predict_step_time(p)
    assert not ops_only["optimizer_from_probe"]
    t = Trace(p)
    opt_roof = sum(max((int(t.op_in_bytes[i]) + int(t.op_out_bytes[i])) / BW, int(t.op_flops[i]) / MATMUL)
                   + OVERHEAD_US / 1e6 for i in last if t.op_name_str(i) not in VIEW_OPS)
    opt_roof += sum(OVERHEAD_US / 1e6 for i in last if t.op_name_str(i) in VIEW_OPS)
    assert ops_only["optimizer_s"] == pytest.approx(opt_roof, rel=1e-9)
    p.doc["optimizer"] = {"probe": {"available": True, "current": "for-loop",
                                    "variants": {"for-loop": {"time_s": 0.02}, "fused": {"time_s": 0.001}}}}
    got = predict_step_time(p)
    assert got["optimizer_from_probe"] and got["optimizer_s"] == 0.02
    assert got["step_time_s"] == pytest.approx(ops_only["step_time_s"] - opt_roof + 0.02, rel=1e-9)


def test_autograd_costs_are_per_node_recorded_and_run():
    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US,
               autograd_node_us=1.5, autograd_record_us=0.5)
    p = profile_with(**cal)
    without_count = predict_step_time(p)
    p.trace["backward_nodes"] = 7
    got = predict_step_time(p)
    assert got["autograd_s"] == pytest.approx(7 * 2.0e-6)
    t = Trace(p)
    bwd_ops = sum(1 for i in range(len(t.op_name)) if t.op_phase[i] == 1 and t.op_name_str(i) not in VIEW_OPS)
    # older profiles, without the node count: one node per backward op that is no view
    assert without_count["autograd_s"] == pytest.approx(bwd_ops * 2.0e-6)


def test_the_steps_page_faults_are_priced_when_the_probes_ran_on_a_pinned_heap():
    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    plain = predict_step_time(profile_with(**cal))
    p = profile_with(**cal, heap_pinned=True, page_fault_us=0.7)
    p.doc["summary"]["minor_faults_per_step"] = 2000
    got = predict_step_time(p)
    assert got["page_faults_s"] == pytest.approx(2000 * 0.7e-6)
    assert got["step_time_s"] == pytest.approx(plain["step_time_s"] + 2000 * 0.7e-6)
    # probes on an unpinned heap paid their own faults: the step's are not added again
    p.doc["calibration"]["heap_pinned"] = False
    assert predict_step_time(p)["page_faults_s"] == 0.0


def test_a_changes_page_faults_scale_the_measured_count_by_the_replayed_ratio():
    from memadvise.analysis.traffic import fault_delta, predict_traffic

    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(**cal, heap_pinned=True, page_fault_us=0.5, fault_replay={"recorded": 1000.0, "compile": 250.0})
    p.doc["summary"]["minor_faults_per_step"] = 2000
    got = fault_delta(p, "compile")
    assert got["changed"] == pytest.approx(500) and got["delta_s"] == pytest.approx(-1500 * 0.5e-6)
    without = profile_with(**cal, heap_pinned=True, page_fault_us=0.5)
    without.doc["summary"]["minor_faults_per_step"] = 2000
    assert fault_delta(without, "compile") is None
    assert (predict_traffic(p, {"compile": True}).delta_s
            == pytest.approx(predict_traffic(without, {"compile": True}).delta_s - 1500 * 0.5e-6))
    # the recorded replay faulted nothing: the change's own replayed faults are added
    p.doc["calibration"]["fault_replay"] = {"recorded": 0.0, "compile": 300.0}
    assert fault_delta(p, "compile")["changed"] == pytest.approx(2300)
    # probes on an unpinned heap: no price for a fault, no term
    p.doc["calibration"]["heap_pinned"] = False
    assert fault_delta(p, "compile") is None


def test_roofline_report_carries_the_model():
    p = profile_with(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    doc = traffic_report(p)
    assert doc["model_step_time_s"] == pytest.approx(expected(p, MATMUL))
    assert np.isfinite(doc["memory_bound_share"])


def test_autocast_uses_the_replayed_ratios_and_the_measured_cast_cost():
    from memadvise.analysis.traffic import predict_traffic
    from memadvise.schema.categories import Phase

    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US,
               matmul_flops_per_s_bfloat16=2 * MATMUL, autocast_dtype="bfloat16", autocast_matmul_overhead_us=7.0)
    ratios = {str(i): 0.5 + 0.1 * (i % 4) for i in range(len(Trace(profile_with(**cal)).op_name))}
    p = profile_with(autocast_op_ratio=ratios, **cal)
    t = Trace(p)
    time_s = t.op_dur_us * float(p.trace.get("time_scale", 1.0)) / 1e6
    n_fwd_mm = sum(1 for i in range(len(t.op_name))
                   if t.op_phase[i] == Phase.FORWARD and t.op_name_str(i) in ("mm", "addmm"))
    param_bytes = int((p.doc.get("model") or {}).get("param_bytes") or 0)
    want = sum(time_s[i] * (r - 1) for i, r in ((int(k), v) for k, v in ratios.items())
               if t.op_phase[i] != Phase.OPTIMIZER) + n_fwd_mm * 7e-6 + 1.5 * param_bytes / BW
    got = predict_traffic(p, {"autocast": "bfloat16"})
    assert n_fwd_mm > 0 and got.delta_s == pytest.approx(want, rel=1e-9)
    assert any("replayed in bfloat16" in n for n in got.notes)


def test_the_autocast_probe_replays_matmuls_and_leaves_float32_ops_alone():
    import torch

    from memadvise.collect.probe import ScratchProbe, time_autocast

    probe = ScratchProbe()
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    aten = torch.ops.aten
    probe.note(aten.mm.default, (a, b), {}, 0)
    probe.note(aten._softmax.default, (a, -1, False), {}, 1)
    probe.note(aten._softmax_backward_data.default, (a, a, -1, torch.float32), {}, 2)
    probe.note(aten.native_layer_norm.default, (a, [64], None, None, 1e-5), {}, 3)
    probe.note(aten.mm.default, (a, b), {}, 4)  # same signature: measured once, both ops get it
    ratios = time_autocast(probe, torch.device("cpu"), torch.bfloat16, repeats=1)
    assert set(ratios) == {0, 4} and ratios[0] == ratios[4] > 0


def test_autocast_ops_not_replayed_move_half_the_bytes_at_their_kinds_rate():
    """Ops the replay skipped: bandwidth-bound ones halve, an op whose kind computes per
    element (probed rate under the bandwidth) keeps its time as long as that still binds."""
    from memadvise.analysis.traffic import predict_traffic
    from memadvise.schema.ops import runs_in_float32
    from memadvise.schema.categories import Phase

    base = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US,
                matmul_flops_per_s_bfloat16=2 * MATMUL, autocast_dtype="bfloat16", autocast_matmul_overhead_us=0.0)
    t0 = Trace(profile_with(**base))
    mm = [i for i in range(len(t0.op_name)) if t0.op_name_str(i) in ("mm", "addmm")]
    others = sorted({t0.op_name_str(i) for i in range(len(t0.op_name))} - VIEW_OPS - {"mm", "addmm"})
    slow = next(n for n in others if not runs_in_float32(n))
    kinds = {slow: BW / 4}
    p = profile_with(autocast_op_ratio={str(i): 1.0 for i in mm}, op_bytes_per_s=kinds, **base)
    strings, ops = p.trace["strings"], p.trace["ops"]
    strings += ["float32[64, 1024]", "int64[64]"]
    # every op float32 but the first, whose output is integer (left alone)
    ops["shape"] = [len(strings) - 1] + [len(strings) - 2] * (len(ops["name"]) - 1)
    t = Trace(p)
    time_s = t.op_dur_us * float(p.trace.get("time_scale", 1.0)) / 1e6
    shapes = p.trace["ops"]["shape"]
    want, n = 0.0, 0
    for i in range(len(t.op_name)):
        name = t.op_name_str(i)
        nbytes = int(t.op_in_bytes[i]) + int(t.op_out_bytes[i])
        if (i in mm or name in VIEW_OPS or runs_in_float32(name) or t.op_phase[i] == Phase.OPTIMIZER
                or not nbytes or not t.strings[shapes[i]].startswith("float32")):
            continue
        n += 1
        if name == slow:  # per-element bound before and after: unchanged
            continue
        want -= 0.5 * time_s[i]
    param_bytes = int((p.doc.get("model") or {}).get("param_bytes") or 0)
    got = predict_traffic(p, {"autocast": "bfloat16"})
    assert n > 0 and any(t.op_name_str(i) == slow for i in range(len(t.op_name)))
    assert got.delta_s == pytest.approx(want + 1.5 * param_bytes / BW, rel=1e-9)
    assert any(f"{n} other ops from the traffic model" in note for note in got.notes)


def test_compile_keeps_random_numbers_at_their_time():
    from memadvise.analysis.traffic import predict_traffic
    from memadvise.schema.roofline import memory_bound_chains, roofline
    from memadvise.schema.categories import Phase

    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(**cal)
    p.trace["ops"]["owner"] = [0] * len(p.trace["ops"]["name"])  # one module call: its pointwise runs chain
    t = Trace(p)
    chains = [(i, j) for i, j in memory_bound_chains(t, roofline(p, t)) if j > i and t.op_phase[i] != Phase.OPTIMIZER]
    assert chains
    base = predict_traffic(p, {"compile": True})
    assert base.delta_s < 0 and not any("kept at their time" in n for n in base.notes)
    i, _ = chains[0]
    p.trace["strings"].append("bernoulli_")
    p.trace["ops"]["name"][i] = len(p.trace["strings"]) - 1  # the chain now starts with dropout's mask
    got = predict_traffic(p, {"compile": True})
    assert base.delta_s < got.delta_s <= 0  # the random numbers are not fused away
    assert any("kept at their time" in n for n in got.notes)


def test_compile_fuses_through_module_boundaries_but_not_into_the_loss():
    from memadvise.analysis.traffic import predict_traffic
    from memadvise.schema.roofline import memory_bound_chains, roofline

    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(**cal)
    n = len(p.trace["ops"]["name"])
    p.trace["ops"]["owner"] = [k % 2 for k in range(n)]  # two modules in turn: no per-module run
    t = Trace(p)
    r = roofline(p, t)
    assert all(i == j for i, j in memory_bound_chains(t, r))
    across = memory_bound_chains(t, r, across_modules=True)
    assert any(j > i for i, j in across)
    fused = predict_traffic(p, {"compile": True}).delta_s
    assert fused < 0
    p.trace["ops"]["owner"] = [-1] * n  # every op outside the model (a loss, a functional step)
    t = Trace(p)
    assert all(i == j for i, j in memory_bound_chains(t, roofline(p, t), across_modules=True))
    assert predict_traffic(p, {"compile": True}).delta_s == 0.0


def test_compile_adds_the_probed_graph_cost_and_random_numbers():
    from memadvise.analysis.traffic import _model_calls, predict_traffic

    cal = dict(bandwidth_bytes_per_s=BW, matmul_flops_per_s_float32=MATMUL, op_overhead_us=OVERHEAD_US)
    p = profile_with(**cal)
    ops, strings = p.trace["ops"], p.trace["strings"]
    k = next(i for i in range(len(ops["name"])) if ops["phase"][i] == 0 and strings[ops["name"][i]] not in VIEW_OPS)
    strings.extend(["bernoulli_", "float32[4, 1024]"])
    ops["name"][k], ops["shape"][k] = len(strings) - 2, len(strings) - 1
    elems = 4 * 1024
    without = predict_traffic(p, {"compile": True})
    assert any("--probe-compile" in n for n in without.notes)
    p.doc["calibration"]["compile_probe"] = {"graph_overhead_us": 90.0, "rng_extra_ns_per_element": 4.0}
    got = predict_traffic(p, {"compile": True})
    assert _model_calls(p) == 1
    assert got.delta_s == pytest.approx(without.delta_s + 90e-6 + elems * 4e-9, rel=1e-12)
    # a probe that failed is no measurement
    p.doc["calibration"]["compile_probe"] = {"error": "RuntimeError: no C++ compiler"}
    assert predict_traffic(p, {"compile": True}).delta_s == pytest.approx(without.delta_s, rel=1e-12)


def test_numel_of_recorded_shapes():
    from memadvise.analysis.traffic import _numel

    assert _numel("float32[8, 64, 128]") == 8 * 64 * 128
    assert _numel("float32[]") == 1 and _numel("") == 0 and _numel("float32[s0, 4]") == 0
