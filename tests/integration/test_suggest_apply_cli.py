"""`suggest` and `apply` through the real CLI: plan files, patches that git and patch
accept, in-place writes with backups, refusals, and untrusted plan files."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import SAMPLES, SMALL
from helpers import cli, json_out, one_line_error


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A git repository holding the GPT sample, profiled and planned once."""
    root = tmp_path_factory.mktemp("ws")
    (root / "train.py").write_text((SAMPLES / "gpt.py").read_text())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "train.py"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=root, check=True)
    old = os.getcwd()
    os.chdir(root)
    try:
        r = cli("profile", "train.py", "--out", ".memadvise/profile.json", "--warmup", "1", "--steps", "2",
                "--timing-steps", "1", "--", *SMALL["gpt"])
        assert r.exit_code == 0, r.output
        r = cli("suggest", "--json")
        assert r.exit_code == 0, r.output
    finally:
        os.chdir(old)
    return root


@pytest.fixture
def in_ws(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    subprocess.run(["git", "checkout", "-q", "--", "train.py"], cwd=workspace, check=True)
    for leftover in ("train.py.orig",):
        (workspace / leftover).unlink(missing_ok=True)
    return workspace


def test_suggest_json_has_the_documented_shape(in_ws):
    doc = json.loads((in_ws / ".memadvise" / "plan.json").read_text())
    assert doc["format"] == "memadvise-plan" and doc["schema_version"] == 2
    assert set(doc["baseline"]) >= {"peak_bytes", "activation_bytes", "step_time_s"}
    ranks = [p["rank"] for p in doc["plans"]]
    assert ranks == list(range(1, len(ranks) + 1))
    for plan in doc["plans"]:
        assert set(plan["predicted"]) >= {"peak_bytes", "activation_bytes", "step_time_s", "overhead"}
        for a in plan["actions"]:
            assert set(a) >= {"unit", "action", "policy"}
    assert any(p["pareto"] for p in doc["plans"])
    assert doc["recommendation"] is None or doc["recommendation"]["rank"] >= 1


def test_suggest_with_budget_ranks_plans_that_fit_first(in_ws):
    r = cli("suggest", "--budget", "80%", "--json", "--out", ".memadvise/plan80.json")
    assert r.exit_code == 0, r.output
    doc = json_out(r)
    budget = doc["budget"]["bytes"]
    assert doc["plans"][0]["predicted"]["peak_bytes"] <= budget
    assert doc["plans"][0]["meets_budget"] is True
    fitting = [p for p in doc["plans"] if p["meets_budget"]]
    times = [p["predicted"]["step_time_s"] for p in fitting]
    assert times == sorted(times)


def test_budget_no_plan_can_meet_exits_1(in_ws):
    r = cli("suggest", "--budget", "1KiB", "--out", ".memadvise/plan_tiny.json")
    assert r.exit_code == 1
    assert "no plan meets the budget" in r.stdout and "lowest predicted peak" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--budget", "6 parsecs"], "unknown unit"),
    (["--budget", "-5%"], "positive"),
    (["--budget", "0"], "larger than zero"),
    (["--top", "0"], "--top"),
])
def test_suggest_bad_arguments(in_ws, args, message):
    r = cli("suggest", *args, "--out", ".memadvise/bad.json")
    assert r.exit_code == 2
    assert message in one_line_error(r.stderr)
    assert not (in_ws / ".memadvise" / "bad.json").exists()


def test_suggest_is_pure_and_never_imports_torch(in_ws):
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'torch' or name.startswith('torch.'):\n"
        "        raise ImportError('suggest must not import torch')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from memadvise.cli.app import main\n"
        "sys.argv = ['memadvise', 'suggest', '--json', '--out', '.memadvise/pure.json']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=in_ws, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["plans"]


def test_patch_applies_with_git_and_patch_and_reverts(in_ws):
    r = cli("apply", "--rank", "1", "--patch", "plan.patch")
    assert r.exit_code == 0, r.output
    original = (in_ws / "train.py").read_text()
    diff = (in_ws / "plan.patch").read_text()
    assert diff.startswith("diff --git a/train.py b/train.py")
    assert "memadvise_apply(model, [" in diff and "predicted: peak" in diff
    subprocess.run(["git", "apply", "--check", "plan.patch"], cwd=in_ws, check=True)
    subprocess.run(["git", "apply", "plan.patch"], cwd=in_ws, check=True)
    patched = (in_ws / "train.py").read_text()
    assert patched != original and "torch.utils.checkpoint" in patched
    subprocess.run(["git", "apply", "-R", "plan.patch"], cwd=in_ws, check=True)
    assert (in_ws / "train.py").read_text() == original
    assert (in_ws / "train.py").read_bytes() == original.encode()  # byte for byte
    subprocess.run(["patch", "-p1", "-s", "-i", "plan.patch"], cwd=in_ws, check=True)
    assert (in_ws / "train.py").read_text() == patched


