"""NVML counters on NVIDIA GPUs, behind one small wrapper that reports "unavailable" cleanly.

A background thread samples, every ``interval_s``: memory-bandwidth utilisation
(``nvmlDeviceGetUtilizationRates().memory``, percent of time the memory controller was
busy), memory used as NVML sees it, PCIe TX/RX throughput, and on Hopper and newer the
GPM DRAM-bandwidth metric (computed between two consecutive samples, so each GPM value
covers the interval that ends at its sample).

Figures are aggregated over step windows, never over the whole process (whose idle time
would dilute them): the uninstrumented timed steps (``timed_steps``: what the step time
is measured on), the recorded steps (``recorded_steps``, and ``steps`` one by one). A
GPM value counts in a window when its whole interval lies inside it. A reading that is
not a finite number (GPM reports NaN over too short an interval) is dropped, so no NaN
reaches a profile. Without a GPU or without NVML, every entry point is a cheap no-op and
the profile says why the counters are missing.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from typing import Any

GPM_DRAM_BW_UTIL = 10  # NVML_GPM_METRIC_DRAM_BW_UTIL in nvml.h (percent of peak DRAM bandwidth)


class NvmlSampler:
    """Context manager; ``summary(raw_run)`` gives the profile's ``nvml`` section."""

    def __init__(self, device_index: int | None, interval_s: float = 0.02) -> None:
        self.device_index = device_index
        self.interval_s = interval_s
        self.available = False
        self.reason = "not an NVIDIA GPU run"
        self.samples: list[dict] = []
        self.gpm_supported = False
        self._nvml: Any = None
        self._handle: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._gpm_prev: Any = None
        self._gpm_t0 = 0

    @classmethod
    def for_device_type(cls, device_type: str, index: int = 0) -> "NvmlSampler":
        return cls(index if device_type == "cuda" else None)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "NvmlSampler":
        if self.device_index is None:
            return self
        try:
            import pynvml  # from the nvidia-ml-py distribution

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
            self.device_name = _text(pynvml.nvmlDeviceGetName(self._handle))
        except Exception as exc:  # no driver, no library, no permission
            self.reason = f"NVML unavailable: {type(exc).__name__}: {exc}".strip()
            self._nvml = None
            return self
        self.available = True
        self.reason = ""
        self._init_gpm()
        self._thread = threading.Thread(target=self._run, name="memadvise-nvml", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the sampler thread; safe to call twice and when the script crashed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._nvml is not None:
            try:
                if self._gpm_prev is not None:
                    self._nvml.nvmlGpmSampleFree(self._gpm_prev)
                self._nvml.nvmlShutdown()
            except Exception:  # NVML already gone (driver unloaded): nothing left to release
                pass
            self._nvml = None

    def _init_gpm(self) -> None:
        nv = self._nvml
        try:
            support = nv.nvmlGpmQueryDeviceSupport(self._handle)
            self.gpm_supported = bool(getattr(support, "isSupportedDevice", 0))
            if self.gpm_supported:
                self._gpm_prev = nv.nvmlGpmSampleAlloc()
                nv.nvmlGpmSampleGet(self._handle, self._gpm_prev)
                self._gpm_t0 = time.monotonic_ns()
        except Exception:  # no GPM (older GPU, driver or pynvml): sampling goes on without it
            self.gpm_supported = False

    # ------------------------------------------------------------------ sampling
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # keep going: one failed read must not end profiling
                self.samples.append({"t_ns": time.monotonic_ns(), "error": str(exc)})
            self._stop.wait(self.interval_s)

    def sample(self) -> dict:
        nv, h = self._nvml, self._handle
        s: dict[str, Any] = {"t_ns": time.monotonic_ns()}
        util = nv.nvmlDeviceGetUtilizationRates(h)
        s["mem_util_pct"] = float(util.memory)
        s["gpu_util_pct"] = float(util.gpu)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        s["used_bytes"] = int(mem.used)
        s["total_bytes"] = int(mem.total)
        try:
            s["pcie_tx_bytes_s"] = int(nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES)) * 1024
            s["pcie_rx_bytes_s"] = int(nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES)) * 1024
        except Exception:  # no PCIe counters (MIG, permissions): this sample goes without them
            pass
        if self.gpm_supported:
            cur = None
            try:
                cur = nv.nvmlGpmSampleAlloc()
                nv.nvmlGpmSampleGet(h, cur)
                metrics = nv.c_nvmlGpmMetricsGet_t()
                metrics.version = nv.NVML_GPM_METRICS_GET_VERSION
                metrics.numMetrics = 1
                metrics.sample1 = self._gpm_prev
                metrics.sample2 = cur
                metrics.metrics[0].metricId = GPM_DRAM_BW_UTIL
                nv.nvmlGpmMetricsGet(metrics)
                value = float(metrics.metrics[0].value)
                if math.isfinite(value):  # NaN over an interval too short to measure
                    s["dram_bw_util_pct"] = value
                    s["gpm_t0_ns"] = self._gpm_t0
                nv.nvmlGpmSampleFree(self._gpm_prev)
                self._gpm_prev, cur = cur, None
                self._gpm_t0 = s["t_ns"]
            except Exception:  # a GPM read that fails turns GPM off; the other counters go on
                self.gpm_supported = False
                if cur is not None:  # the sample this read allocated: NVML memory, not Python's
                    try:
                        nv.nvmlGpmSampleFree(cur)
                    except Exception:  # NVML no longer knows the sample: nothing left to free
                        pass
        return s

    # ------------------------------------------------------------------ results
    def summary(self, raw: Any = None) -> dict:
        if not self.available:
            return {"available": False, "reason": self.reason}
        out: dict[str, Any] = {
            "available": True,
            "device_name": getattr(self, "device_name", None),
            "interval_s": self.interval_s,
            "gpm_supported": self.gpm_supported,
            "n_samples": len(self.samples),
            "steps": [],
        }
        good = [s for s in self.samples if "error" not in s]
        if raw is not None:
            recorded = []
            for mark in raw.recorder.steps:
                t0, t1 = mark.extra.get("t_start_ns"), mark.extra.get("t_end_ns")
                if t0 is None or t1 is None:
                    continue
                recorded.append((t0, t1))
                out["steps"].append({"index": mark.index, **aggregate(in_windows(good, [(t0, t1)]))})
            out["recorded_steps"] = aggregate(in_windows(good, recorded))
            timed = list(getattr(raw, "timing_windows_ns", None) or [])
            if timed:
                out["timed_steps"] = aggregate(in_windows(good, timed))
        out["overall"] = aggregate(good)  # the whole run, idle time included
        if good:
            out["used_bytes_max"] = max(s["used_bytes"] for s in good)
            reserved = [m.cuda_max_reserved for m in raw.recorder.steps if m.cuda_max_reserved] if raw else []
            if reserved:
                # what the device holds beyond PyTorch's caching allocator: CUDA context,
                # NCCL, other libraries — memory no plan can reduce, and why estimates
                # "don't match nvidia-smi"
                out["outside_pytorch_bytes"] = max(0, out["used_bytes_max"] - max(reserved))
        return out


def in_windows(samples: list[dict], windows: list[tuple[int, int]]) -> list[dict]:
    """The samples taken inside any of ``windows`` (monotonic ns); a GPM value only where
    the interval it covers lies inside the same window."""
    out = []
    for s in samples:
        t = s["t_ns"]
        w = next(((a, b) for a, b in windows if a <= t <= b), None)
        if w is None:
            continue
        if "dram_bw_util_pct" in s and not (w[0] <= s.get("gpm_t0_ns", -1) <= t):
            s = {k: v for k, v in s.items() if k not in ("dram_bw_util_pct", "gpm_t0_ns")}
        out.append(s)
    return out


def aggregate(samples: list[dict]) -> dict:
    """Mean/max of each counter over a window of samples (finite readings only)."""
    out: dict[str, Any] = {"n_samples": len(samples)}
    for key in ("mem_util_pct", "gpu_util_pct", "pcie_tx_bytes_s", "pcie_rx_bytes_s", "dram_bw_util_pct", "used_bytes"):
        values = [s[key] for s in samples if key in s and math.isfinite(s[key])]
        if values:
            out[f"{key}_mean"] = statistics.fmean(values)
            out[f"{key}_max"] = max(values)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
