"""Write BENCHMARKS.md from benchmarks/results/*.json (see compare.py)."""

from __future__ import annotations

import json
from pathlib import Path


def _mib(b) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def headline(rows: list[dict], max_overhead: float = 0.10) -> dict:
    """Largest measured activation reduction by memadvise at ≤ max_overhead measured step
    time, and the best alternative at equal or lower measured peak. When no memadvise plan
    is that cheap: its cheapest measured plan that saves anything (``cheapest``), and the
    alternative that saves the most activation memory within max_overhead (``alternative``)."""
    def ran(r):
        return r.get("time_ratio") is not None and r.get("activation_ratio") is not None and r.get("peak_bytes")

    mine = [r for r in rows if r.get("kind", "").startswith("memadvise") and ran(r)]
    alts = [r for r in rows if r.get("kind") == "alternative" and ran(r)]
    ok = [r for r in mine if r["time_ratio"] - 1 <= max_overhead]
    best = min(ok, key=lambda r: r["activation_ratio"], default=None)
    out = {"memadvise": best, "cheapest": None, "alternative": None}
    if best is not None:
        same_peak = [r for r in alts if r["peak_bytes"] <= best["peak_bytes"]]
        out["alternative"] = min(same_peak, key=lambda r: r["time_ratio"], default=None)
    else:
        saving = [r for r in mine if r["activation_ratio"] < 0.999]
        out["cheapest"] = min(saving, key=lambda r: r["time_ratio"], default=None)
        cheap_alts = [r for r in alts if r["time_ratio"] - 1 <= max_overhead]
        out["alternative"] = min(cheap_alts, key=lambda r: r["activation_ratio"], default=None)
    return out


def headline_text(rows: list[dict], max_overhead: float = 0.10) -> str:
    h = headline(rows, max_overhead)
    limit = f"≤ {max_overhead:.0%} measured overhead"
    m, a = h["memadvise"], h["alternative"]
    if m is not None:
        text = (f"memadvise's best plan at {limit} ({m['variant']}) cuts activation memory by "
                f"{(1 - m['activation_ratio']) * 100:.0f}% (peak {_pct(m['peak_ratio'] - 1)}, step time "
                f"{_pct(m['time_ratio'] - 1)}).")
        return text + (f" The fastest alternative at the same or lower peak: {a['variant']}, step time "
                       f"{_pct(a['time_ratio'] - 1)}." if a else " No alternative reaches that peak.")
    text = f"No memadvise plan ran at {limit} here."
    c = h["cheapest"]
    if c is not None:
        text += (f" Its cheapest plan that saves memory ({c['variant']}) cuts activation memory by "
                 f"{(1 - c['activation_ratio']) * 100:.0f}% (peak {_pct(c['peak_ratio'] - 1)}) at "
                 f"{_pct(c['time_ratio'] - 1)} step time.")
    if a is not None:
        text += (f" Best alternative at {limit}: {a['variant']}, activation memory "
                 f"{_pct(a['activation_ratio'] - 1)}, peak {_pct(a['peak_ratio'] - 1)}, step time "
                 f"{_pct(a['time_ratio'] - 1)}.")
    return text


EAGER_ALTERNATIVES = ("checkpoint every block", "checkpoint every 2nd block", "selective: save matmuls",
                      "selective: save linear")
PEAK_SLACK = 0.002  # "equal peak": within 0.2% (a plan and an alternative with the same actions differ by bytes)


def equal_peak(rows: list[dict]) -> list[tuple[dict, dict | None]]:
    """Each eager alternative that ran, with memadvise's fastest measured plan at the same
    or a lower measured peak (None where no plan of this run reaches that peak)."""
    mine = [r for r in rows if r.get("kind", "").startswith("memadvise") and r.get("time_ratio") is not None
            and r.get("peak_bytes")]
    out = []
    for alt in rows:
        if alt.get("variant") not in EAGER_ALTERNATIVES or alt.get("time_ratio") is None:
            continue
        fits = [r for r in mine if r["peak_bytes"] <= alt["peak_bytes"] * (1 + PEAK_SLACK)]
        out.append((alt, min(fits, key=lambda r: r["time_ratio"], default=None)))
    return out


