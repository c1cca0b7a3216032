"""`apply` follows the model object in the shapes real training scripts take: a DDP wrap
inside an `if` that does not run, `model = torch.compile(model)`, a model passed into
`train_one_epoch(model, ...)`, and nanoGPT's `exec(open(configurator).read())`. For each:
the patch applies, the patched run wraps every unit of the plan (MEMADVISE_APPLIED_OUT),
and PyTorch's profiler (tests/oracle.py) measures the peak the plan predicted."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memadvise.apply.apply import prepare
from memadvise.collect.api import profile_script
from memadvise.planning.suggest import suggest
from memadvise.schema.plan import PlanFile, write_plan
from memadvise.schema.profile import read_profile
from oracle import measure_script

SHAPES = Path(__file__).resolve().parents[1] / "scripts" / "shapes"
TOL = 0.02


_PROFILE_IN_A_FRESH_PROCESS = (
    "import sys\n"
    "from memadvise.collect.api import profile_script\n"
    "profile_script(sys.argv[1], sys.argv[3:], warmup=1, timing_steps=1, steps=2, out=sys.argv[2],\n"
    "               calibrate_overheads=False)\n"
)


def _plan_and_patch(tmp_path, name, args=(), fresh_process=False):
    for f in (f"{name}.py", "configurator.py"):
        shutil.copy(SHAPES / f, tmp_path / f)
    script = tmp_path / f"{name}.py"
    out = tmp_path / "profile.json"
    if fresh_process:
        # a script that runs torch.compile is profiled away from whatever else this
        # process compiled before it (after torch.compile has run in a process, later
        # eager profiles there record up to 5 KiB more temporaries; see test_compile_plans)
        subprocess.run([sys.executable, "-c", _PROFILE_IN_A_FRESH_PROCESS, str(script), str(out), *args],
                       check=True, capture_output=True, text=True)
        profile = read_profile(out)
    else:
        profile = profile_script(script, list(args), warmup=1, timing_steps=1, steps=2, out=out,
                                 calibrate_overheads=False)
    doc = suggest(profile, profile_path=str(tmp_path / "profile.json"))
    write_plan(doc, tmp_path / "plan.json")
    plan_file = PlanFile.from_doc(doc, tmp_path / "plan.json")
    plan = next(p for p in doc["plans"] if p["rank"] == 1)  # what a user applies first
    prepared = prepare(plan_file, plan)
    patched = tmp_path / f"{name}_patched.py"
    patched.write_text(prepared.patch.new_source)
    return prepared, plan, patched


def _call_line(source: str) -> tuple[int, int]:
    """(line, column) of the inserted `memadvise_apply(...)` call."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "memadvise_apply":
            return node.lineno, node.col_offset
    raise AssertionError("no memadvise_apply call in the patched script")


def _line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if line.strip().startswith(text))


def _check_runs_as_predicted(tmp_path, monkeypatch, prepared, plan, patched, args=()):
    applied = tmp_path / "applied.txt"
    monkeypatch.setenv("MEMADVISE_APPLIED_OUT", str(applied))
    measured = measure_script(str(patched), list(args), warmup=2)
    wrapped = set(applied.read_text().splitlines())
    assert wrapped == set(prepared.plan.units) and len(wrapped) == len(plan["actions"])
    pred = plan["predicted"]["peak_bytes"]
    assert abs(pred - measured["peak_bytes"]) <= TOL * measured["peak_bytes"], (pred, measured["peak_bytes"])


def test_ddp_wrap_in_an_if_that_did_not_run(tmp_path, monkeypatch):
    prepared, plan, patched = _plan_and_patch(tmp_path, "ddp_if")
    src = prepared.patch.new_source
    line, col = _call_line(src)
    assert col == 0 and _line_of(src, "model.to(device)") < line < _line_of(src, "if ddp:")
    assert "`model = DDP(model)` (line 24) did not run when profiled" in prepared.where
    _check_runs_as_predicted(tmp_path, monkeypatch, prepared, plan, patched)


def test_model_passed_into_train_one_epoch(tmp_path, monkeypatch):
    prepared, plan, patched = _plan_and_patch(tmp_path, "train_one_epoch", ["--epochs", "3"])
    src = prepared.patch.new_source
    line, col = _call_line(src)
    # in main(), after the model is built and moved, not inside train_one_epoch
    assert col == 4 and _line_of(src, "model.to(device)") < line < _line_of(src, "criterion = nn.MSELoss()")
    assert "in main(), which passes it on" in prepared.where
    _check_runs_as_predicted(tmp_path, monkeypatch, prepared, plan, patched, ["--epochs", "3"])


