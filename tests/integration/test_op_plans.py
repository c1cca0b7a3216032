"""Op-level plans for real, on the sample GPT, a Hugging Face Llama (eager attention) and
a module called three times per forward: selective recompute with save-linear
(Megatron-LM's choice), per-op keep lists (written by hand; torchtitan's every-other-
linear rule) and the solver's per-op keep sets, applied through the patch. The patched scripts are measured in a separate process
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


SCRIPTS = TESTS / "scripts"
CASES = {
    "gpt": (SAMPLES / "gpt.py", SMALL["gpt"]),
    "hf_llama": (SCRIPTS / "hf_llama.py", []),
    "shared_module": (SCRIPTS / "shared_module.py", []),  # one unit called three times per forward
}


@pytest.fixture(scope="module", params=list(CASES))
def op_plans(request, tmp_path_factory):
    name = request.param
    source, args = CASES[name]
    tmp = tmp_path_factory.mktemp(f"{name}_ops")
    script = tmp / source.name
    script.write_text(source.read_text())
    profile = profile_script(script, args, warmup=1, timing_steps=1, steps=2, out=tmp / "profile.json",
                             calibrate_overheads=False)
    doc = suggest(profile, profile_path=str(tmp / "profile.json"))
    sim = Simulator(profile)
    tree = UnitTree(profile, sim.trace)
    units = list(tree.blocks) or [tree.by_name["block"]]
    blocks = [tree.units[b].name for b in units]
    counts = tree.call_ops(units[0])[0].counts()
    linear = "addmm" if "addmm" in counts else "mm"
    extra = {
        # torchtitan's rule: keep every other linear layer's output (calls 0, 2, ...)
        "per-op-alternate": [Action(b, SELECTIVE, keep=[(linear, k) for k in range(0, counts[linear], 2)])
                             for b in blocks],
    }
    if name == "gpt":
        # by hand: the attention and MLP input projections' outputs and the second
        # LayerNorm's; the output projections, scores, softmax, dropout and GELU recomputed
        extra["per-op-hand"] = [Action(b, SELECTIVE, keep=[("addmm", 0), ("addmm", 2), ("native_layer_norm", 1)])
                                for b in blocks]
    # the solver's own per-op keep sets for the blocks: the middle one of each block's list
    options = solver.options_for(tree, sim, units, device_type="cpu", exhaustive=False)
    ranked = [[o.action for o in options[u] if o.action.action == SELECTIVE and o.action.keep] for u in units]
    if all(ranked):
        extra["per-op-ranked"] = [r[len(r) // 2] for r in ranked]
    rank = len(doc["plans"])
    for strategy, actions in extra.items():
        rank += 1
        doc["plans"].append({"rank": rank, "strategy": strategy, "description": strategy,
                             "actions": [dict(a.to_json(), restore_buffers=False) for a in actions],
                             "predicted": sim.simulate(actions).predicted(), "warnings": []})
    plan_file = PlanFile.from_doc(doc, tmp / "plan.json")
    chosen = [p for p in doc["plans"] if any(a["action"] == SELECTIVE for a in p["actions"])]
    patched = []
    for plan in chosen:
        path = tmp / f"{name}_{plan['strategy']}.py"
        path.write_text(prepare(plan_file, plan).patch.new_source)
        patched.append((plan, path))
    return {"name": name, "script": script, "args": args, "patched": patched, "extra": set(extra)}


def test_op_level_plans_are_planned(op_plans):
    names = {p["strategy"] for p, _ in op_plans["patched"]}
    assert "per-op-alternate" in names
    if op_plans["name"] == "shared_module":
        return
    assert "selective-linear" in names
    linear = next(p for p, _ in op_plans["patched"] if p["strategy"] == "selective-linear")
    assert {a["policy"] for a in linear["actions"]} == {"save-linear"}
    recomputed = {r["op"] for r in linear["recompute"]}
    # attention scores recomputed, linear layers' outputs kept
    assert "bmm" in recomputed and not recomputed & {"mm", "addmm"}


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