SAME_PLAN = {"checkpoint every block": "(full)", "checkpoint every 2nd block": "(every-2)",
             "selective: save matmuls": "(selective)", "selective: save linear": "(selective-linear)"}


def _spread(r: dict) -> str:
    pairs = r.get("time_ratio_pairs") or []
    return f"{_pct(min(pairs) - 1)}..{_pct(max(pairs) - 1)}" if pairs else "one run"


def _why_slower(alt: dict, m: dict) -> str:
    """Why memadvise's plan measured slower than an alternative at the same peak, in words."""
    if not m.get("time_ratio_pairs") or not alt.get("time_ratio_pairs"):
        return "one run each, so the run-to-run noise is not measured"
    pairs = f"pairs {_spread(m)} against {_spread(alt)}"
    if m["variant"].endswith(SAME_PLAN[alt["variant"]]):
        return f"the same strategy as the alternative, at the same measured peak: run-to-run noise, {pairs}"
    overlap = (m.get("time_ratio_pairs") and alt.get("time_ratio_pairs")
               and min(m["time_ratio_pairs"]) <= max(alt["time_ratio_pairs"]))
    return f"{pairs}; {'within' if overlap else 'beyond'} the run's noise"


def equal_peak_lines(rows: list[dict]) -> list[str]:
    pairs = equal_peak(rows)
    if not pairs:
        return []
    lines = ["**At equal or lower measured peak** (memadvise's fastest plan at each eager alternative's peak, "
             f"within {PEAK_SLACK:.1%}; step time: median of alternating pairs):", "",
             "| eager alternative | its peak / step time | memadvise's plan | its peak / step time | memadvise |",
             "|---|---|---|---|---|"]
    for alt, m in pairs:
        if m is None:
            lines.append(f"| {alt['variant']} | {_pct(alt['peak_ratio'] - 1)} / {_pct(alt['time_ratio'] - 1)} | "
                         "none reaches that peak | | loses |")
            continue
        verdict = "faster" if m["time_ratio"] < alt["time_ratio"] else ("equal" if m["time_ratio"] == alt["time_ratio"]
                                                                         else "slower")
        if verdict == "slower":
            verdict += f" ({_why_slower(alt, m)})"
        lines.append(f"| {alt['variant']} | {_pct(alt['peak_ratio'] - 1)} / {_pct(alt['time_ratio'] - 1)} | "
                     f"{m['variant']} | {_pct(m['peak_ratio'] - 1)} / {_pct(m['time_ratio'] - 1)} | {verdict} |")
    return lines + [""]


