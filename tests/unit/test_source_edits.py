"""Traffic changes written into the script's own calls: the optimizer's constructor takes
the flag (so its checks run), zero_grad takes set_to_none=True; elsewhere the fallback."""

import textwrap

import pytest
import torch

from memadvise.apply.runtime import memadvise_rebuild_optimizer
from memadvise.apply.source_edits import apply_spans, constructor_spans, zero_grad_spans


def edited(source, spans):
    lines = source.splitlines()
    for number, text in apply_spans(source, spans).items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("line, variant, expected", [
    ("opt = torch.optim.AdamW(params, lr=1e-3)", "fused", "opt = torch.optim.AdamW(params, lr=1e-3, fused=True)"),
    ("opt = torch.optim.AdamW(params, lr=1e-3, foreach=args.foreach)", "fused",
     "opt = torch.optim.AdamW(params, lr=1e-3, foreach=False, fused=True)"),
    ("opt = AdamW(params, fused=True)  # fast", "foreach", "opt = AdamW(params, fused=False, foreach=True)  # fast"),
    ("opt = torch.optim.AdamW()", "for-loop", "opt = torch.optim.AdamW(foreach=False)"),
    ("opt = torch.optim.AdamW(params, lr=1e-3,)", "fused", "opt = torch.optim.AdamW(params, lr=1e-3, fused=True,)"),
    ("opt = torch.optim.AdamW(params, lr='é')", "fused", "opt = torch.optim.AdamW(params, lr='é', fused=True)"),
])
def test_constructor_call_takes_the_flag(line, variant, expected):
    source = f"import torch\n{line}\n"
    spans = constructor_spans(source, "opt", 2, "AdamW", variant)
    assert edited(source, spans) == f"import torch\n{expected}\n"
    compile(edited(source, spans), "<edited>", "exec")


def test_multi_line_constructor_call():
    source = textwrap.dedent("""\
        opt = torch.optim.SGD(
            model.parameters(),
            lr=0.1,
        )
    """)
    spans = constructor_spans(source, "opt", 4, "SGD", "foreach")
    assert edited(source, spans).splitlines()[2] == "    lr=0.1, foreach=True,"


@pytest.mark.parametrize("source", [
    "opt = build_optimizer(model)\n",  # a factory: nothing to edit
    "opt = torch.optim.SGD(model.parameters())\n",  # another class than the profiled one
])
def test_no_constructor_call_to_edit(source):
    assert constructor_spans(source, "opt", 1, "AdamW", "fused") is None


def test_zero_grad_calls_pass_set_to_none():
    source = textwrap.dedent("""\
        def train(opt, other):
            for _ in range(3):
                opt.zero_grad(set_to_none=False)
                opt.zero_grad(False)
                opt.zero_grad()
                opt.zero_grad(set_to_none=True)
                other.zero_grad(set_to_none=False)
    """)
    spans, calls = zero_grad_spans(source, "opt", "train")
    assert calls == 4
    assert edited(source, spans).splitlines()[2:7] == [
        "        opt.zero_grad(set_to_none=True)", "        opt.zero_grad(set_to_none=True)",
        "        opt.zero_grad()", "        opt.zero_grad(set_to_none=True)", "        other.zero_grad(set_to_none=False)",
    ]
    assert zero_grad_spans(source, "optimizer", "train") == ([], 0)


def test_rebuilt_optimizer_keeps_groups_and_runs_the_constructor_checks():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.5}, {"params": [model.bias]}], lr=0.1, momentum=0.9,
                          foreach=False)
    rebuilt = memadvise_rebuild_optimizer(opt, foreach=True)
    assert type(rebuilt) is torch.optim.SGD
    assert [g["lr"] for g in rebuilt.param_groups] == [0.5, 0.1]
    assert all(g["momentum"] == 0.9 and g["foreach"] is True for g in rebuilt.param_groups)
    assert [g["params"] for g in rebuilt.param_groups] == [g["params"] for g in opt.param_groups]
    with pytest.raises(RuntimeError):  # the constructor refuses fused with foreach
        memadvise_rebuild_optimizer(opt, fused=True, foreach=True)
