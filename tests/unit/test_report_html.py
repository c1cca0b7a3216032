"""The HTML report on a hand-built chain whose memory follows closed formulas
(memadvise/testing/synthetic.py): what each chart draws, exactly; that the page is
self-contained; that long steps stay small with their peak intact."""

import html
import re

import numpy as np
import pytest

from memadvise.schema.trace import Trace
from memadvise.analysis.simulator import Simulator
from memadvise.schema.verify import VerifyResult, validate_verify
from memadvise.report.chart_data import (
    MAX_POINTS, ReportInputs, bucket_max, choose_plan, phase_spans, squarify,
)
from memadvise.report.html import render_report
from memadvise._errors import InputFileError
from memadvise.schema.actions import Action
from memadvise.schema.plan import FORMAT as PLAN_FORMAT, SCHEMA_VERSION as PLAN_VERSION, PlanEntry, PlanFile, Prediction
from memadvise.schema.profile import Profile
from memadvise.testing.synthetic import chain_peak_formula, chain_profile

N, A, B, S = 8, 4096, 1024, 4


def plan_file_for(profile: Profile, strategies: dict[str, set[int]], recommended: str) -> PlanFile:
    """A plan file as `suggest` writes it, for checkpointing the given blocks (simulated
    here: the solver's search is not what these tests are about)."""
    sim = Simulator(profile)
    base = sim.baseline()
    plans = []
    for name, blocks in strategies.items():
        actions = [Action(f"blocks.{i}", "checkpoint") for i in sorted(blocks)]
        r = sim.simulate(actions)
        plans.append({"rank": 0, "strategy": name, "actions": [a.to_json() for a in actions], "predicted": r.predicted()})
    points = [(p["predicted"]["peak_bytes"], p["predicted"]["step_time_s"]) for p in plans]
    for p, (peak, t) in zip(plans, points):
        p["pareto"] = not any(q <= peak and u <= t and (q, u) != (peak, t) for q, u in points)
    plans.sort(key=lambda p: (p["strategy"] != recommended, p["predicted"]["peak_bytes"]))
    for i, p in enumerate(plans, start=1):
        p["rank"] = i
    doc = {
        "format": PLAN_FORMAT, "schema_version": PLAN_VERSION,
        "profile": {"path": "profile.json", "created_at": profile.doc["created_at"]},
        "script": dict(profile.script),
        "baseline": {"peak_bytes": base.peak_bytes, "activation_bytes": base.activation_bytes,
                     "step_time_s": sim.base_step_s},
        "recommendation": {"rank": 1, "strategy": recommended, "reason": "test"},
        "plans": plans,
    }
    return PlanFile.from_doc(doc, "plan.json")