def write_markdown(results: Path, out: Path) -> None:
    lines = [
        "# Benchmarks: memadvise against the alternatives",
        "",
        "Produced by `python benchmarks/compare.py` (one process per model and size, 2-core CPU,",
        "no GPU). Peak and activation memory are measured independently of memadvise, by",
        "PyTorch's profiler memory timeline of one steady-state step (`tests/oracle.py`);",
        "step time: the median, over alternating (baseline, variant) pairs run in the same",
        "process (`--pairs`, default 3), of the variant's median step over the baseline's timed",
        "right before it (`time_ratio_first_last` in the CSV: against the first and last baseline",
        "runs, averaged). Prediction error is |predicted − measured| / measured. Raw numbers:",
        "`benchmarks/results/*.csv`.",
        "",
        "The GPT, ResNet and Llama sections are the run of 2026-12-05 (plan schema v2: op-level",
        "plans), `python benchmarks/compare.py --models M --sizes S --quick --pairs 3`: memadvise's",
        "plans at activation budgets of 70/50/30% and at each eager alternative's predicted peak,",
        "the four eager alternatives, and `torch.compile` at budgets 0.7/0.5/0.3, timed in three",
        "pairs at the small sizes and in one at the large ones (`--compile-pairs 1`: every run",
        "compiles again, minutes each on 2 cores). `--quick` leaves out `sac_milp` and `ckptplan`,",
        "which could not run on this CPU-only machine in the earlier runs either. The MLP sections",
        "are older (each says when it was measured).",
        "",
    ]
    for path in sorted(results.glob("*.json")):
        if path.stem.endswith("-smoke") or path.stem in ("overhead", "scale", "traffic", "report_scale"):
            continue
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):  # another benchmark's results (compile-plans-*.json)
            continue
        model, size = path.stem.rsplit("-", 1)
        meta = next((r for r in rows if r.get("kind") == "meta"), {})
        base = next((r for r in rows if r.get("kind") == "baseline"), {})
        lines += [f"## {model} ({size})", "",
                  f"Baseline: peak {_mib(base.get('peak_bytes'))} MiB, activations "
                  f"{_mib(base.get('activation_bytes'))} MiB, step {1000 * (base.get('step_time_s') or 0):.1f} ms "
                  f"(baseline drift between first and last run: {_pct(base.get('baseline_drift'))}). "
                  f"Profiling: {meta.get('profile_s', 0):.1f} s, one instrumented step = "
                  f"{meta.get('instrumented_step_ratio', 0):.1f}x a plain step; suggest {meta.get('suggest_s', 0):.2f} s.",
                  "",
                  (f"Measured {meta['date']} at {meta.get('commit')}, torch {meta.get('torch')}, {meta.get('cpus')} CPUs."
                   if meta.get("date") else "Measured before 2026-12-05 (plans of plan schema v1: module-level only)."),
                  "",
                  f"![{model} {size}](benchmarks/results/{path.stem}.png)", "",
                  "| variant | peak MiB | peak | activations | step time | predicted peak / overhead | error peak / overhead |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.get("kind") in ("meta",):
                continue
            if "error" in r:
                lines.append(f"| {r['variant']} | could not run: {r['error']} | | | | | |")
                continue
            pred = ""
            err = ""
            if "predicted_peak_bytes" in r:
                pred = f"{_mib(r['predicted_peak_bytes'])} MiB / {_pct(r['predicted_overhead'])}"
                err = f"{r['peak_error'] * 100:.2f}% / {r['overhead_error_pts']:+.1f} pts"
            lines.append(f"| {r['variant']} | {_mib(r['peak_bytes'])} | {_pct(r['peak_ratio'] - 1)} | "
                         f"{_pct((r['activation_ratio'] or 1) - 1)} | {_pct(r['time_ratio'] - 1)} | {pred} | {err} |")
        lines += [""] + equal_peak_lines(rows) + ["**Headline.** " + headline_text(rows)]
        lines.append("")
    lines += ranking_section(results / "ranking")
    lines += compile_accuracy_section(results)
    lines += traffic_section(results / "traffic.json")
    lines += report_scale_section(results / "report_scale.json")
    out.write_text("\n".join(lines) + "\n")


def ranking_verdict(rec: dict, best: dict | None) -> str:
    """Whether ``rec`` measured no slower than ``best``, in words. A difference counts only
    where the pairs do not overlap: every pair of one slower than every pair of the other."""
    if best is None:
        return "no variant reaches its peak"
    d = rec["time_ratio"] - best["time_ratio"]
    if d <= 0:
        return "no slower"
    a, b = rec.get("time_ratio_pairs") or [rec["time_ratio"]], best.get("time_ratio_pairs") or [best["time_ratio"]]
    if len(a) < 2 or len(b) < 2:
        return f"{d * 100:+.1f} pts, not resolved (one pair)"
    if min(a) > max(b):
        return f"slower by {d * 100:.1f} pts (pairs do not overlap)"
    return f"{d * 100:+.1f} pts, within noise (pairs overlap)"


def _budget_of(variant: str) -> float | None:
    """0.7 for "memadvise 70% (...)"."""
    head = variant.split(" ")[1] if variant.startswith("memadvise ") else ""
    return float(head[:-1]) / 100 if head.endswith("%") and head[:-1].isdigit() else None


def ranking_rows(rows: list[dict], *, within_budget: bool = False) -> list[tuple[dict, dict | None, str]]:
    """Each recommendation at an activation budget ("memadvise 70% (...)"), the fastest other
    variant (eager or compile, memadvise's own plans included) at equal or lower measured
    peak, and the verdict. ``within_budget``: rivals must also meet the activation budget
    (measured). A variant that ran the recommendation's own configuration (the same
    measurement, ``same_config_as``) is not its rival."""
    out = []
    timed = [r for r in rows if r.get("kind") in ("alternative", "memadvise") and r.get("time_ratio") is not None]
    for r in timed:
        f = _budget_of(r["variant"])
        if f is None:
            continue
        same = {r["variant"], r.get("same_config_as")} - {None}
        rivals = [a for a in timed if a["variant"] not in same and a.get("same_config_as") not in same
                  and a["peak_bytes"] <= r["peak_bytes"] * (1 + PEAK_SLACK)
                  and (not within_budget or (a.get("activation_ratio") or 1.0) <= f)]
        best = min(rivals, key=lambda a: a["time_ratio"], default=None)
        out.append((r, best, ranking_verdict(r, best)))
    return out


def _ranking_table(ranked: list, rival: str) -> list[str]:
    lines = [f"| recommendation | same configuration as | peak | activations | step time (pairs) | {rival} | "
             "its peak / activations | its step time (pairs) | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r, best, verdict in ranked:
        lines.append(f"| {r['variant']} | {r.get('same_config_as') or ''} | {_pct(r['peak_ratio'] - 1)} | "
                     f"{_pct((r['activation_ratio'] or 1) - 1)} | {_pct(r['time_ratio'] - 1)} ({_spread(r)}) | "
                     + (f"{best['variant']} | {_pct(best['peak_ratio'] - 1)} / "
                        f"{_pct((best['activation_ratio'] or 1) - 1)} | {_pct(best['time_ratio'] - 1)} "
                        f"({_spread(best)}) |" if best else "none | | |") + f" {verdict} |")
    ok = sum(1 for _, _, v in ranked if v.startswith(("no slower", "no variant")))
    noise = sum(1 for _, _, v in ranked if "within noise" in v or "not resolved" in v)
    beyond = len(ranked) - ok - noise
    return lines + ["", f"{ok} of {len(ranked)} no slower"
                    + (f"; {noise} slower by less than the measurement resolves" if noise else "")
                    + (f"; {beyond} slower beyond it" if beyond else "") + ".", ""]


def compile_prediction_rows(rows: list[dict]) -> list[dict]:
    """One row per compile budget measured with memadvise's prediction (each configuration once)."""
    out, seen = [], set()
    for r in rows:
        if r.get("predicted_peak_bytes") is None or r.get("same_config_as"):
            continue
        name = r["variant"]
        if not ("compile-budget" in name or name.startswith("torch.compile budget")):
            continue
        budget = name.rsplit(" ", 1)[1] if name.startswith("torch.compile") else name.split("compile-budget-")[1][:-1]
        if budget in seen:
            continue
        seen.add(budget)
        out.append({"budget": float(budget), **r})
    return sorted(out, key=lambda r: -r["budget"])


def compile_accuracy_section(results: Path) -> list[str]:
    """``benchmarks/compile_plans.py``: each compile(budget) plan's predicted peak against the
    peak measured by the profiler timeline in a process of its own (one per patched script)."""
    files = sorted(results.glob("compile-plans-*.json"))
    if not files:
        return []
    lines = ["## Compile plans: predicted against measured peak (`benchmarks/compile_plans.py`)", "",
             "Each `compile-budget-B` plan's patched script (the budget and `model.compile()`) measured by "
             "`tests/oracle.py` in a process of its own; the prediction is `suggest`'s, from a profile taken "
             "with `--compile-plans`. Non-monotonic: a budget that peaks higher than a larger budget of the "
             "same table, predicted / measured.", "",
             "| script (arguments) | plan | predicted peak | measured peak | error | non-monotonic |",
             "|---|---|---|---|---|---|"]
    for path in files:
        doc = json.loads(path.read_text())
        label = f"{doc['model']} ({' '.join(doc['args']) or 'its defaults'}; {doc.get('date', 'undated')})"
        rows = doc["rows"]
        for i, r in enumerate(rows):
            mono = ""
            if i > 1:  # rows[0] is eager; compile rows from the largest budget down
                higher = [(x["predicted_peak_bytes"], x["measured_peak_bytes"]) for x in rows[1:i]]
                pred = r["predicted_peak_bytes"] > min(h[0] for h in higher)
                meas = r["measured_peak_bytes"] > min(h[1] for h in higher)
                mono = f"{'yes' if pred else 'no'} / {'yes' if meas else 'no'}"
            lines.append(f"| {label if i == 0 else ''} | {r['plan']} | {r['predicted_peak_bytes']:,} B | "
                         f"{r['measured_peak_bytes']:,} B | {_pct(r['error'])} | {mono} |")
    return lines + [""]


def ranking_section(folder: Path) -> list[str]:
    """``compare.py --one M S --compile-plans --results benchmarks/results/ranking``: suggest's
    recommendation at each activation budget, compile-budget plans included, against the
    fastest other variant at equal or lower measured peak."""
    lines: list[str] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        rows = json.loads(path.read_text())
        meta = next((r for r in rows if r.get("kind") == "meta"), {})
        n_pairs = max((len(r.get("time_ratio_pairs") or []) for r in rows), default=0)
        lines += [f"## Ranking with compile plans: {path.stem} (`--compile-plans`)", "",
                  f"Measured {meta.get('date')} at {meta.get('commit')}. The profile includes torch.compile's "
                  "partition at budgets 1.0 … 0.1 and the compile probe, so suggest ranks `compile-budget-B` plans "
                  "with the eager ones. Each configuration is measured once (a recommendation that runs what an "
                  "alternative runs shares its measurement), its step time the median of up to "
                  f"{n_pairs} alternating (baseline, variant) pairs. A difference counts only where the pairs do "
                  "not overlap. Activations: what the forward added and still holds when backward starts "
                  "(`held_for_backward_bytes`, category-free: a compiled backward reuses its saved values in place, "
                  "so counting what the step destroys misses them).", "",
                  "Against every variant at equal or lower measured peak:", ""]
        lines += _ranking_table(ranking_rows(rows), "fastest other variant at ≤ its peak")
        lines += ["Against the variants that also meet the same activation budget (measured):", ""]
        lines += _ranking_table(ranking_rows(rows, within_budget=True),
                                "fastest other variant at ≤ its peak within the budget")
        pred = compile_prediction_rows(rows)
        if pred:
            lines += ["Compile plans, predicted peak against the measured (profiler timeline, this process):", "",
                      "| budget | predicted peak | measured peak | error |", "|---|---|---|---|"]
            for r in pred:
                lines.append(f"| {r['budget']:g} | {_mib(r['predicted_peak_bytes'])} MiB | {_mib(r['peak_bytes'])} MiB "
                             f"| {_pct(r['predicted_peak_bytes'] / r['peak_bytes'] - 1)} |")
            lines.append("")
    return lines


def traffic_section(path: Path) -> list[str]:
    """benchmarks/traffic.py: the traffic model's baseline step time and each traffic plan's
    predicted against measured speedup."""
    if not path.exists():
        return []
    lines = ["## Traffic model (`benchmarks/traffic.py`)", "",
             "Baseline: the traffic model's step time (matmuls and convolutions as their own",
             "signatures replayed alone after the run, inputs and outputs out of cache; every other",
             "op at its roofline — bytes at the",
             "probed bandwidth or at its own kind's probed rate where lower — plus the probed dispatch",
             "cost of its kind; the optimizer's step as measured on copies of its parameters and state;",
             "autograd's cost per node, recorded and run, and nn.Module's per call; no measured op time",
             "of the step enters it) against the measured step: median of the predictions against",
             "median of the measurements over independent profiles (per-run errors in brackets; then the",
             "same sum with every op at its roofline, median). Plans: speedup",
             "predicted by `suggest` against the speedup `apply --traffic NAME --verify` measured",
             "(original and patched script each profiled in its own process). Targets: baseline within",
             "15%; each plan's speedup of the right sign and within 10 points.", "",
             "| script | baseline measured | traffic model | error | plan | predicted speedup | measured speedup | error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in json.loads(path.read_text()):
        per_run = ", ".join(_pct(x["error"]) for x in r.get("runs", []))
        roof = (f"; all at roofline {_pct(r['roofline_step_s'] / r['measured_step_s'] - 1)}"
                if r.get("roofline_step_s") else "")
        head = (f"| {r['model']} | {r['measured_step_s'] * 1000:.1f} ms | {r['predicted_step_s'] * 1000:.1f} ms | "
                f"{_pct(r['baseline_error'])}" + (f" ({per_run})" if len(r.get("runs", [])) > 1 else "") + roof + " |")
        if not r["plans"]:
            lines.append(head + " (none) | | | |")
        for i, pl in enumerate(r["plans"]):
            lead = head if i == 0 else "| | | | |"
            if "measured_speedup" in pl:
                ok = "" if pl["same_sign"] and abs(pl["speedup_error_pts"]) <= 10 else " ✗"
                pairs = pl.get("measured_speedup_pairs") or []
                spread = f" (pairs: {', '.join(_pct(x) for x in pairs)})" if len(pairs) > 1 else ""
                lines.append(f"{lead} {pl['strategy']} | {_pct(pl['predicted_speedup'])} | {_pct(pl['measured_speedup'])}{spread} | "
                             f"{pl['speedup_error_pts']:+.1f} pts{ok} |")
            else:
                lines.append(f"{lead} {pl['strategy']} | {_pct(pl.get('predicted_speedup'))} | "
                             f"{pl.get('error') or pl.get('skipped')} | |")
    data = json.loads(path.read_text())
    plans = [pl for r in data for pl in r["plans"] if "measured_speedup" in pl]
    ok = sum(1 for pl in plans if pl["same_sign"] and abs(pl["speedup_error_pts"]) <= 10)
    base_ok = sum(1 for r in data if abs(r["baseline_error"]) <= 0.15)
    lines += ["", f"This run: baseline within 15% on {base_ok} of {len(data)} scripts; {ok} of {len(plans)} plans "
              "of the right sign and within 10 points (✗ marks the others)."]
    null = [pl for pl in plans if not (pl["same_sign"] and abs(pl["speedup_error_pts"]) <= 10)
            and _indistinguishable_from_zero(pl)]
    if null:
        lines[-1] += (f" Of the misses, {len(null)} {'is' if len(null) == 1 else 'are'} predicted under 2% either "
                      "way and measured with pairs of both signs: no effect the measurement can tell from zero, "
                      "so the sign is a coin toss ("
                      + ", ".join(f"{r['model']} {pl['strategy']}" for r in data for pl in r["plans"] if pl in null)
                      + ").")
    runs = path.with_name("traffic-runs.txt")
    if runs.exists():
        lines += ["", f"Run to run, on this shared 2-core machine, the measured side moves about as much as the "
                  f"effects measured (per-run baseline errors and the pairs above): "
                  f"`{runs.relative_to(path.parents[2]).as_posix()}` holds the output of every run. Compare a "
                  "plan's rows across runs before trusting a difference."]
    return lines + [""]


def _indistinguishable_from_zero(plan: dict) -> bool:
    """Predicted under 2% either way, and the measured pairs lie on both sides of zero
    (what `apply --verify` reports as ``"resolved": false``)."""
    from memadvise.apply.verify import timing_spread

    pairs = plan.get("measured_speedup_pairs") or []
    return abs(plan["predicted_speedup"]) < 0.02 and timing_spread(pairs)["resolved"] is False


def report_scale_section(path: Path) -> list[str]:
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    load = (f"headless Chromium drew every chart {r['render_ms']:.0f} ms after navigation (page clock; "
            f"{r['chromium_wall_s']:.2f} s for the whole Chromium run, start-up included)"
            if r.get("render_ms") is not None else "no Chromium: load time not measured")
    return ["## HTML report at scale (`benchmarks/report_scale.py`)", "",
            f"A {r['ops']:,}-op step with {r['units']:,} units and its `suggest` plans: the report is "
            f"{r['report_bytes'] / 1e6:.2f} MB, written in {r['report_s']:.1f} s; {load}. "
            "Targets: under 10 MB, opens in under 3 s.", ""]


if __name__ == "__main__":  # regenerate BENCHMARKS.md from benchmarks/results
    root = Path(__file__).resolve().parents[1]
    write_markdown(root / "benchmarks" / "results", root / "BENCHMARKS.md")
