"""Where the plan goes in a script, and diffs that `patch` accepts byte for byte."""

import subprocess
import textwrap

import pytest

from memadvise._errors import PlanRefused
from memadvise.apply.patch import (
    BEGIN_MARK,
    definitions_line,
    find_insertion,
    make_patch,
    make_patch_multi,
    plan_block,
    runtime_source,
    unified_diff,
)
from memadvise.schema.actions import Action
from memadvise.schema.plan import AppliedPlan, Prediction


def src(text):
    return textwrap.dedent(text).lstrip("\n")


def test_inside_main_after_the_last_assignment_before_the_loop():
    s = src("""
        def main():
            model = Net()
            model = model.to("cpu")
            opt = make_opt(model)
            for step in range(10):
                model = model  # after the training loop started: ignored
                opt.step()
    """)
    assert find_insertion(s, "model", "main", before_line=6) == (3, 4)


def test_module_level_inside_if_name_main():
    s = src("""
        import torch
        if __name__ == "__main__":
            model = build(
                width=3,
            )
            train(model)
    """)
    assert find_insertion(s, "model", "<module>", before_line=6) == (5, 4)


def test_attribute_expression_and_with_statement():
    s = src("""
        def run(self):
            self.model = Net()
            with make() as net:
                go(net)
    """)
    assert find_insertion(s, "self.model", "run", before_line=4) == (2, 4)
    assert find_insertion(s, "net", "run", before_line=5) == (3, 8)


def test_unknown_variable_explains_what_to_do():
    with pytest.raises(PlanRefused, match="apply_plan"):
        find_insertion("x = 1\n", "model", "<module>", before_line=None)


def test_expression_that_is_not_a_name_is_refused():
    with pytest.raises(PlanRefused):
        find_insertion("x = 1\n", "model; import os", "<module>", before_line=None)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_diff_round_trips_through_patch(tmp_path, newline, final_newline):
    lines = ["import torch", "model = Net()", "train(model)"]
    source = newline.join(lines) + (newline if final_newline else "")
    (tmp_path / "a.py").write_bytes(source.encode())
    result = make_patch(tmp_path / "a.py", source, "memadvise_apply(model, [])\n", 3 if not final_newline else 2, 0, "a.py")
    (tmp_path / "p.patch").write_text(result.diff)
    subprocess.run(["patch", "-p1", "-s", "-i", "p.patch"], cwd=tmp_path, check=True)
    patched = (tmp_path / "a.py").read_bytes().decode()
    assert patched == result.new_source
    assert patched.count(newline) == patched.count("\n")  # one line-ending style throughout


def test_already_patched_is_refused(tmp_path):
    with pytest.raises(PlanRefused, match="already contains"):
        make_patch(tmp_path / "a.py", f"x = 1\n{BEGIN_MARK} (rank 1) ---\n", "y\n", 1, 0, "a.py")


def test_unified_diff_header():
    d = unified_diff("a\n", "a\nb\n", "dir/x.py")
    assert d.splitlines()[:3] == ["diff --git a/dir/x.py b/dir/x.py", "--- a/dir/x.py", "+++ b/dir/x.py"]


def _plan(units, action="selective", policy="save-matmul"):
    return AppliedPlan(
        rank=1, strategy="level-2",
        actions=tuple(Action(u, action, policy if action == "selective" else None) for u in units),
        predicted=Prediction(peak_bytes=3 << 30, activation_bytes=1 << 30, step_time_s=1.0, overhead=0.123456),
    )


BASELINE = Prediction(peak_bytes=5 << 30, activation_bytes=3 << 30, step_time_s=1.0)


@pytest.mark.parametrize("indent", [0, 8])
@pytest.mark.parametrize("mode", ["inline", "import"])
def test_plan_block_reads_in_one_screen(indent, mode):
    """Lines of at most 100 columns (with the site's indentation), the op set named once,
    unit names never split, the side effect said."""
    units = [f"model.encoder.layers.{i}.self_attention_with_a_long_name" for i in range(12)]
    block = plan_block(_plan(units), expression="model", baseline=BASELINE, plan_path=".memadvise/plan.json",
                       restore={units[0]: True}, runtime_mode=mode, hugging_face=True, indent=indent)
    lines = block.splitlines()
    assert max(len(line) for line in lines) + indent <= 100, max(lines, key=len)
    assert sum("'addmm'" in line for line in lines) == 1
    assert sum("SAVE_MATMUL" in line for line in lines) == 1 + len(units)  # defined once, used per unit
    comments = "\n".join(line for line in lines if line.startswith("#"))
    assert all(u in comments for u in units)
    assert "model.config.use_cache = False" in comments
    assert ("from memadvise.apply.runtime import memadvise_apply" in block) == (mode == "import")


def test_runtime_source_fits_100_columns_and_defines_what_the_call_uses():
    source = runtime_source(["MemadviseForward", "memadvise_apply", "MemadviseAutocast", "memadvise_rebuild_optimizer"])
    assert max(len(line) for line in source.splitlines()) <= 100
    namespace: dict = {}
    exec(compile(source, "<patch>", "exec"), namespace)  # self-contained: no import of memadvise
    assert {"MemadviseForward", "memadvise_apply", "MemadviseAutocast", "memadvise_rebuild_optimizer"} <= set(namespace)


def test_definitions_go_after_the_opening_imports():
    source = src('''
        """Doc."""
        from __future__ import annotations
        import torch

        x = 1
        import os
    ''')
    assert definitions_line(source) == 3
    assert definitions_line("x = 1\n") == 0


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_replacements_round_trip_through_patch(tmp_path, newline):
    source = newline.join(["import torch", "opt = make(1)", "opt.zero_grad(False)", ""])
    (tmp_path / "a.py").write_bytes(source.encode())
    result = make_patch_multi(tmp_path / "a.py", source, [(2, 0, "# note\n")], "a.py",
                              replacements={3: "opt.zero_grad(set_to_none=True)"})
    assert result.new_source == newline.join(["import torch", "opt = make(1)", "# note",
                                              "opt.zero_grad(set_to_none=True)", ""])
    (tmp_path / "p.patch").write_text(result.diff)
    subprocess.run(["patch", "-p1", "-s", "-i", "p.patch"], cwd=tmp_path, check=True)
    assert (tmp_path / "a.py").read_bytes() == result.new_source.encode()
    subprocess.run(["patch", "-p1", "-R", "-s", "-i", "p.patch"], cwd=tmp_path, check=True)
    assert (tmp_path / "a.py").read_bytes() == source.encode()
