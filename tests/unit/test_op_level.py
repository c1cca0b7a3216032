"""Per-op data and predictions on a chain of blocks of four ops, derived by hand: block
``i`` runs addmm (1000 B), gelu (2000 B), addmm (3000 B), mul (500 B), 10 µs each; every
op saves its input; the mul's output is the next block's input."""

import numpy as np
import pytest

from memadvise.analysis.simulator import Simulator
from memadvise.analysis.units import UnitTree
from memadvise.planning.solver import ranked_keep_sets
from memadvise.report.suggest_report import describe_actions, recompute_line
from memadvise.schema.plan import PlanEntry
from memadvise.schema.actions import Action
from memadvise.schema.profile import Profile
from memadvise.testing.synthetic import op_chain_profile


@pytest.fixture(scope="module")
def chain():
    doc = op_chain_profile(3, ("addmm", "gelu", "addmm", "mul"), [[1000, 2000, 3000, 500]] * 3, 10.0, 100)
    sim = Simulator(Profile(doc))
    return sim, UnitTree(sim.profile, sim.trace)


def test_call_ops_by_hand(chain):
    sim, tree = chain
    ops = tree.call_ops(tree.by_name["blocks.1"])[0]
    assert ops.name == ["addmm", "gelu", "addmm", "mul"]
    assert ops.k.tolist() == [0, 0, 1, 0]
    assert ops.out_bytes.tolist() == [1000, 2000, 3000, 500]
    assert ops.saved.tolist() == [True, True, True, False]  # the mul's output is saved by the next block
    assert ops.counts() == {"addmm": 2, "gelu": 1, "mul": 1}
    assert tree.keepable(tree.by_name["blocks.1"]) == [("addmm", 0), ("gelu", 0), ("addmm", 1), ("mul", 0)]


@pytest.mark.parametrize("action, recomputed, activation_freed", [
    # checkpoint: the mul is past the last saved tensor (early stop): 3 ops re-run
    (Action("blocks.1", "checkpoint"), [("addmm", 2, 20.0, 4000), ("gelu", 1, 10.0, 2000)], 6000),
    (Action("blocks.1", "selective", "save-linear"), [("gelu", 1, 10.0, 2000)], 2000),
    (Action("blocks.1", "selective", keep=[("addmm", 1)]), [("gelu", 1, 10.0, 2000), ("addmm", 1, 10.0, 1000)], 3000),
    (Action("blocks.1", "selective", keep=[("gelu", 0)]), [("addmm", 2, 20.0, 4000)], 4000),
])
def test_recomputed_ops_and_memory_by_hand(chain, action, recomputed, activation_freed):
    sim, _tree = chain
    base = sim.baseline()
    rows = sim.recomputed_ops([action])
    assert [(r["op"], r["calls"], r["us"], r["freed_bytes"]) for r in rows] == recomputed
    assert base.activation_bytes - sim.simulate([action]).activation_bytes == activation_freed
    assert sim.cost_us([action]) == sum(r[2] for r in recomputed)  # no fixed costs in this profile


def test_keep_problems(chain):
    _sim, tree = chain
    u = tree.by_name["blocks.1"]
    assert tree.keep_problem(u, (("addmm", 1), ("gelu", None))) is None
    assert "never calls op 'bmm'" in tree.keep_problem(u, (("bmm", 0),))
    assert "calls 'addmm' 2 time(s)" in tree.keep_problem(u, (("addmm", 2),))
    assert tree.selective_problem(u, (("softmax", None),)) == "no selected op to keep (same as checkpoint)"


def test_ranked_keep_sets_keep_time_dense_ops_first():
    doc = op_chain_profile(2, ("addmm", "gelu", "addmm", "mul"), [[1000, 8000, 1000, 100]] * 2,
                           [[80.0, 4.0, 40.0, 1.0]] * 2, 100)
    sim = Simulator(Profile(doc))
    tree = UnitTree(sim.profile, sim.trace)
    u = tree.by_name["blocks.0"]
    sets = ranked_keep_sets(tree.call_ops(u)[0], tree.keepable(u))
    # µs per byte: addmm:0 0.08, addmm:1 0.04, mul 0.01, gelu 0.0005
    assert sets and all(s == (("addmm", 0), ("addmm", 1), ("mul", 0))[: len(s)] for s in sets)
    assert np.all(np.diff([len(s) for s in sets]) > 0)


def test_report_lines():
    plan = {"rank": 1, "strategy": "x", "actions": [
        {"unit": "blocks.0", "action": "selective", "policy": None, "keep": [["addmm", 0], ["addmm", 2], ["mm", None]]},
        {"unit": "blocks.1", "action": "selective", "policy": "save-linear", "keep": None},
        {"unit": "blocks.2", "action": "checkpoint", "policy": None, "keep": None}],
        "recompute": [{"op": "gelu", "calls": 2, "us": 104.6, "freed_bytes": 32768},
                      {"op": "clone", "calls": 8, "us": 56.1, "freed_bytes": 0},
                      {"op": "mul", "calls": 6, "us": 36.0, "freed_bytes": 8192},
                      {"op": "add", "calls": 2, "us": 10.0, "freed_bytes": 0}],
        "predicted": {"peak_bytes": 0, "activation_bytes": 0, "step_time_s": 0.0, "overhead": 0.0}}
    plan = PlanEntry.from_json(plan)
    assert describe_actions(plan) == ["  selective (keeps addmm:0,2 mm): blocks.0", "  selective save-linear: blocks.1",
                                      "  checkpoint: blocks.2"]
    assert recompute_line(plan) == "gelu ×2 105 µs −32.0 KiB, clone ×8 56 µs, mul ×6 36 µs −8.0 KiB, +1 ops 10 µs"
