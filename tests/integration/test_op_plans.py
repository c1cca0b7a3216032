"""Op-level plans on the sample GPT, for real: selective recompute with save-linear
(Megatron-LM's choice), a per-op keep list written by hand, and the solver's per-op keep
sets, applied through the patch. The patched scripts are measured in a separate process
by PyTorch's profiler (tests/oracle.py): predicted peak and activation memory within 2%;
gradients and buffers bit for bit the unpatched script's, dropout included."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import SAMPLES, SMALL
from memadvise.analysis.simulator import Simulator
from memadvise.analysis.units import UnitTree
from memadvise.apply.apply import prepare
from memadvise.collect.api import profile_script
from memadvise.planning import solver
from memadvise.planning.suggest import suggest
from memadvise.schema.actions import SELECTIVE, Action
from memadvise.schema.plan import PlanFile
from oracle import measure_scripts

TESTS = Path(__file__).resolve().parents[1]
TOL = 0.02


@pytest.fixture(scope="module")
def op_plans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpt_ops")
    script = tmp / "gpt.py"
    script.write_text((SAMPLES / "gpt.py").read_text())
    args = SMALL["gpt"]
    profile = profile_script(script, args, warmup=1, timing_steps=1, steps=2, out=tmp / "profile.json",
                             calibrate_overheads=False)
    doc = suggest(profile, profile_path=str(tmp / "profile.json"))
    sim = Simulator(profile)
    tree = UnitTree(profile, sim.trace)
    blocks = [tree.units[b].name for b in tree.blocks]
    extra = {
        # by hand: the attention and MLP input projections' outputs and the second
        # LayerNorm's; the output projections, scores, softmax, dropout and GELU recomputed
        "per-op-hand": [Action(b, SELECTIVE, keep=[("addmm", 0), ("addmm", 2), ("native_layer_norm", 1)])
                        for b in blocks],
        # torchtitan's rule: keep every other linear layer's output (calls 0, 2, ...)
        "per-op-alternate": [Action(b, SELECTIVE, keep=[("addmm", 0), ("addmm", 2)]) for b in blocks],
    }
    # the solver's own per-op keep sets for the blocks: the middle one of each block's list
    units = [tree.by_name[b] for b in blocks]
    options = solver.options_for(tree, sim, units, device_type="cpu", exhaustive=False)
    ranked = [[o.action for o in options[u] if o.action.action == SELECTIVE and o.action.keep] for u in units]
    if all(ranked):
        extra["per-op-ranked"] = [r[len(r) // 2] for r in ranked]
    rank = len(doc["plans"])
    for name, actions in extra.items():
        rank += 1
        doc["plans"].append({"rank": rank, "strategy": name, "description": name,
                             "actions": [dict(a.to_json(), restore_buffers=False) for a in actions],
                             "predicted": sim.simulate(actions).predicted(), "warnings": []})
    plan_file = PlanFile.from_doc(doc, tmp / "plan.json")
    chosen = [p for p in doc["plans"] if any(a["action"] == SELECTIVE for a in p["actions"])]
    patched = []
    for plan in chosen:
        path = tmp / f"gpt_{plan['strategy']}.py"
        path.write_text(prepare(plan_file, plan).patch.new_source)
        patched.append((plan, path))
    return {"script": script, "args": args, "patched": patched, "extra": set(extra)}


def test_op_level_plans_are_planned(op_plans):
    names = {p["strategy"] for p, _ in op_plans["patched"]}
    assert {"selective-linear", "per-op-hand", "per-op-alternate"} <= names
    linear = next(p for p, _ in op_plans["patched"] if p["strategy"] == "selective-linear")
    assert {a["policy"] for a in linear["actions"]} == {"save-linear"}
    recomputed = {r["op"] for r in linear["recompute"]}
    assert "bmm" in recomputed and "addmm" not in recomputed  # scores recomputed, linear outputs kept


def test_op_level_predictions_hold_when_measured(op_plans):
    jobs = [(op_plans["script"], op_plans["args"])] + [(path, op_plans["args"]) for _, path in op_plans["patched"]]
    results = measure_scripts(jobs, warmup=2)
    base = results[0]
    assert "error" not in base, base
    failures = []
    for (plan, _), measured in zip(op_plans["patched"], results[1:]):
        assert "error" not in measured, (plan["strategy"], measured)
        pred = plan["predicted"]
        peak_err = abs(pred["peak_bytes"] - measured["peak_bytes"]) / measured["peak_bytes"]
        act = measured["activation_forward_made_bytes"]
        act_err = abs(pred["activation_bytes"] - act) / max(act, 0.01 * base["activation_forward_made_bytes"])
        if peak_err > TOL or act_err > TOL:
            failures.append((plan["strategy"], pred["peak_bytes"], measured["peak_bytes"], pred["activation_bytes"], act))
    assert not failures, failures


def test_op_level_gradients_unchanged_bit_for_bit(op_plans, tmp_path):
    jobs = [[str(op_plans["script"]), op_plans["args"]]] + [[str(p), op_plans["args"]] for _, p in op_plans["patched"]]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, str(TESTS / "grad_dump.py"), str(tmp_path / "jobs.json"), str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = torch.load(tmp_path / "0.pt")
    for i, (plan, _) in enumerate(op_plans["patched"], start=1):
        got = torch.load(tmp_path / f"{i}.pt")
        assert len(got["grads"]) == len(ref["grads"])
        for a, b in zip(ref["grads"], got["grads"]):
            assert (a is None and b is None) or torch.equal(a, b), plan["strategy"]
        for key in ref["buffers"]:
            assert torch.equal(ref["buffers"][key], got["buffers"][key]), (plan["strategy"], key)
