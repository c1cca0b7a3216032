"""A Hugging Face transformers causal LM built from a config: profile, suggest, patch,
and the patched script trains with the same gradients."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from memadvise.apply.apply import prepare
from memadvise.collect.api import profile_script
from memadvise.planning.suggest import suggest
from memadvise.schema.plan import PlanFile

TESTS = Path(__file__).resolve().parents[1]


def test_hf_llama_end_to_end(tmp_path):
    script = tmp_path / "hf_llama.py"
    script.write_text((TESTS / "scripts" / "hf_llama.py").read_text())
    profile = profile_script(script, [], warmup=1, timing_steps=1, steps=2, calibrate_overheads=False,
                             out=tmp_path / "profile.json")
    units = {u["name"] for u in profile.units}
    assert {"model.layers.0", "model.layers.1"} <= units
    # with its profile at hand, apply checks a per-op keep list (the solver may pick one)
    doc = suggest(profile, profile_path=str(tmp_path / "profile.json"))
    plans = {p["strategy"]: p for p in doc["plans"]}
    full = plans["full"]
    assert {a["unit"] for a in full["actions"]} == {"model.layers.0", "model.layers.1"}
    assert full["predicted"]["activation_bytes"] < doc["baseline"]["activation_bytes"]
    plan_file = PlanFile.from_doc(doc, tmp_path / "plan.json")
    jobs = [[str(script), []]]
    for plan in (full, doc["plans"][0]):
        patched = tmp_path / f"patched_{plan['rank']}.py"
        patched.write_text(prepare(plan_file, plan).patch.new_source)
        jobs.append([str(patched), []])
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, str(TESTS / "grad_dump.py"), str(tmp_path / "jobs.json"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = torch.load(tmp_path / "0.pt")
    for i in (1, 2):
        got = torch.load(tmp_path / f"{i}.pt")
        assert all(torch.equal(a, b) for a, b in zip(ref["grads"], got["grads"]))
