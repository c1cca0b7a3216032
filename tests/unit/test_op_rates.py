"""The per-kind probe behind the traffic model: it measures what it says, on this CPU."""

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
    assert cal["autograd_node_us"] >= 0 and cal["module_call_us"] >= 0
    assert cal["op_bytes_per_s"] and cal["matmul_curve_float32"]
