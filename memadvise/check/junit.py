"""JUnit XML for ``memadvise check --junit``: what GitLab, Jenkins and friends display.

One test suite, ``memadvise.check``, with one test case per gated check (``peak``,
``activation``, ``max_peak``); a failing case carries the one-line verdict as its
message. The figures of every row, gated or not, are suite properties.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from memadvise.check.gate import CheckResult, CheckRow
from memadvise.sizes import format_bytes, format_percent

SUITE = "memadvise.check"


def junit_xml(result: CheckResult, *, time_s: float = 0.0) -> str:
    """The JUnit XML document of ``result``; ``time_s`` is the check's duration in seconds."""
    gated = result.gated_rows
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root, "testsuite", name=SUITE, tests=str(len(gated)), failures=str(len(result.failures)),
        errors="0", skipped="0", time=f"{time_s:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="device", value=result.device_key)
    ET.SubElement(props, "property", name="verdict", value=result.verdict)
    for row in result.rows:
        key = row.metric if row.check != "category" else f"{row.metric}_at_peak"
        if row.check == "max_peak":
            key = "max_peak"
        ET.SubElement(props, "property", name=f"{key}.current", value=_number(row.current))
        if row.baseline is not None:
            ET.SubElement(props, "property", name=f"{key}.baseline", value=_number(row.baseline))
    for row in gated:
        case = ET.SubElement(
            suite, "testcase", classname=f"{SUITE}.{result.device_key}", name=row.test_name, time="0",
        )
        if row.status == "fail":
            failure = ET.SubElement(case, "failure", message=row.message, type="MemoryRegression")
            failure.text = _details(row)
        else:
            ET.SubElement(case, "system-out").text = row.message
    if result.warnings or result.notes:
        out = ET.SubElement(suite, "system-out")
        out.text = "\n".join([f"warning: {w}" for w in result.warnings] + [f"note: {n}" for n in result.notes])
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _details(row: CheckRow) -> str:
    lines = [row.message, f"current: {format_bytes(row.current)} ({int(row.current)} bytes)"]
    if row.baseline is not None:
        lines.append(f"baseline: {format_bytes(row.baseline)} ({int(row.baseline)} bytes)")
        lines.append(f"change: {format_percent(row.change)}")
    if row.limit is not None:
        lines.append(f"limit: {format_bytes(row.limit)} ({row.limit} bytes; {row.limit_text})")
    return "\n".join(lines)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
