"""The benchmarks keep working: each runs at tiny sizes (numbers are not asserted, except
that memadvise's predictions hold)."""

import json
import subprocess
import sys

import pytest

from helpers import ROOT

BENCH = ROOT / "benchmarks"
pytestmark = pytest.mark.heavy  # `make test-heavy`: together about 3 minutes on 2 cores


def test_compare_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "compare.py"), "--smoke", "--models", "mlp", "--skip-slow",
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "mlp-smoke.json").read_text())
    kinds = {r["kind"] for r in rows}
    assert {"baseline", "memadvise", "alternative", "meta"} <= kinds
    alternatives = {r["variant"]: r for r in rows if r["kind"] == "alternative"}
    assert alternatives["checkpoint every block"].get("peak_bytes")
    for name in ("sac_milp 50%", "ckptplan 50%"):
        assert "peak_bytes" in alternatives[name] or alternatives[name]["error"]  # ran, or says why not
    for r in rows:
        if r.get("kind") == "memadvise" and "peak_error" in r:
            assert r["peak_error"] <= 0.03, r
    assert (tmp_path / "mlp-smoke.csv").exists()


def test_scale_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--out", str(tmp_path / "scale.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "scale.json").read_text())
    assert doc["profile_io"]["ops"] >= 50_000
    assert doc["solver_2000_units"]["units"] == 2000


def test_report_scale_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "report_scale.py"), "--blocks", "300",
                           "--out", str(tmp_path / "report_scale.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "report_scale.json").read_text())
    assert doc["ops"] >= 1200 and 0 < doc["report_bytes"] < 10e6


def test_traffic_smoke(tmp_path):
    out = tmp_path / "traffic.json"
    proc = subprocess.run([sys.executable, str(BENCH / "traffic.py"), "--smoke", "--models", "mlp", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [mlp] = json.loads(out.read_text())
    assert mlp["predicted_step_s"] > 0 and mlp["measured_step_s"] > 0 and len(mlp["runs"]) == 1
    measured = [p for p in mlp["plans"] if "measured_speedup" in p]
    assert measured, mlp["plans"]  # at least one traffic plan was verified end to end
    assert all(len(p["measured_speedup_pairs"]) == 1 for p in measured)


def test_replay_context_smoke():
    proc = subprocess.run([sys.executable, str(BENCH / "replay_context.py")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "addmm 64x256x256:" in proc.stdout and "gelu [8, 64, 512]:" in proc.stdout


def test_cuda_check_smoke(tmp_path):
    """The GPU check's pipeline on CPU at tiny sizes (gpt only: ~2.5 min here): profile,
    suggest, apply --verify against the independent measurement, one table."""
    proc = subprocess.run([sys.executable, str(BENCH / "cuda_check.py"), "--device", "cpu", "--smoke", "--models", "gpt",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["instrument"] == "torch.profiler memory timeline"
    assert abs(row["profile_error"]) <= 0.005 and abs(row["plan_error"]) <= 0.02
    assert "baseline peak" in (tmp_path / "table.txt").read_text()
