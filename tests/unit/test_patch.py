"""Where the plan goes in a script, and diffs that `patch` accepts byte for byte."""

import subprocess
import textwrap

import pytest

from memadvise._errors import PlanRefused
from memadvise.apply.patch import BEGIN_MARK, find_insertion, make_patch, unified_diff


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
