"""The per-kind probe behind the traffic model: it measures what it says, on this CPU."""

import statistics

import torch

from memadvise.collect.calibrate import probe_roofline
from memadvise.collect.op_rates import _OpTimer, probe_op_rates


def test_the_timer_counts_each_ops_tensor_bytes_like_the_recorder():
    x = torch.randn(256, 512)
    timer = _OpTimer(torch.device("cpu"))
    with timer:
        torch.nn.functional.gelu(x)
    [(nbytes, dt)] = timer.samples["gelu"]
    assert nbytes == 2 * x.numel() * 4  # read x, write the result
    assert dt > 0


def test_per_element_kinds_and_the_matmul_curve_are_measured():
    rates = probe_op_rates(torch.device("cpu"), repeats=1)
    kinds = rates["op_bytes_per_s"]
    # dropout's random numbers, GELU, layer norm and softmax (forward and backward), AdamW
    for name in ("bernoulli_", "gelu", "gelu_backward", "native_layer_norm", "native_layer_norm_backward",
                 "_softmax", "_softmax_backward_data", "native_batch_norm_backward", "lerp_", "addcdiv_"):
        assert kinds.get(name, 0) > 0, name
    # views move no bytes of their own and are left out below 1 MiB; nothing is infinite
    assert all(0 < v < 1e14 for v in kinds.values())
    curve = rates["matmul_curve_float32"]
    assert [f for f, _ in curve] == sorted(f for f, _ in curve) and len(curve) == 5
    assert all(r > 0 for _, r in curve)


def test_the_roofline_probe_carries_the_dispatch_kinds_and_engine_costs():
    cal = probe_roofline(torch.device("cpu"), repeats=3)
    assert "error" not in cal, cal.get("error")
    assert set(cal["op_overhead_us_by_kind"]) == {"view", "inplace", "matmul"}
    assert all(v > 0 for v in cal["op_overhead_us_by_kind"].values())
    # differences of timings, floored at 0 (their sizes: benchmarks/probe_checks.py)
    assert all(cal[k] >= 0 for k in ("autograd_node_us", "autograd_record_us", "module_call_us"))
    assert cal["op_bytes_per_s"] and cal["matmul_curve_float32"]


def test_a_kinds_rate_is_its_calls_at_their_median_over_rounds():
    from memadvise.collect.op_rates import _kind_rate

    mib = 2**20
    # two calls of the kind per round (4 MiB and 2 MiB), three rounds, one call descheduled
    rounds = [[(4 * mib, 1e-3), (2 * mib, 1e-3)], [(4 * mib, 1e-3), (2 * mib, 9e-3)], [(4 * mib, 1.2e-3), (2 * mib, 1e-3)]]
    samples = [s for r in rounds for s in r]
    assert _kind_rate(samples, 3) == (6 * mib) / (1e-3 + 1e-3)
    # calls under 1 MiB (mostly dispatch) are left out; a kind with none has no rate
    assert _kind_rate([(mib // 2, 1e-6)] * 3, 3) is None
    # rounds that do not line up (a kind that ran a varying number of times): median of the rates
    assert _kind_rate([(2 * mib, 1e-3), (2 * mib, 2e-3)], 3) == statistics.median([2 * mib / 1e-3, 2 * mib / 2e-3])


def test_cold_replay_takes_fresh_inputs_and_memory_each_call():
    from memadvise.collect.probe import _cold_replay_time

    seen_in, seen_out = [], []

    def op(x):
        out = x + 1
        seen_in.append(x.data_ptr())
        seen_out.append(out.data_ptr())
        return out

    x = torch.randn(256, 256)[:, :128]  # a view: its copies keep the strides
    per_call = x.numel() * 4 + 256 * 128 * 4
    seconds = _cold_replay_time(op, (x,), {}, torch.device("cpu"), repeats=10, ring_bytes=4 * per_call)
    assert seconds > 0
    calls = len(seen_in) - 1  # the first call sizes the ring
    assert calls == 12
    # four copies of the input, taken in turn; the last four outputs kept, so no two
    # calls within four write the same memory
    assert len(set(seen_in[1:])) == 4 and seen_in[1:5] == seen_in[5:9]
    assert all(len(set(seen_out[i:i + 4])) == 4 for i in range(1, calls - 3))
