"""The NVML wrapper with a fake pynvml: counters, GPM absent, GPM present (DRAM bandwidth
through pynvml's own metrics structure) and failing, init failure, and a sampler thread
that stops when the script crashes."""

import ctypes
import sys
import threading
import time
import types

import pytest

from memadvise.collect.nvml import NvmlSampler


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
