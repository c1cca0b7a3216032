"""``memadvise show``: print what a profile recorded (and draw it: --plot, --trace)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from memadvise.cli.app import app
from memadvise.cli.common import DEFAULT_DIR, err_console, out_console, print_json


@app.command("show", help="Show a profile: memory at peak by category, top units, timeline, environment.")
def show_command(
    profile_path: Path = typer.Option(DEFAULT_DIR / "profile.json", "--profile", "-p", help="Profile to read."),
    top: int = typer.Option(12, "--top", help="How many units to list."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the memory timeline as a PNG image (needs matplotlib)."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Also write the step as a Chrome trace JSON, for Perfetto."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the profile's tables (ops.csv, units.csv, categories.csv) into this folder."),
    traffic: bool = typer.Option(False, "--traffic", help="Show the roofline view instead: memory-bound share, top memory-bound op chains."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    from memadvise._errors import UsageError
    from memadvise.report.profile_report import render_show, show_document
    from memadvise.schema.profile import read_profile

    if top < 1:
        raise UsageError("--top must be at least 1")
    profile = read_profile(profile_path)
    if traffic:
        from memadvise.analysis.traffic import traffic_report
        from memadvise.report.traffic_report import render_traffic

        doc = traffic_report(profile, top=top)
        if as_json:
            print_json(doc)
        else:
            render_traffic(out_console(), doc)
        if plot is None and trace is None and csv is None:
            return
    written: dict[str, str | list[str]] = {}
    if plot is not None or trace is not None:
        if plot is not None:
            from memadvise.report.plot import _matplotlib

            _matplotlib()  # before any work: a missing matplotlib is one line, exit 2
        with err_console().status("show", spinner="dots") as status:
            if plot is not None:
                from memadvise.report.plot import timeline_png
                from memadvise.schema.io import atomic_write_bytes

                status.update(f"show: drawing {plot}")
                written["plot"] = str(atomic_write_bytes(plot, timeline_png(profile)))
            if trace is not None:
                from memadvise.report.perfetto import chrome_trace_json
                from memadvise.schema.io import atomic_write_text

                status.update(f"show: writing {trace}")
                written["trace"] = str(atomic_write_text(trace, chrome_trace_json(profile)))
    if csv is not None:
        from memadvise.report.tables import ProfileTables

        written["csv"] = [str(path) for path in ProfileTables(profile).to_csv(csv)]
    if as_json:
        doc = show_document(profile, top=top)
        if written:
            doc["written"] = written
        print_json(doc)
        return
    console = out_console()
    render_show(console, profile, top=top)
    if "plot" in written:
        console.print(f"timeline plot written to {written['plot']}")
    if "trace" in written:
        console.print(f"Chrome trace written to {written['trace']} (open it in ui.perfetto.dev)")
    if "csv" in written:
        console.print(f"tables written to {csv}: {', '.join(Path(p).name for p in written['csv'])}")
