"""``compile-budget-B`` plans for ``suggest``: ``torch.compile`` with
``torch._functorch.config.activation_memory_budget = B``, one plan per budget of the
profile's ladder, predicted by ``analysis.compile_plans`` and ranked with the eager plans
(they have no unit actions; their ``compile`` field says what the patch sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memadvise.analysis.compile_plans import CompilePlan, available, eager_units, predict
from memadvise.analysis.simulator import Simulator
from memadvise.schema.actions import display_unit
from memadvise.schema.plan import CompileChoice
from memadvise.schema.profile import Profile
from memadvise.sizes import format_bytes

COMPILE_CAVEAT = ("compiles in the first steps (seconds to minutes); recompiles if shapes change; results can "
                  "differ in the last bits")


@dataclass
class CompileCandidate:
    name: str
    description: str
    plan: CompilePlan
    eager: list[str]
    warnings: list[str] = field(default_factory=list)

    def doc(self) -> dict:
        row = self.plan.row
        return CompileChoice(
            budget=self.plan.budget, saved_bytes=int(row["saved_bytes"]), saved_count=int(row.get("saved_count", 0)),
            recomputed_count=int(row.get("recomputed_count", 0)), recomputed_flops=int(row.get("recomputed_flops", 0)),
            non_monotonic=self.plan.non_monotonic, eager_modules=tuple(self.eager),
            time_notes=tuple(self.plan.time_notes),
        ).to_json()


def _name(budget: float) -> str:
    return f"compile-budget-{budget:g}"


def compile_candidates(profile: Profile, sim: Simulator) -> tuple[list[CompileCandidate], list[str], list[dict]]:
    """(plans, notes for the plan file, unavailable entries). Nothing at all when the
    profile was taken without ``--compile-plans``."""
    doc = profile.doc.get("compile_plans")
    if doc is None:
        return [], [], []
    ok, reason = available(profile)
    if not ok:
        return [], [], [{"strategy": "compile-budget", "reason": reason}]
    delta = None
    try:
        from memadvise.analysis.traffic import predict_traffic

        delta = predict_traffic(profile, {"compile": True}, trace=sim.trace).delta_s
    except ValueError:  # the traffic model cannot price compile here: eager time plus recompute, said
        delta = None
    plans = predict(profile, sim, compile_delta_s=delta)
    eager = eager_units(profile)
    out: list[CompileCandidate] = []
    first_of: dict[int, float] = {}
    for p in plans:
        row = p.row
        same = first_of.get(int(row["saved_bytes"]))
        desc = (f"torch.compile, activation memory budget {p.budget:g}: the partitioner saves "
                f"{format_bytes(int(row['saved_bytes']))} for backward and recomputes "
                f"{int(row.get('recomputed_count', 0))} op(s)")
        if same is not None:
            desc += f" (same partition as budget {same:g})"
        else:
            first_of[int(row["saved_bytes"])] = p.budget
        warnings = [COMPILE_CAVEAT]
        if p.non_monotonic:
            warnings.append(f"not monotonic: budget {p.budget:g} is predicted to peak higher than a larger budget "
                            "(pytorch#197838)")
        if eager:
            warnings.append(f"{len(eager)} module(s) stay eager behind graph breaks: "
                            + ", ".join(display_unit(u) for u in eager[:5]) + (" ..." if len(eager) > 5 else ""))
        out.append(CompileCandidate(_name(p.budget), desc, p, eager, warnings))
    notes = []
    bad = [p for p in plans if p.non_monotonic]
    if bad:
        worst = max(bad, key=lambda p: p.result.peak_bytes)
        better = min((q for q in plans if q.budget > worst.budget), key=lambda q: q.result.peak_bytes)
        notes.append(f"torch.compile's budget is not monotonic here: budget {worst.budget:g} is predicted to peak at "
                     f"{format_bytes(worst.result.peak_bytes)}, above budget {better.budget:g} "
                     f"({format_bytes(better.result.peak_bytes)}) (pytorch#197838)")
    breaks = doc.get("graph_breaks") or []
    if breaks:
        first = breaks[0]
        where = f" at {first['where']}" if first.get("where") else ""
        stay = (", ".join(display_unit(u) for u in eager[:5]) + (" ..." if len(eager) > 5 else "")) if eager \
            else "none (every module is in some graph)"
        notes.append(f"torch.compile breaks the model's graph {len(breaks)} time(s) ({first['reason']}{where}); "
                     f"compile plans cover the {doc.get('graphs', 0)} captured graph(s); modules that stay eager: {stay}")
    return out, notes, []