def test_piped_output_carries_the_whole_diff(in_ws):
    """`memadvise apply > x.patch` must give a patch: no line cropped to a console's width."""
    r = cli("apply", "--rank", "1", "--patch", "plan.patch")
    assert r.exit_code == 0, r.output
    diff = (in_ws / "plan.patch").read_text()
    assert max(map(len, diff.splitlines())) > 80  # wider than a narrow console
    assert r.output.startswith(diff)


def test_every_patch_line_fits_100_columns_and_names_op_sets_once(in_ws):
    """A reviewer reads the patch in one screen: for every plan, inlined or imported."""
    plans = json.loads((in_ws / ".memadvise" / "plan.json").read_text())["plans"]
    for plan in plans:
        for runtime in ("inline", "import"):
            r = cli("apply", "--rank", str(plan["rank"]), "--runtime", runtime, "--patch", "plan.patch")
            assert r.exit_code == 0, r.output
            added = [line[1:] for line in (in_ws / "plan.patch").read_text().splitlines()
                     if line.startswith("+") and not line.startswith("+++")]
            too_long = [line for line in added if len(line) > 100]
            assert not too_long, (plan["strategy"], runtime, too_long)
            defined = [line.split("=")[0].strip() for line in added if line.lstrip().startswith("MEMADVISE_")]
            assert len(defined) == len(set(defined))  # each kept-op set is written once
            assert sum("'addmm'" in line for line in added) <= len(defined)
            for action in plan["actions"]:  # every unit named whole in the header
                assert any(line.strip().startswith("#") and action["unit"] in line for line in added)
            has_import = "from memadvise.apply.runtime import memadvise_apply" in "\n".join(added)
            assert has_import == (runtime == "import")
            assert ("class MemadviseForward" in "\n".join(added)) == (runtime == "inline")


