"""The NVML wrapper with a fake pynvml: counters, GPM absent, GPM present (DRAM bandwidth
through pynvml's own metrics structure) and failing, init failure, and a sampler thread
that stops when the script crashes."""

import ctypes
import json
import sys
import threading
import time
import types

import pytest

from memadvise.collect.nvml import NvmlSampler, aggregate, in_windows


def fake_pynvml(*, init_error=None, gpm=False):
    m = types.ModuleType("pynvml")
    m.NVML_PCIE_UTIL_TX_BYTES, m.NVML_PCIE_UTIL_RX_BYTES = 0, 1
    m.calls = []

    def nvmlInit():
        if init_error:
            raise init_error
    m.nvmlInit = nvmlInit
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA Fake GPU"
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=55, memory=40)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=3 * 2**30, total=80 * 2**30)
    m.nvmlDeviceGetPcieThroughput = lambda h, kind: 1000 if kind == 0 else 2000  # KB/s

    def gpm_support(h):
        if not gpm:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return types.SimpleNamespace(isSupportedDevice=1)
    m.nvmlGpmQueryDeviceSupport = gpm_support
    return m


@pytest.fixture
def install(monkeypatch):
    def _install(module):
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module
    return _install


def test_counters_are_sampled_and_aggregated(install):
    install(fake_pynvml())
    with NvmlSampler(0, interval_s=0.005) as s:
        threading.Event().wait(0.05)
    summary = s.summary()
    assert summary["available"] is True and summary["gpm_supported"] is False
    assert summary["device_name"] == "NVIDIA Fake GPU"
    overall = summary["overall"]
    assert overall["mem_util_pct_mean"] == 40 and overall["pcie_rx_bytes_s_max"] == 2000 * 1024
    assert "dram_bw_util_pct_mean" not in overall  # no GPM on this device
    assert summary["used_bytes_max"] == 3 * 2**30


def test_init_failure_is_reported_cleanly(install):
    install(fake_pynvml(init_error=RuntimeError("NVML Shared Library Not Found")))
    with NvmlSampler(0) as s:
        pass
    summary = s.summary()
    assert summary == {"available": False, "reason": "NVML unavailable: RuntimeError: NVML Shared Library Not Found"}


def test_no_pynvml_and_cpu_runs(install, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    with NvmlSampler(0) as s:
        pass
    assert s.summary()["available"] is False
    with NvmlSampler.for_device_type("cpu") as cpu:
        pass
    assert cpu.summary() == {"available": False, "reason": "not an NVIDIA GPU run"}


def test_sampler_thread_stops_when_the_script_crashes(install):
    fake = install(fake_pynvml())
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ValueError):
        with NvmlSampler(0, interval_s=0.005):
            assert any(t.name == "memadvise-nvml" for t in threading.enumerate())
            raise ValueError("the script crashed")
    assert not any(t.name == "memadvise-nvml" for t in threading.enumerate())
    assert "shutdown" in fake.calls
    assert {t.name for t in threading.enumerate()} <= before | {"MainThread"}


def gpm_pynvml(values, *, fail_after=None):
    """A fake with GPM: DRAM bandwidth read from ``values`` in turn, through pynvml's own
    metrics structure (so a wrong field name fails here); ``nvmlGpmMetricsGet`` raises
    after ``fail_after`` calls."""
    real = pytest.importorskip("pynvml")
    m = fake_pynvml(gpm=True)
    m.c_nvmlGpmMetricsGet_t = real.c_nvmlGpmMetricsGet_t
    m.NVML_GPM_METRICS_GET_VERSION = real.NVML_GPM_METRICS_GET_VERSION
    m.live, m.freed, m.metric_ids = {}, [], []

    def address(sample):
        return ctypes.cast(sample, ctypes.c_void_p).value

    def alloc():  # a real nvmlGpmSample_t pointer, as pynvml's structure only takes those
        target = real.c_nvmlGpmSample_t._type_()
        sample = real.c_nvmlGpmSample_t(target)
        m.live[address(sample)] = target
        return sample

    def free(sample):
        m.freed.append(m.live.pop(address(sample)))

    def metrics_get(mg):
        if fail_after is not None and len(m.metric_ids) >= fail_after:
            raise RuntimeError("NVML_ERROR_UNKNOWN")
        one, two = address(mg.sample1), address(mg.sample2)
        assert one in m.live and two in m.live and one != two
        m.metric_ids.append(mg.metrics[0].metricId)
        mg.metrics[0].value = values[min(len(m.metric_ids) - 1, len(values) - 1)]
        return mg

    m.nvmlGpmSampleAlloc = alloc
    m.nvmlGpmSampleFree = free
    m.nvmlGpmSampleGet = lambda h, k: None
    m.nvmlGpmMetricsGet = metrics_get
    return m


def sample_until(s, n, timeout_s=5.0):
    """Let the sampler thread take ``n`` samples (a loaded CI machine may be slow to)."""
    deadline = time.monotonic() + timeout_s
    while len(s.samples) < n and time.monotonic() < deadline:
        time.sleep(0.005)


