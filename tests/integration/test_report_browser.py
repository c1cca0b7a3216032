"""The HTML report of the sample GPT in headless Chromium (Debian's ``chromium``): the
charts drew with the expected series, hovering shows exact figures, and the page makes
no network request."""

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import memadvise.cli.report  # noqa: F401  (registers the command when app.py does not yet)
from conftest import SMALL
from helpers import ROOT, cli

from memadvise.schema.trace import Trace
from memadvise.schema.categories import N_CATEGORIES, Category
from memadvise.schema.profile import read_profile

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # a request that slips through still resolves nowhere


def _install_chromium() -> str | None:
    """Debian's chromium, installed once with apt when we are root and it is missing."""
    found = shutil.which("chromium")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-qq", "chromium"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if cmd[1] == "install" and proc.returncode == 0:
            break
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium():
    path = _install_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed and could not be (the report's browser test needs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def run_chromium(chromium: str, tmp: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    profile_dir = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile_dir}", *args], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def dump_dom(chromium: str, tmp: Path, url: str, *extra: str) -> str:
    return run_chromium(chromium, tmp, "--virtual-time-budget=5000", *extra, "--dump-dom", url).stdout


class _Charts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.charts: dict[str, dict] = {}
        self.body: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self.charts[a["data-chart"]] = a
        if tag == "body":
            self.body = a


def parse(dom: str) -> _Charts:
    p = _Charts()
    p.feed(dom)
    return p


@pytest.fixture(scope="module")
def gpt_report(tmp_path_factory):
    """The small sample GPT: profiled in a subprocess, then suggest and report."""
    d = tmp_path_factory.mktemp("gpt-report")
    profile, plan, report = d / "profile.json", d / "plan.json", d / "report.html"
    proc = subprocess.run([sys.executable, "-m", "memadvise", "profile", str(ROOT / "sample_models" / "gpt.py"),
                           "--out", str(profile), "--", *SMALL["gpt"]], cwd=d, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for args in (["suggest", "--profile", profile, "--out", plan, "--json"],
                 ["report", "--profile", profile, "--plan", plan, "--out", report, "--json"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
    return d, read_profile(profile), json.loads(plan.read_text()), report


def test_charts_draw_with_the_expected_series(chromium, gpt_report, tmp_path):
    d, profile, plan, report = gpt_report
    page = parse(dump_dom(chromium, tmp_path, report.as_uri() + "#selftest"))
    assert page.body.get("data-ready") == "1" and "data-js-errors" not in page.body
    charts = page.charts
    assert set(charts) == {"timeline-base", "timeline-pred", "treemap", "pareto"}
    for name, attrs in charts.items():
        assert attrs["data-drawn"] == attrs["data-expected"], name  # every series has a non-empty box
    # counted from the profile: the GPT step holds all six CPU categories (untracked, bytes
    # the device allocator holds for no tensor, is CUDA's), plus the overlay line
    timeline = Trace(profile).baseline_timeline()
    present = timeline.by_category.max(axis=0) > 0
    categories = int(present.sum())
    assert categories == N_CATEGORIES - 1 and not present[Category.UNTRACKED]
    assert int(charts["timeline-base"]["data-expected"]) == categories + 1
    assert int(charts["timeline-pred"]["data-expected"]) >= categories + 1  # + recompute marks when it recomputes
    modules = [u for u in profile.units if u.get("in_root") and u["activation_bytes"] > 0]
    assert int(charts["treemap"]["data-expected"]) == len(modules)
    assert int(charts["pareto"]["data-expected"]) == 3 + (plan["recommendation"] is not None)

    # hovering the middle of the timeline shows that bucket's exact total
    n = len(timeline.clock)
    buckets = min(2000, n)
    k = buckets // 2
    lo, hi = -(-k * n // buckets), -(-(k + 1) * n // buckets)
    total = int(timeline.total[lo:hi].max())
    hover = charts["timeline-base"]["data-hover"]
    assert re.search(rf"^total\s+{total:,} B", hover, re.M), hover
    assert "activations" in hover and "predicted" in hover
    assert "activations" in charts["treemap"]["data-hover"] and " B (" in charts["treemap"]["data-hover"]


def requests_in_netlog(path: Path) -> list[str]:
    """URLs that a page (not the browser's own services) asked the network for."""
    log = json.loads(path.read_text())
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            from_page = p.get("initiator") != "not an origin" or "file://" in p.get("network_isolation_key", "")
            if from_page:
                urls.append(p["url"])
    return urls


def test_the_page_makes_no_network_request(chromium, gpt_report, tmp_path):
    _, _, _, report = gpt_report
    text = report.read_text().lower()
    for needle in ("http://", "https://", "<script src", "<link", "@import", "url(", "<img", "<iframe", "fetch("):
        assert needle not in text, needle
    # the same check on a page that does load something, to show it would be seen
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png"></body></html>')
    dump_dom(chromium, tmp_path, control.as_uri(), f"--log-net-log={tmp_path / 'control.netlog'}")
    assert requests_in_netlog(tmp_path / "control.netlog") == ["http://example.invalid/x.png"]
    dump_dom(chromium, tmp_path, report.as_uri(), f"--log-net-log={tmp_path / 'report.netlog'}")
    assert requests_in_netlog(tmp_path / "report.netlog") == []


def test_screenshot(chromium, gpt_report, tmp_path):
    _, _, _, report = gpt_report
    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path, "--window-size=1100,1400", f"--screenshot={shot}", report.as_uri())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    # not a blank page: the timeline's activation red is on it
    from matplotlib.image import imread

    img = (imread(str(shot))[:, :, :3] * 255).round().astype(int)
    assert (np.abs(img - np.array([0xE1, 0x57, 0x59])).sum(axis=2) <= 6).sum() > 10_000