def test_runtime_import_patch_runs_and_reverts(in_ws):
    r = cli("apply", "--rank", "1", "--runtime", "import", "--patch", "plan.patch")
    assert r.exit_code == 0, r.output
    original = (in_ws / "train.py").read_bytes()
    subprocess.run(["git", "apply", "plan.patch"], cwd=in_ws, check=True)
    code = ("import sys, runpy; sys.argv = ['train.py', '--steps', '2', "
            + ", ".join(repr(a) for a in SMALL["gpt"][:-2]) + "]; runpy.run_path('train.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=in_ws, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    subprocess.run(["git", "apply", "-R", "plan.patch"], cwd=in_ws, check=True)
    assert (in_ws / "train.py").read_bytes() == original


def test_patched_script_runs_without_memadvise(in_ws, tmp_path):
    r = cli("apply", "--rank", "1", "--patch", "plan.patch")
    assert r.exit_code == 0
    subprocess.run(["git", "apply", "plan.patch"], cwd=in_ws, check=True)
    # a Python that cannot import memadvise
    env = dict(os.environ, PYTHONPATH="")
    code = ("import sys, runpy; sys.modules['memadvise'] = None; sys.argv = ['train.py', '--steps', '2', "
            + ", ".join(repr(a) for a in SMALL["gpt"][:-2]) + "]; runpy.run_path('train.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=in_ws, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_write_in_place_keeps_a_backup_and_refuses_to_reapply(in_ws):
    original = (in_ws / "train.py").read_text()
    r = cli("apply", "--rank", "1", "--write")
    assert r.exit_code == 0, r.output
    assert (in_ws / "train.py.orig").read_text() == original
    assert "memadvise plan: begin" in (in_ws / "train.py").read_text()
    # applying again: the script changed since profiling
    r = cli("apply", "--rank", "1", "--write")
    assert r.exit_code == 2 and "changed since it was profiled" in one_line_error(r.stderr)
    # forcing past the hash: the script is already patched, the backup exists
    r = cli("apply", "--rank", "1", "--write", "--force")
    assert r.exit_code == 2 and "already contains a memadvise plan" in one_line_error(r.stderr)
    assert (in_ws / "train.py.orig").read_text() == original


def test_existing_backup_is_never_overwritten(in_ws):
    (in_ws / "train.py.orig").write_text("precious")
    before = (in_ws / "train.py").read_text()
    r = cli("apply", "--rank", "1", "--write")
    assert r.exit_code == 2 and "already exists" in one_line_error(r.stderr)
    assert (in_ws / "train.py.orig").read_text() == "precious"
    assert (in_ws / "train.py").read_text() == before


def test_read_only_script_is_refused(in_ws):
    before = (in_ws / "train.py").read_text()
    os.chmod(in_ws / "train.py", 0o444)
    try:
        r = cli("apply", "--rank", "1", "--write")
        assert r.exit_code == 2 and "read-only" in one_line_error(r.stderr)
        assert (in_ws / "train.py").read_text() == before
        assert not (in_ws / "train.py.orig").exists()
    finally:
        os.chmod(in_ws / "train.py", 0o644)


def test_changed_script_is_refused_unless_forced(in_ws):
    with open(in_ws / "train.py", "a") as f:
        f.write("\n# a change\n")
    r = cli("apply", "--rank", "1", "--patch", "p2.patch")
    assert r.exit_code == 2 and "changed since it was profiled" in one_line_error(r.stderr)
    assert not (in_ws / "p2.patch").exists()
    r = cli("apply", "--rank", "1", "--patch", "p2.patch", "--force")
    assert r.exit_code == 0


def test_non_utf8_script_is_refused(in_ws):
    data = (in_ws / "train.py").read_bytes()
    (in_ws / "train.py").write_bytes(b"# \xff\xfe latin-1 bytes\n" + data)
    r = cli("apply", "--rank", "1", "--patch", "p3.patch", "--force")
    assert r.exit_code == 2 and "not UTF-8" in one_line_error(r.stderr)


@pytest.mark.parametrize("args, message", [
    (["--rank", "999"], "no plan ranked 999"),
    (["--strategy", "nope"], "no plan with strategy 'nope'"),
    (["--rank", "1", "--strategy", "full"], "not both"),
    (["--plan", "missing.json"], "does not exist"),
    (["--rank", "1", "--runtime", "vendored"], "--runtime must be one of inline, import"),
])
def test_apply_bad_selection(in_ws, args, message):
    r = cli("apply", *args)
    assert r.exit_code == 2
    assert message in one_line_error(r.stderr)


@pytest.mark.parametrize("unit", [
    "blocks.0'); import os; os.system('x'); ('",
    "blocks.0\nimport os",
    "__import__('os').system('x')",
    "blocks..0",
    "blocks.0 ",
])
def test_plan_with_code_in_a_unit_name_is_refused(in_ws, unit):
    doc = json.loads((in_ws / ".memadvise" / "plan.json").read_text())
    doc["plans"][0]["actions"][0]["unit"] = unit
    (in_ws / "evil.json").write_text(json.dumps(doc))
    r = cli("apply", "--plan", "evil.json", "--rank", "1", "--patch", "evil.patch")
    assert r.exit_code == 2
    assert "not a module path" in one_line_error(r.stderr)
    assert not (in_ws / "evil.patch").exists()


@pytest.mark.parametrize("field, value, message", [
    ("action", "exec", "not one of"),
    ("policy", "os.system", "selective policy"),
])
def test_plan_with_unknown_action_or_policy_is_refused(in_ws, field, value, message):
    doc = json.loads((in_ws / ".memadvise" / "plan.json").read_text())
    action = doc["plans"][0]["actions"][0]
    action[field] = value
    if field == "policy":
        action["action"] = "selective"
    (in_ws / "evil.json").write_text(json.dumps(doc))
    r = cli("apply", "--plan", "evil.json", "--rank", "1")
    assert r.exit_code == 2 and message in one_line_error(r.stderr)


@pytest.mark.parametrize("keep, policy, message", [
    ([["not_an_op_here", 0]], None, "never calls op 'not_an_op_here'"),
    ([["addmm", 999]], None, "keeps call 999"),
    (None, "save-nothing-known", "selective policy"),
    ([["addmm", -1]], None, "not a call index"),
])
def test_plan_with_bad_op_selectors_is_refused(in_ws, keep, policy, message):
    doc = json.loads((in_ws / ".memadvise" / "plan.json").read_text())
    plan = next(p for p in doc["plans"] if p["strategy"] == "full")
    for action in plan["actions"]:
        action.update(action="selective", policy=policy, keep=keep)
    (in_ws / "bad.json").write_text(json.dumps(doc))
    r = cli("apply", "--plan", "bad.json", "--strategy", "full", "--patch", "bad.patch")
    assert r.exit_code == 2, r.output
    assert message in one_line_error(r.stderr)
    assert not (in_ws / "bad.patch").exists()


def test_verify_reports_predicted_vs_measured(in_ws):
    r = cli("apply", "--strategy", "full", "--patch", "v.patch", "--verify", "--json")
    assert r.exit_code in (0, 1), r.output
    doc = json_out(r)
    rows = doc["verify"]["rows"]
    assert rows["peak_bytes"]["instrument"] == "torch.profiler memory timeline"  # not memadvise's recorder
    assert rows["peak_bytes"]["error"] <= 0.03
    assert rows["activation_bytes"]["error"] <= 0.03
    assert doc["verify"]["passed"] is True and r.exit_code == 0
    assert not list(in_ws.glob(".train.memadvise-verify-*"))  # temporary scripts removed


FAULTING = """
import torch
model = torch.nn.Linear(8, 8)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(12):
    opt.zero_grad()
    x = torch.randn(4, 8)
    scratch = torch.ones(64 * 2**20 // 4)  # 64 MiB, over glibc's largest mmap threshold: mapped fresh each step
    (model(x).sum() + scratch[0] * 0).backward()
    del scratch
    opt.step()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="getrusage minor faults: Linux")
def test_profile_counts_page_faults_per_timed_step(tmp_path):
    """Minor page faults per uninstrumented step (getrusage): a step that writes a fresh
    64 MiB block faults in its 16,384 pages, every step."""
    (tmp_path / "faulting.py").write_text(FAULTING)
    r = cli("profile", str(tmp_path / "faulting.py"), "--out", str(tmp_path / "p.json"), "--timing-steps", "4")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "p.json").read_text())["summary"]
    assert summary["minor_faults_per_step"] >= 0.9 * 64 * 2**20 / 4096


def test_a_budget_the_baseline_meets_recommends_nothing(in_ws):
    r = cli("suggest", "--budget", "100GiB", "--out", ".memadvise/plan_big.json")
    assert r.exit_code == 0, r.output
    assert "is at or above the baseline peak" in r.stdout and "recommendation:" not in r.stdout
    doc = json.loads((in_ws / ".memadvise" / "plan_big.json").read_text())
    assert doc["recommendation"] is None and doc["budget"]["met_by_baseline"] is True


@pytest.mark.parametrize("budget, hint", [("60", "60% of the baseline peak, or 60MiB?"), ("0.6", "60%")])
def test_a_bare_number_budget_exits_2_with_a_hint(in_ws, budget, hint):
    r = cli("suggest", "--budget", budget, "--out", ".memadvise/bad.json")
    assert r.exit_code == 2 and hint in one_line_error(r.stderr)


def test_apply_in_a_copy_of_the_project_patches_the_copy(in_ws, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(in_ws, copy, ignore=shutil.ignore_patterns(".git"))
    monkeypatch.chdir(copy)
    r = cli("apply", "--write")
    assert r.exit_code == 0, r.output
    assert "memadvise plan: begin" in (copy / "train.py").read_text()
    assert "memadvise plan: begin" not in (in_ws / "train.py").read_text()


def test_apply_refuses_a_script_outside_the_project_unless_named(in_ws, tmp_path, monkeypatch):
    plan = json.loads((in_ws / ".memadvise" / "plan.json").read_text())
    plan["script"]["path"] = str(in_ws / "train.py")
    plan["script"]["cwd"] = str(in_ws)  # made there, applied from elsewhere
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    monkeypatch.chdir(tmp_path)
    r = cli("apply", "--plan", "plan.json", "--patch", "p.patch")
    assert r.exit_code == 2 and "is outside this project" in one_line_error(r.stderr)
    r = cli("apply", "--plan", "plan.json", "--patch", "p.patch", "--script", str(in_ws / "train.py"))
    assert r.exit_code == 0, r.output