def test_gpm_dram_bandwidth_is_sampled_between_consecutive_samples(install):
    m = install(gpm_pynvml([20.0, 60.0]))
    with NvmlSampler(0, interval_s=0.005) as s:
        sample_until(s, 3)
    summary = s.summary()
    assert summary["gpm_supported"] is True
    assert set(m.metric_ids) == {10}  # NVML_GPM_METRIC_DRAM_BW_UTIL
    good = [x for x in s.samples if "error" not in x]
    assert good[0]["dram_bw_util_pct"] == 20.0 and good[-1]["dram_bw_util_pct"] == 60.0
    assert summary["overall"]["dram_bw_util_pct_mean"] > 20.0
    assert not m.live  # every GPM sample freed once the sampler stopped


def test_a_failing_gpm_read_turns_gpm_off_and_sampling_goes_on(install):
    m = install(gpm_pynvml([30.0], fail_after=1))
    with NvmlSampler(0, interval_s=0.005) as s:
        sample_until(s, 3)
    summary = s.summary()
    assert summary["gpm_supported"] is False
    good = [x for x in s.samples if "error" not in x]
    assert good[0]["dram_bw_util_pct"] == 30.0 and "dram_bw_util_pct" not in good[-1]
    assert len(good) > 2 and summary["overall"]["mem_util_pct_mean"] == 40
    assert not m.live  # the sample allocated by the failed read is freed too


def test_gpm_nan_never_reaches_the_profile(install):
    install(gpm_pynvml([float("nan"), 30.0]))
    with NvmlSampler(0, interval_s=0.005) as s:
        sample_until(s, 4)
    summary = s.summary()
    json.dumps(summary, allow_nan=False)  # raises on a NaN anywhere
    assert summary["overall"]["dram_bw_util_pct_mean"] == 30.0


def _sample(t, mem, gpm=None, gpm_t0=None):
    s = {"t_ns": t, "mem_util_pct": mem, "used_bytes": 1}
    if gpm is not None:
        s.update(dram_bw_util_pct=gpm, gpm_t0_ns=gpm_t0)
    return s


def test_counters_are_aggregated_over_the_step_windows_only():
    """Idle time around the steps (mem 0%) does not dilute them; a GPM value counts in a
    window only when the interval it covers lies inside it; NaN readings are dropped."""
    samples = [_sample(0, 0.0), _sample(10, 50.0, gpm=20.0, gpm_t0=5), _sample(20, 70.0, gpm=40.0, gpm_t0=10),
               _sample(30, float("nan")), _sample(40, 0.0, gpm=99.0, gpm_t0=20),
               _sample(110, 90.0, gpm=10.0, gpm_t0=100), _sample(200, 0.0)]
    agg = aggregate(in_windows(samples, [(8, 35), (100, 120)]))
    assert agg["n_samples"] == 4
    assert agg["mem_util_pct_mean"] == (50 + 70 + 90) / 3
    assert agg["dram_bw_util_pct_mean"] == (40 + 10) / 2  # t0=5 lies before the first window


def test_summary_has_timed_and_recorded_windows(install):
    install(fake_pynvml())
    with NvmlSampler(0, interval_s=0.005) as s:
        sample_until(s, 6)
    t = [x["t_ns"] for x in s.samples]
    mark = types.SimpleNamespace(index=5, extra={"t_start_ns": t[3], "t_end_ns": t[5]}, cuda_max_reserved=None)
    raw = types.SimpleNamespace(recorder=types.SimpleNamespace(steps=[mark]), timing_windows_ns=[(t[0], t[1])])
    summary = s.summary(raw)
    assert summary["timed_steps"]["n_samples"] == 2 and summary["recorded_steps"]["n_samples"] == 3
    assert summary["steps"][0]["index"] == 5 and summary["steps"][0]["n_samples"] == 3


def test_reports_say_not_available_in_words():
    from memadvise.analysis.traffic import nvml_window
    from memadvise.report.traffic_report import nvml_line

    nv = {"available": True, "overall": {"n_samples": 9, "mem_util_pct_mean": 6.0},
          "timed_steps": {"n_samples": 4, "mem_util_pct_mean": 41.0, "dram_bw_util_pct_mean": float("nan")}}
    line = nvml_line(nvml_window(nv))
    assert line == ("NVML over the timed steps (4 samples): memory controller busy 41% of the time, "
                    "DRAM bandwidth (GPM) not available")
    assert "nan" not in line.lower()
    old = nvml_line(nvml_window({"overall": {"n_samples": 9, "mem_util_pct_mean": 6.0, "dram_bw_util_pct_mean": 22.9,
                                             "dram_bw_util_pct_max": 30.0}}))
    assert old == ("NVML over the whole run, idle time included (9 samples): memory controller busy 6% of the "
                   "time, DRAM bandwidth (GPM) 23% (max 30%)")


def test_an_older_profiles_nan_reaches_no_output():
    """Profiles made before NaN readings were dropped: show --json and the traffic view
    pass on None / "not available", never NaN."""
    from conftest import ROOT

    from memadvise.analysis.traffic import nvml_window
    from memadvise.report.profile_report import show_document
    from memadvise.schema.profile import Profile

    doc = json.loads((ROOT / "tests" / "data" / "profile_gpt.json").read_text())
    doc["nvml"] = {"available": True, "overall": {"n_samples": 3, "mem_util_pct_mean": 6.0,
                                                  "dram_bw_util_pct_mean": float("nan")}}
    profile = Profile(doc=doc, path=None)
    json.dumps(show_document(profile)["nvml"], allow_nan=False)
    window = nvml_window(doc["nvml"])
    json.dumps(window, allow_nan=False)
    assert "dram_bw_util_pct_mean" not in window