def test_nanogpt_style_configurator_exec(tmp_path, monkeypatch):
    args = ["--max_iters=12", "--batch_size=8"]
    prepared, plan, patched = _plan_and_patch(tmp_path, "exec_config", args)
    src = prepared.patch.new_source
    line, col = _call_line(src)
    assert col == 0 and _line_of(src, "model.to(device)") < line < _line_of(src, "if compile:")
    _check_runs_as_predicted(tmp_path, monkeypatch, prepared, plan, patched, args)


@pytest.mark.slow
@pytest.mark.heavy  # torch.compile on CPU: ~30 s to compile the tiny model, per process
def test_torch_compile_assigned_back(tmp_path, monkeypatch):
    prepared, plan, patched = _plan_and_patch(tmp_path, "compiled", fresh_process=True)
    src = prepared.patch.new_source
    line, col = _call_line(src)
    assert line < _line_of(src, "model = torch.compile(model)")
    # the profile saw the compiled module's paths (_orig_mod.0.1); the patch names the model's
    assert all(a["unit"].startswith("_orig_mod") for a in plan["actions"])
    assert not any(u.startswith("_orig_mod") for u in prepared.plan.units)
    _check_runs_as_predicted(tmp_path, monkeypatch, prepared, plan, patched)


def test_a_parameter_with_no_caller_that_builds_it_names_the_line_to_add(tmp_path):
    from memadvise._errors import PlanRefused
    from memadvise.source import find_model_site

    source = "def train(model):\n    for x in data:\n        model(x).sum().backward()\n"
    frame = {"function": "train", "first_line": 1, "line": 3, "expression": "model", "parameter": True,
             "executed_lines": [2, 3]}
    with pytest.raises(PlanRefused) as err:
        find_model_site(source, [frame])
    assert "`model` is a parameter of train()" in str(err.value)
    assert "memadvise.apply_plan(model, PLAN_FILE)" in str(err.value)


def test_gradients_alive_in_the_forward_are_a_cheap_win_that_holds(tmp_path, monkeypatch):
    # train_one_epoch.py --zero-grad-after-forward: the previous step's gradients
    # sit at the forward peak; dropping them as the forward starts is predicted and measured
    for f in ("train_one_epoch.py",):
        shutil.copy(SHAPES / f, tmp_path / f)
    script = tmp_path / "train_one_epoch.py"
    args = ["--zero-grad-after-forward"]
    profile = profile_script(script, args, warmup=1, timing_steps=1, steps=2, out=tmp_path / "profile.json",
                             calibrate_overheads=False)
    doc = suggest(profile, profile_path=str(tmp_path / "profile.json"))
    free = next(t for t in doc["traffic"]["plans"] if t["strategy"] == "free-grads")
    assert free["predicted"]["peak_bytes"] < doc["baseline"]["peak_bytes"]
    assert any("apply --traffic free-grads" in n for n in doc["notes"])
    prepared = prepare(PlanFile.from_doc(doc, tmp_path / "plan.json"), None, traffic=["free-grads"])
    patched = tmp_path / "patched.py"
    patched.write_text(prepared.patch.new_source)
    measured = measure_script(str(patched), args, warmup=2)
    pred = prepared.plan.predicted.peak_bytes
    assert abs(pred - measured["peak_bytes"]) <= TOL * measured["peak_bytes"], (pred, measured["peak_bytes"])


def test_verify_tells_a_plan_whose_code_never_ran_from_one_that_did(tmp_path):
    # the plan placed where issue 23's nanoGPT run had it: inside `if ddp:`, which never runs
    from dataclasses import replace

    from memadvise.apply.patch import make_patch
    from memadvise.apply.verify import verify
    from memadvise.schema.plan import read_plan

    prepared, plan, _ = _plan_and_patch(tmp_path, "ddp_if")
    script = prepared.script
    wrap_line = _line_of(prepared.source, "model = DDP(model)")
    inside = make_patch(script, prepared.source, prepared.patch.block, wrap_line, 4, script.name)
    result = verify(read_plan(tmp_path / "plan.json"), replace(prepared, patch=inside), tolerance=0.05, timing_steps=1)
    applied = result["applied"]
    assert applied["wrapped"] == 0 and not applied["took_effect"] and not result["passed"]
    assert applied["said"].startswith(f"0 of {len(plan['actions'])} units were")
    assert "the inserted code did not run" in applied["said"]
    # the patch as `apply` places it: every unit wrapped, the peak as predicted
    result = verify(read_plan(tmp_path / "plan.json"), prepared, tolerance=TOL, timing_steps=1)
    assert result["applied"]["took_effect"] and result["applied"]["wrapped"] == len(plan["actions"])
    assert result["passed"], result["rows"]["peak_bytes"]
