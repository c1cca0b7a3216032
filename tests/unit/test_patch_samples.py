"""The patch of every strategy (with the optimizer's traffic changes) on every sample script
and the Hugging Face Llama script: it parses, fits 100 columns, and `git apply -R` gives
the script back byte for byte. Hand-made plan documents: no profile, no torch run."""

import subprocess
from pathlib import Path

import pytest

from memadvise.apply.apply import prepare
from memadvise.apply.patch import sha256_text
from memadvise.schema.plan import FORMAT, SCHEMA_VERSION, PlanFile

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {  # script, a unit, the optimizer's class
    "mlp": (ROOT / "sample_models" / "mlp.py", "blocks.0", "SGD"),
    "gpt": (ROOT / "sample_models" / "gpt.py", "blocks.0", "AdamW"),
    "resnet": (ROOT / "sample_models" / "resnet.py", "stages.0", "SGD"),
    "hf_llama": (ROOT / "tests" / "scripts" / "hf_llama.py", "model.layers.0", "AdamW"),
}
ACTIONS = {
    "checkpoint": {"action": "checkpoint", "policy": None},
    "selective": {"action": "selective", "policy": "save-matmul"},
    "offload": {"action": "offload", "policy": None},
}


def plan_file(script: Path, unit: str, optimizer_class: str, strategy: str, module: str) -> PlanFile:
    figures = {"peak_bytes": 100, "activation_bytes": 50, "step_time_s": 1.0, "overhead": 0.1}
    doc = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION,
        "script": {"path": str(script), "sha256": sha256_text(script.read_text())},
        "baseline": {"peak_bytes": 200, "activation_bytes": 100, "step_time_s": 1.0},
        "model": {"expression": "model", "function": "main", "frame_line": None, "module": module},
        "optimizer": {"expression": "opt", "function": "main", "frame_line": None, "class": optimizer_class},
        "plans": [{"rank": 1, "strategy": strategy, "predicted": figures,
                   "actions": [dict(ACTIONS[strategy], unit=unit, restore_buffers=strategy == "checkpoint")]}],
        "traffic": {"plans": [
            {"strategy": "optimizer-fused", "change": {"optimizer": "fused"}, "predicted": figures, "caveat": "c"},
            {"strategy": "set-to-none", "change": {"set_to_none": True}, "predicted": figures, "caveat": "c"},
        ]},
    }
    return PlanFile.from_doc(doc, "plan.json")


@pytest.mark.parametrize("runtime", ["inline", "import"])
@pytest.mark.parametrize("strategy", list(ACTIONS))
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_patch_parses_fits_and_reverts_byte_for_byte(tmp_path, monkeypatch, name, strategy, runtime):
    monkeypatch.chdir(tmp_path)  # the diff names the script relative to here
    source_path, unit, optimizer_class = SCRIPTS[name]
    script = tmp_path / source_path.name
    script.write_bytes(source_path.read_bytes())
    module = "transformers.models.llama" if name == "hf_llama" else "__main__"
    pf = plan_file(script, unit, optimizer_class, strategy, module)
    prepared = prepare(pf, pf.plans[0], traffic=["optimizer-fused", "set-to-none"], runtime=runtime)
    new = prepared.patch.new_source
    compile(new, str(script), "exec")
    assert ("\nclass MemadviseForward:" in new) == (runtime == "inline")  # module level: pickle finds it
    added = [line[1:] for line in prepared.patch.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert max(len(line) for line in added) <= 100
    assert f"opt = torch.optim.{optimizer_class}(model.parameters()" in new and "fused=True" in new
    assert ("# Side effect: model.config.use_cache = False" in new) == (name == "hf_llama")
    original = script.read_bytes()
    (tmp_path / "plan.patch").write_text(prepared.patch.diff)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "apply", "plan.patch"], cwd=tmp_path, check=True)
    assert script.read_bytes() == new.encode()
    subprocess.run(["git", "apply", "-R", "plan.patch"], cwd=tmp_path, check=True)
    assert script.read_bytes() == original
