"""The NVML wrapper with a fake pynvml: counters, GPM absent, init failure, and a sampler
thread that stops when the script crashes."""

import sys
import threading
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
