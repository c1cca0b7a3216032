"""Plan schema version 2: op selectors and presets, their round trip, version 1 files,
refusals of malformed selectors, and the runtime policy's per-op call count."""

import json

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from memadvise._errors import InputFileError
from memadvise.apply.runtime import memadvise_apply
from memadvise.apply.runtime_apply import runtime_actions
from memadvise.schema.actions import PRESETS, Action, preset_keep
from memadvise.schema.ops import LINEAR_OPS, SAVE_MATMUL_OPS
from memadvise.schema.plan import SCHEMA_VERSION, read_plan, write_plan


def plan_doc(actions, version=SCHEMA_VERSION):
    return {"format": "memadvise-plan", "schema_version": version,
            "baseline": {"peak_bytes": 1, "activation_bytes": 1, "step_time_s": 1.0},
            "script": {"path": "/x.py", "sha256": "0"},
            "plans": [{"rank": 1, "strategy": "s", "actions": actions,
                       "predicted": {"peak_bytes": 1, "activation_bytes": 1, "step_time_s": 1.0, "overhead": 0.0}}]}


def test_presets():
    assert PRESETS["save-matmul"] == SAVE_MATMUL_OPS
    assert PRESETS["save-linear"] == LINEAR_OPS == {"mm", "addmm", "_addmm_activation"}
    assert {"mm", "max", "_scaled_dot_product_flash_attention"} <= PRESETS["save-torchtitan"]
    assert "bmm" not in PRESETS["save-torchtitan"]
    assert PRESETS["checkpoint"] == frozenset()


def test_keep_equal_to_a_preset_is_the_preset():
    a = Action("blocks.0", "selective", keep=(("mm", None), ("addmm", None), ("_addmm_activation", None)))
    assert a == Action("blocks.0", "selective", "save-linear") and a.keep is None and a.policy == "save-linear"
    assert Action("b", "selective", keep=()) == Action("b", "selective", "checkpoint")
    custom = Action("b", "selective", keep=[["mm", 1], "addmm", ["addmm", 0], ["mm", 1]])
    assert custom.policy is None
    assert custom.keep == (("addmm", None), ("mm", 1))  # deduplicated; every call absorbs call 0
    assert custom.kept() == custom.keep
    assert Action("b", "selective", "save-linear").kept() == preset_keep("save-linear")


def test_plan_v2_round_trip(tmp_path):
    actions = [Action("blocks.0", "selective", keep=[["addmm", 0], ["mm", None]]),
               Action("blocks.1", "selective", "save-linear"), Action("blocks.2", "checkpoint")]
    path = write_plan(plan_doc([a.to_json() for a in actions]), tmp_path / "plan.json")
    raw = json.loads(path.read_text())
    assert raw["plans"][0]["actions"][0] == {"unit": "blocks.0", "action": "selective", "policy": None,
                                             "keep": [["addmm", 0], ["mm", None]]}
    assert raw["plans"][0]["actions"][1]["policy"] == "save-linear" and raw["plans"][0]["actions"][1]["keep"] is None
    back = [Action.from_json(a) for a in read_plan(path).plans[0]["actions"]]
    assert back == actions


def test_plan_v1_is_read(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(plan_doc([{"unit": "blocks.0", "action": "selective", "policy": "save-matmul"},
                                         {"unit": "blocks.1", "action": "checkpoint", "policy": None}], version=1)))
    acts = [Action.from_json(a) for a in read_plan(path).plans[0]["actions"]]
    assert acts[0].kept() == preset_keep("save-matmul") and acts[1].kept() == ()


@pytest.mark.parametrize("action, message", [
    ({"unit": "b", "action": "selective", "policy": "save-everything"}, "is not one of"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": [["addmm", -1]]}, "not a call index"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": [["addmm", "0"]]}, "not a call index"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": [["addmm", True]]}, "not a call index"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": [["os.system('x')", 0]]}, "not an aten op"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": [["addmm", 0, 1]]}, "is not \\[op, k\\]"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": "addmm"}, "not a list"),
    ({"unit": "b", "action": "selective", "policy": None, "keep": None}, "neither a preset"),
    ({"unit": "b", "action": "checkpoint", "policy": None, "keep": [["addmm", 0]]}, "keeps no ops"),
    ({"unit": "b", "action": "selective", "policy": "save-linear", "keep": [["addmm", 0]]}, "other ops"),
])
def test_malformed_actions_are_refused(tmp_path, action, message):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_doc([action])))
    with pytest.raises(InputFileError, match=message):
        read_plan(path)


def test_v1_plan_with_keep_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_doc([{"unit": "b", "action": "selective", "policy": None, "keep": [["mm", 0]]}], 1)))
    with pytest.raises(InputFileError, match="version-1"):
        read_plan(path)


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def recomputed(keep, calls=1):
    """addmm calls run again in backward under a selective plan keeping ``keep``, and
    whether the gradients equal the unpatched model's."""
    torch.manual_seed(0)
    ref = nn.Sequential(Block())
    model = nn.Sequential(Block())
    model.load_state_dict(ref.state_dict())
    x = torch.randn(4, 8)
    action = Action("0", "selective", keep=keep)
    memadvise_apply(model, runtime_actions([action]))
    for m in (ref, model):
        y = x
        for _ in range(calls):
            y = m(y)
        loss = y.square().sum()
        if m is model:
            with Count() as count:
                loss.backward()
        else:
            loss.backward()
    same = all(torch.equal(p.grad, q.grad) for p, q in zip(ref.parameters(), model.parameters()))
    return count.names.count("addmm"), same


# The block's third addmm makes no tensor its backward needs (the loss is outside the
# unit), so the recompute stops before it (early stop): at most calls 0 and 1 re-run.
@pytest.mark.parametrize("keep, expected", [
    ((), 2), ([["addmm", None]], 0), ([["addmm", 0]], 1), ([["addmm", 1]], 1), ([["addmm", 2]], 2),
    ([["addmm", 0], ["addmm", 2]], 1), ([["addmm", 0], ["addmm", 1]], 0),
])
def test_runtime_keeps_the_kth_call(keep, expected):
    assert recomputed(keep) == (expected, True)
    assert recomputed(keep, calls=2) == (2 * expected, True)  # counted afresh in each checkpoint call
