"""The check verdict, the baseline file and the check's views, on hand-made records."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from memadvise._errors import InputFileError, UsageError
from memadvise.check.gate import Limits, baseline_changes, compare, limit_failure
from memadvise.check.junit import junit_xml
from memadvise.check.pytest_plugin import MarkerLimits, marker_failures, parse_marker
from memadvise.check.run import CheckContext
from memadvise.report.check_report import check_document, markdown_summary, render_check
from memadvise.schema.baseline import (
    Baseline, BaselineEntry, device_key, read_baseline, read_baseline_for_update, write_baseline,
)

MiB = 2**20
ENV = {"torch": "2.13.0", "python": "3.11.7", "device_type": "cpu", "device_name": "x86_64", "dtype": "float32"}
SCRIPT = {"path": "sample_models/mlp.py", "args": ["--depth", "2"]}


def entry(peak: int = 296 * MiB, activation: int = 100 * MiB, **kw) -> BaselineEntry:
    by_category = kw.pop("by_category_at_peak", {"parameter": 96 * MiB, "activation": 100 * MiB, "temporary": 100 * MiB})
    return BaselineEntry(
        peak_bytes=peak, activation_bytes=activation, by_category_at_peak=by_category,
        step_time_s=kw.pop("step_time_s", 0.05), environment=kw.pop("environment", dict(ENV)),
        script=kw.pop("script", dict(SCRIPT)), updated_at="2025-01-01T00:00:00+00:00", **kw,
    )


def limits(**kw) -> Limits:
    return Limits.parse(**kw)


# ---------------------------------------------------------------- verdict


def test_regression_verdict_is_one_line_with_figures():
    # 312.4 MiB over 296.0 MiB is +5.54%: the example of the issue
    result = compare(entry(peak=int(312.4 * MiB)), entry(), limits(tolerance="5%"))
    assert not result.passed
    assert result.verdict == "peak 312.4 MiB exceeds baseline 296.0 MiB by 5.5% (tolerance 5%)"
    assert [r.status for r in result.gated_rows] == ["fail", "pass"]
    assert [(r.metric, r.check) for r in result.gated_rows] == [("peak", "baseline"), ("activation", "baseline")]


def test_exactly_at_tolerance_passes_and_one_byte_more_fails():
    base = entry(peak=1000, activation=1000)
    assert compare(entry(peak=1050, activation=1000), base, limits(tolerance="5%")).passed
    failed = compare(entry(peak=1051, activation=1000), base, limits(tolerance="5%"))
    assert not failed.passed and failed.gated_rows[0].limit == 1050


def test_zero_tolerance_means_identical():
    base = entry(peak=1000, activation=500)
    assert compare(entry(peak=1000, activation=500), base, limits(tolerance="0%")).passed
    assert not compare(entry(peak=1000, activation=501), base, limits(tolerance="0")).passed


def test_pass_verdict_names_the_gated_figures():
    result = compare(entry(peak=300 * MiB), entry(), limits(tolerance="5%"))
    assert result.passed
    assert result.verdict == "peak 300.0 MiB (+1.4%), activation 100.0 MiB (+0.0%) within 5% of baseline"


def test_all_failures_are_in_the_verdict():
    result = compare(entry(peak=400 * MiB, activation=200 * MiB), entry(), limits(tolerance="5%"))
    assert result.verdict == (
        "peak 400.0 MiB exceeds baseline 296.0 MiB by 35.1% (tolerance 5%); "
        "activation 200.0 MiB exceeds baseline 100.0 MiB by 100.0% (tolerance 5%)"
    )


@pytest.mark.parametrize("metric, gated", [("peak", ["peak"]), ("activation", ["activation"]),
                                           ("all", ["peak", "activation"])])
def test_metric_selects_what_is_gated(metric, gated):
    result = compare(entry(peak=400 * MiB, activation=200 * MiB), entry(), limits(metric=metric))
    assert [r.metric for r in result.gated_rows] == gated
    assert not result.passed
    reported = {r.metric for r in result.rows if r.check == "info"}
    assert reported == {"peak", "activation", "step_time"} - set(gated)


def test_max_peak_needs_no_baseline():
    ok = compare(entry(peak=290 * MiB), None, limits(max_peak="300MiB"))
    assert ok.passed and ok.verdict == "peak 290.0 MiB within --max-peak 300MiB"
    assert [(r.metric, r.check) for r in ok.gated_rows] == [("peak", "max_peak")]
    bad = compare(entry(peak=int(312.4 * MiB)), None, limits(max_peak="300MB"))
    assert not bad.passed
    # 300 MB = 286.1 MiB: the limit is shown in the tool's unit and as written
    assert bad.verdict == "peak 312.4 MiB exceeds --max-peak 286.1 MiB (300MB)"
    assert not any(r.metric == "peak" and r.check == "info" for r in bad.rows)  # shown once


def test_max_peak_and_baseline_are_both_gated():
    result = compare(entry(peak=300 * MiB), entry(), limits(max_peak="298MiB"))
    assert [r.test_name for r in result.gated_rows] == ["peak", "max_peak", "activation"]
    assert [r.status for r in result.gated_rows] == ["pass", "fail", "pass"]
    assert result.verdict == "peak 300.0 MiB exceeds --max-peak 298.0 MiB"


def test_categories_and_step_time_are_reported_never_gated():
    current = entry(step_time_s=10.0, by_category_at_peak={"parameter": 500 * MiB, "input": MiB})
    result = compare(current, entry(), limits())
    assert result.passed
    categories = {r.metric: r for r in result.rows if r.check == "category"}
    assert set(categories) == {"parameter", "input", "activation", "temporary"}
    assert categories["activation"].current == 0 and categories["activation"].baseline == 100 * MiB
    assert categories["input"].baseline is None and categories["input"].change is None
    step = next(r for r in result.rows if r.metric == "step_time")
    assert step.status == "info" and step.unit == "s" and step.change == pytest.approx(199.0)


def test_zero_baseline_has_no_change_but_still_gates():
    result = compare(entry(activation=1), entry(activation=0), limits())
    row = next(r for r in result.rows if r.metric == "activation")
    assert row.change is None and row.status == "fail"
    assert result.verdict == "activation 1 B exceeds baseline 0 B (tolerance 5%)"


def test_drop_below_tolerance_suggests_update():
    result = compare(entry(peak=200 * MiB), entry(), limits())
    assert result.passed
    assert result.notes == ["peak dropped 32.4% below the baseline; run with --update-baseline to lock in the improvement"]


def test_update_mode_reports_without_gating():
    result = compare(entry(peak=400 * MiB), entry(), limits(), gate_baseline=False)
    assert result.passed and result.gated_rows == []
    assert next(r for r in result.rows if r.metric == "peak").change == pytest.approx(104 / 296)


def test_environment_warnings():
    other = dict(ENV, torch="2.4.0", device_name="arm64", dtype="bfloat16")
    current = entry(script={"path": "train.py", "args": []})
    warnings = compare(current, entry(environment=other), limits()).warnings
    assert warnings == [
        "baseline was taken on cpu (arm64), this run is on cpu (x86_64)",
        "baseline was taken with torch 2.4.0, this run uses torch 2.13.0; allocations may differ between versions",
        "model dtype changed from bfloat16 to float32",
        "baseline was taken on `sample_models/mlp.py --depth 2`, this run is `train.py`",
    ]
    assert compare(entry(), entry(), limits()).warnings == []


def test_baseline_changes():
    assert baseline_changes(None, entry()) == ["new entry: peak 296.0 MiB, activation 100.0 MiB"]
    new = entry(peak=300 * MiB, environment=dict(ENV, torch="2.14.0"))
    assert baseline_changes(entry(), new) == ["peak 296.0 MiB → 300.0 MiB (+1.4%)", "torch 2.13.0 → 2.14.0"]
    assert baseline_changes(entry(), entry()) == []


def test_limit_failure_shows_the_written_limit_only_when_it_reads_differently():
    assert limit_failure("peak", 10, "max_peak", 10, "10") is None
    assert limit_failure("peak", int(312.4 * MiB), "max_peak", 300 * MiB, "300MiB") == \
        "peak 312.4 MiB exceeds max_peak 300.0 MiB"
    assert limit_failure("peak", int(312.4 * MiB), "max_peak", 300_000_000, "300MB") == \
        "peak 312.4 MiB exceeds max_peak 286.1 MiB (300MB)"


@pytest.mark.parametrize(
    "kw, message",
    [({"tolerance": "five"}, "--tolerance 'five' is not a percentage"),
     ({"tolerance": "-5%"}, "--tolerance '-5%' must be a positive percentage"),
     ({"max_peak": "300 parsecs"}, "--max-peak '300 parsecs' has an unknown unit"),
     ({"max_peak": "0"}, "--max-peak '0' must be larger than zero"),
     ({"metric": "time"}, "--metric 'time' is not one of peak, activation, all")],
)
def test_malformed_limits_are_one_line_usage_errors(kw, message):
    with pytest.raises(UsageError) as err:
        Limits.parse(**kw)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_tolerance_spellings():
    assert Limits.parse(tolerance="2.5").tolerance == pytest.approx(0.025)
    assert Limits.parse(tolerance="2.5").tolerance_text == "2.5%"
    assert Limits.parse(tolerance="1%").tolerance == pytest.approx(0.01)


# ---------------------------------------------------------------- baseline file

GOLDEN_V1 = """\
{
  "entries": {
    "cpu": {
      "activation_bytes": 104857600,
      "by_category_at_peak": {
        "activation": 104857600,
        "parameter": 100663296,
        "temporary": 104857600
      },
      "environment": {
        "device_name": "x86_64",
        "device_type": "cpu",
        "dtype": "float32",
        "python": "3.11.7",
        "torch": "2.13.0"
      },
      "peak_bytes": 310378496,
      "script": {
        "args": [
          "--depth",
          "2"
        ],
        "path": "sample_models/mlp.py"
      },
      "step_time_s": 0.05,
      "updated_at": "2025-01-01T00:00:00+00:00"
    }
  },
  "format": "memadvise-baseline",
  "schema_version": 1
}
"""


def test_baseline_file_golden_v1(tmp_path):
    """The committed format: bump SCHEMA_VERSION when this text has to change."""
    path = write_baseline(Baseline(entries={"cpu": entry()}), tmp_path / "memadvise-baseline.json")
    assert path.read_text() == GOLDEN_V1
    loaded = read_baseline(path)
    assert loaded.entries == {"cpu": entry()}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_one_file_holds_an_entry_per_device(tmp_path):
    gpu = entry(peak=1000, environment=dict(ENV, device_type="cuda", device_name="NVIDIA H100 80GB HBM3"))
    assert gpu.device_key == "cuda:NVIDIA H100 80GB HBM3"
    path = tmp_path / "b.json"
    write_baseline(Baseline(entries={"cpu": entry()}).with_entry(gpu.device_key, gpu), path)
    assert set(read_baseline(path).entries) == {"cpu", "cuda:NVIDIA H100 80GB HBM3"}


def test_device_key():
    assert device_key("cpu", "x86_64") == "cpu"
    assert device_key("cuda", "NVIDIA A10G") == "cuda:NVIDIA A10G"
    assert device_key("cuda", None) == "cuda"
    assert device_key(None, None) == "cpu"


def _write(tmp_path, text: str):
    path = tmp_path / "memadvise-baseline.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [(None, "does not exist; create it with `memadvise check SCRIPT --update-baseline`"),
     ("{not json", "is corrupt (invalid JSON at line 1); re-create it with `memadvise check SCRIPT --update-baseline`"),
     ('{"format": "memadvise-baseline", "schema_version": 1, "entries": {"cpu": {"peak_bytes": "big"}}}',
      "is corrupt (entry 'cpu' has no valid peak_bytes); re-create it with"),
     ('{"format": "memadvise-baseline", "schema_version": 1}', "is corrupt (no entries)"),
     ('{"format": "memadvise-baseline", "schema_version": 2, "entries": {}}',
      "has schema version 2, newer than this memadvise understands (1); upgrade memadvise"),
     ('{"format": "memadvise-profile", "schema_version": 1}', "is not a memadvise baseline file")],
)
def test_unreadable_baselines_are_refused_in_one_sentence(tmp_path, text, message):
    path = tmp_path / "memadvise-baseline.json" if text is None else _write(tmp_path, text)
    with pytest.raises(InputFileError) as err:
        read_baseline(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_update_replaces_a_corrupt_baseline_but_not_a_newer_one(tmp_path):
    baseline, warning = read_baseline_for_update(tmp_path / "missing.json")
    assert baseline.entries == {} and warning is None
    baseline, warning = read_baseline_for_update(_write(tmp_path, "{not json"))
    assert baseline.entries == {} and warning.startswith("replacing an unreadable baseline: ")
    with pytest.raises(InputFileError, match="upgrade memadvise"):
        read_baseline_for_update(_write(tmp_path, '{"format": "memadvise-baseline", "schema_version": 9}'))


# ---------------------------------------------------------------- views


def _failing():
    return compare(entry(peak=int(312.4 * MiB)), entry(), limits(max_peak="1GiB"))


def test_terminal_view_puts_the_verdict_first_and_fits_80_columns():
    buf = io.StringIO()
    console = Console(file=buf, width=80, highlight=False, color_system=None)
    render_check(console, _failing(), CheckContext(baseline_path="memadvise-baseline.json",
                                                   update_command="memadvise check t.py --update-baseline"))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "FAIL peak 312.4 MiB exceeds baseline 296.0 MiB by 5.5% (tolerance 5%)"
    assert lines[1].split() == ["metric", "baseline", "current", "change", "limit", "status"]
    assert lines[2].split() == ["peak", "296.0", "MiB", "312.4", "MiB", "+5.5%", "310.8", "MiB", "(+5%)", "fail"]
    assert lines[3].split() == ["peak", "(--max-peak)", "-", "312.4", "MiB", "-", "1.0", "GiB", "pass"]
    assert all(len(line) <= 80 for line in lines[1:-1])
    assert lines[-1] == "if the growth is intended, record it: memadvise check t.py --update-baseline"


def test_json_document():
    doc = check_document(_failing(), CheckContext(baseline_path="b.json", profile_path="p.json"))
    json.dumps(doc)
    assert doc["passed"] is False and doc["verdict"].startswith("peak 312.4 MiB exceeds")
    assert doc["rows"][0] == {
        "metric": "peak", "check": "baseline", "unit": "bytes", "baseline": 296 * MiB,
        "current": int(312.4 * MiB), "change": pytest.approx(0.0554, abs=1e-4), "limit": int(296 * MiB * 1.05),
        "limit_text": "+5%", "status": "fail", "message": doc["verdict"],
    }
    assert doc["warnings"] == [] and doc["baseline"] == "b.json" and "baseline_updated" not in doc


def test_junit_has_a_case_per_gated_check():
    root = ET.fromstring(junit_xml(_failing(), time_s=1.5))
    suite = root.find("testsuite")
    assert suite.get("name") == "memadvise.check"
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("3", "1", "1.500")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["peak", "max_peak", "activation"]
    failure = cases["peak"].find("failure")
    assert failure.get("message") == "peak 312.4 MiB exceeds baseline 296.0 MiB by 5.5% (tolerance 5%)"
    assert cases["max_peak"].find("failure") is None
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["peak.baseline"] == str(296 * MiB) and props["device"] == "cpu"


def test_markdown_summary():
    text = markdown_summary(_failing(), CheckContext(baseline_path="memadvise-baseline.json"))
    assert text.startswith("### memadvise check: ❌ FAIL\n\n**peak 312.4 MiB exceeds baseline")
    assert "| metric | baseline | current | change | limit | status |" in text
    assert "| peak | 296.0 MiB | 312.4 MiB | +5.5% | 310.8 MiB (+5%) | ❌ fail |" in text
    assert "| parameter (at peak) |" in text


# ---------------------------------------------------------------- pytest marker arguments


def test_marker_arguments():
    parsed = parse_marker((), {"max_peak": "300MB", "max_activation": "1GiB"})
    assert parsed == MarkerLimits(300_000_000, "300MB", 2**30, "1GiB", None)
    assert marker_failures(parsed, 300_000_000, 2**30) == []
    assert marker_failures(parsed, int(312.4 * MiB), 2**30 + 100 * MiB) == [
        "peak 312.4 MiB exceeds max_peak 286.1 MiB (300MB)",
        "activation 1.1 GiB exceeds max_activation 1.0 GiB",
    ]


@pytest.mark.parametrize(
    "args, kwargs, message",
    [((), {"max_peek": "1GB"}, "unknown memadvise marker argument max_peek; use max_peak, max_activation or device"),
     (("1GB",), {}, "keyword arguments only"),
     ((), {}, "needs max_peak= or max_activation="),
     ((), {"max_peak": "lots"}, "max_peak 'lots' is not a size")],
)
def test_bad_marker_arguments(args, kwargs, message):
    with pytest.raises(UsageError, match=message):
        parse_marker(args, kwargs)