@pytest.fixture(scope="module")
def chain():
    profile = Profile(chain_profile(N, A, B, S, checkpoint_call_ms=0.05))
    strategies = {"full": set(range(N)), "every-2": set(range(0, N, 2)), "every-3": set(range(0, N, 3)),
                  "last": {N - 1}, "first-half": set(range(N // 2))}
    return profile, plan_file_for(profile, strategies, recommended="every-2")


def charts(page: str) -> dict[str, str]:
    """Chart name → its SVG element's text."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg class="chart" data-chart="([a-z-]+)".*?</svg>', page, re.S)}


def expected(svg: str) -> int:
    return int(re.search(r'data-expected="(\d+)"', svg).group(1))


def series(svg: str) -> list[str]:
    return re.findall(r'data-series="([a-z_-]+)"', svg)


def test_bucket_max_keeps_each_buckets_largest_row():
    totals = [1, 5, 2, 2, 9, 3, 0, 7, 7, 1]
    rows = np.zeros((10, 6), dtype=np.int64)
    rows[:, 3] = totals
    b = bucket_max(np.arange(10.0), rows, 10, 5)
    assert b.total.tolist() == [5, 2, 9, 7, 7]
    assert b.at.tolist() == [1, 2, 4, 7, 8]  # ties: the earliest op
    assert bucket_max(np.arange(10.0), rows, 10, 100).total.tolist() == totals  # never more buckets than ops


def test_recomputed_ops_fall_in_the_bucket_of_the_op_they_follow():
    rows = np.ones((5, 6), dtype=np.int64)
    rows[3] = 10
    rc = np.array([False, False, False, True, False])
    b = bucket_max(np.array([0.0, 1.0, 2.0, 2.5, 3.0]), rows, 4, 4, recompute=rc)
    assert b.total.tolist() == [6, 6, 60, 6] and b.recompute.tolist() == [False, False, True, False]


def test_phase_spans():
    assert phase_spans(np.array([0, 0, 1, 1, 1, 0, 2])) == [(0, 0, 2), (1, 2, 5), (0, 5, 6), (2, 6, 7)]
    assert phase_spans(np.array([])) == []


def test_squarify_areas_are_proportional_and_tile_the_rectangle():
    values = [6, 6, 4, 3, 2, 2, 1]
    rects = squarify(values, 10, 20, 600, 400)
    areas = [w * h for _, _, w, h in rects]
    for v, a in zip(values, areas):
        assert a == pytest.approx(600 * 400 * v / sum(values))
    for x, y, w, h in rects:
        assert 10 - 1e-9 <= x and x + w <= 610 + 1e-9 and 20 - 1e-9 <= y and y + h <= 420 + 1e-9
    # no two rectangles overlap
    for i, (x1, y1, w1, h1) in enumerate(rects):
        for x2, y2, w2, h2 in rects[i + 1:]:
            assert min(x1 + w1, x2 + w2) - max(x1, x2) <= 1e-9 or min(y1 + h1, y2 + h2) - max(y1, y2) <= 1e-9


def test_timelines_draw_every_category_and_the_plan_overlay(chain):
    profile, plan_file = chain
    plan = choose_plan(plan_file, None, "full")
    page = render_report(ReportInputs(profile, plan_file, plan))
    c = charts(page)
    # the chain holds input, activations and temporaries; plus the other timeline's total
    assert series(c["timeline-base"]) == ["activation", "temporary", "input", "predicted-total"]
    assert series(c["timeline-pred"]) == ["activation", "temporary", "input", "recorded-total", "recompute"]
    assert expected(c["timeline-base"]) == 4 and expected(c["timeline-pred"]) == 5
    assert f"peak {html.escape('45.0 KiB')}" in c["timeline-base"]  # (N+1)(A+B)+S = 46084 B
    full = chain_peak_formula(N, A, B, S, set(range(N)))
    assert "peak 17.0 KiB" in c["timeline-pred"] and full == 17412


def test_timeline_data_is_exact_and_aligned(chain):
    import json

    profile, plan_file = chain
    plan = choose_plan(plan_file, None, "full")
    page = render_report(ReportInputs(profile, plan_file, plan))
    data = json.loads(re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>', page).group(1))
    n_ops = len(Trace(profile).op_clock)
    assert data["n"] == n_ops == data["buckets"] == len(data["base"]) == len(data["pred"])  # short: one op a bucket
    assert max(sum(r) for r in data["base"]) == (N + 1) * (A + B) + S
    assert max(sum(r) for r in data["pred"]) == chain_peak_formula(N, A, B, S, set(range(N)))
    # recomputation happens in backward, after the forward's ops
    first_rc = data["rc"].index(1)
    assert all(p == "forward" for p in data["phase"][:first_rc - 1]) and data["phase"][first_rc] == "backward"
    assert data["names"][data["op"][0]] == "addmm" and data["names"][data["mod"][0]] == "blocks.0"


def test_treemap_sizes_modules_by_activation_bytes(chain):
    profile, plan_file = chain
    page = render_report(ReportInputs(profile, plan_file, choose_plan(plan_file, None, None)))
    svg = charts(page)["treemap"]
    rects = re.findall(r'<rect data-series="module" data-tip="([^"]*)" x="[^"]*" y="[^"]*" width="([^"]*)" height="([^"]*)"', svg)
    assert len(rects) == expected(svg) == N + 1  # the chain and its 8 blocks
    area = {html.unescape(tip).split(" ")[0]: float(w) * float(h) for tip, w, h in rects}
    # block 0 holds A (its input is the batch), the others A + B (their input too)
    assert area["blocks.0"] / area["blocks.1"] == pytest.approx(A / (A + B), rel=0.02)
    assert all(area[f"blocks.{i}"] == pytest.approx(area["blocks.1"], rel=0.02) for i in range(2, N))
    assert "activations 4,096 B (4.0 KiB)" in html.unescape(svg)


def test_pareto_chart_marks_the_recommended_plan(chain):
    profile, plan_file = chain
    rec = plan_file.doc["recommendation"]
    page = render_report(ReportInputs(profile, plan_file, choose_plan(plan_file, None, "every-3")))
    svg = charts(page)["pareto"]
    assert series(svg) == ["front", "plans", "baseline", "recommended", "chosen"]
    assert svg.count('<circle class="dot') == len(plan_file.plans)
    assert f"#{rec['rank']} {rec['strategy']} (recommended)" in svg
    assert "every-3 (shown above)" in svg


def test_default_plan_is_the_recommendation(chain):
    _, plan_file = chain
    assert choose_plan(plan_file, None, None).rank == plan_file.doc["recommendation"]["rank"]
    assert choose_plan(plan_file, None, None).strategy == "every-2"
    assert choose_plan(plan_file, 3, None).rank == 3


def test_without_a_plan_there_is_no_overlay_and_no_pareto(chain):
    profile, _ = chain
    c = charts(render_report(ReportInputs(profile)))
    assert set(c) == {"timeline-base", "treemap"}
    assert series(c["timeline-base"]) == ["activation", "temporary", "input"]


VERIFY = {
    "plan": {"rank": 2, "strategy": "full"},
    "rows": {
        "peak_bytes": {"predicted": 17412, "measured": 17500, "baseline_measured": 46084, "error": 88 / 17500},
        "activation_bytes": {"predicted": 4096, "measured": 4096, "baseline_measured": 39936, "error": 0.0},
        "overhead": {"predicted": 0.3, "measured": 0.25, "error": 0.05},
    },
    "baseline_step_time_s": 0.002,
    "patched_step_time_s": 0.0025,
    "tolerance": 0.05,
    "passed": True,
}


def test_verify_section_puts_predicted_and_measured_side_by_side(chain):
    profile, plan_file = chain
    page = render_report(ReportInputs(profile, plan_file, choose_plan(plan_file, None, "full"), verify=VerifyResult.from_json(VERIFY)))
    svg = charts(page)["verify"]
    assert series(svg) == ["baseline", "predicted", "measured"] and expected(svg) == 3
    text = html.unescape(svg)
    assert "peak, predicted with the plan\n17,412 B (17.0 KiB)" in text
    assert "peak, measured with the plan\n17,500 B (17.1 KiB)" in text
    assert "error 0.50%" in text
    assert "step time, measured with the plan\n2.5 ms" in text


def test_verify_section_shows_the_median_of_the_pairs(chain):
    # the first pair measured +60%; the median of three is +10%, and the pairs take both signs
    profile, plan_file = chain
    over = {"predicted": 0.3, "measured": 0.1, "error": 0.2, "measured_pairs": [0.6, 0.1, -0.05],
            "pairs_range": [-0.05, 0.6], "resolved": False}
    verify = {**VERIFY, "rows": {**VERIFY["rows"], "overhead": over}, "patched_step_time_s": 0.0032}
    page = render_report(ReportInputs(profile, plan_file, choose_plan(plan_file, None, "full"), verify=VerifyResult.from_json(verify)))
    assert "step time, measured with the plan\n2.2 ms" in html.unescape(charts(page)["verify"])
    section = html.unescape(page[page.index('<section id="verify">'):])
    assert "median of 3 alternating original/patched pairs (-5.0% to +60.0%)" in section
    assert "took both signs" in section


def test_verify_file_is_validated():
    assert validate_verify({"verify": VERIFY, "plan": {}}, "v.json") is VERIFY
    assert validate_verify(VERIFY, "v.json") is VERIFY
    for bad in ({"verify": None}, {"rows": {}}, [], {"verify": {"rows": {"peak_bytes": {}}}}):
        with pytest.raises(InputFileError, match="holds no verify result"):
            validate_verify(bad, "v.json")


def test_page_loads_nothing_from_anywhere(chain):
    profile, plan_file = chain
    page = render_report(ReportInputs(profile, plan_file, choose_plan(plan_file, None, None), verify=VerifyResult.from_json(VERIFY)))
    lowered = page.lower()
    for needle in ("http://", "https://", "//cdn", "<script src", "<link", "@import", "url(", "<img", "<iframe",
                   "fetch(", "xmlhttprequest", "websocket", "eventsource", "sendbeacon"):
        assert needle not in lowered, needle
    assert "default-src 'none'" in page  # and the page forbids itself any load


def test_text_from_the_profile_is_escaped():
    doc = chain_profile(2, A, B, S)
    doc["script"]["path"] = "/x/</script><script>alert(1)</script>.py"
    doc["script"]["args"] = ['"><img src=x onerror=alert(2)>']
    doc["trace"]["strings"][0] = "</script><b>op"  # an op name, in the timeline's JSON
    page = render_report(ReportInputs(Profile(doc)))
    assert "<script>alert" not in page and "<img" not in page and "</script><b>" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page


def test_a_50000_op_step_makes_a_small_report_with_its_peak():
    import json

    from memadvise.analysis.simulator import Simulator
    from memadvise.schema.actions import Action

    n = 12_500  # 4 ops a block: 50,002 ops
    profile = Profile(chain_profile(n, [65536 + 64 * (i % 7) for i in range(n)], 16384))
    actions = [Action(f"blocks.{i}", "checkpoint") for i in range(0, n, 50)]
    sim = Simulator(profile)
    pred = sim.simulate(actions)
    plan = PlanEntry(rank=1, strategy="every-50", actions=tuple(actions), pareto=True,
                     predicted=Prediction.from_json(pred.predicted()))
    page = render_report(ReportInputs(profile, None, plan))
    assert len(page.encode()) < 2_000_000
    data = json.loads(re.search(r'id="timeline-data">(.*?)</script>', page).group(1))
    assert data["buckets"] == MAX_POINTS and data["n"] == 50_002
    assert max(sum(r) for r in data["base"]) == sim.baseline().peak_bytes
    assert max(sum(r) for r in data["pred"]) == pred.peak_bytes
