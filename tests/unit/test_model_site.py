"""Where `apply` puts a plan (memadvise.source.find_model_site): after the last statement
that built or moved the model on the path that ran, out of `if` branches, before the
wrappers that change unit paths; at the caller when the model is a parameter."""

import textwrap

import pytest

from memadvise._errors import PlanRefused
from memadvise.schema.profile import ModelInfo
from memadvise.source import find_model_site

NANOGPT = textwrap.dedent("""\
    import torch
    exec(open('configurator.py').read())
    if init_from == 'scratch':
        model = GPT(conf)
    elif init_from == 'resume':
        model = GPT(conf)
        model.load_state_dict(sd)
    if block_size < model.config.block_size:
        model.crop_block_size(block_size)
    model.to(device)
    optimizer = model.configure_optimizers()
    if compile:
        unoptimized_model = model
        model = torch.compile(model)
    if ddp:
        model = DDP(model, device_ids=[0])
    while True:
        loss = model(X, Y)
        optimizer.step()
""")


def frame(line, executed=None, function="<module>", expression="model", first_line=None):
    return {"function": function, "first_line": first_line, "line": line, "expression": expression,
            "parameter": None, "executed_lines": executed}


def test_nanogpt_read_statically_goes_after_to_device():
    site = find_model_site(NANOGPT, [frame(19)], ["transformer.h.0"])
    assert (site.line, site.indent, site.strip_prefix) == (10, 0, "")
    assert "before `model = torch.compile(model)` (line 14), which changes the unit paths" in site.where


def test_compiled_and_wrapped_units_lose_both_prefixes():
    executed = [1, 2, 3, 4, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    site = find_model_site(NANOGPT, [frame(19, executed)], ["module._orig_mod.transformer.h.0"])
    assert site.line == 10 and site.strip_prefix == "module._orig_mod"


def test_a_branch_that_ran_is_left_for_the_statement_after_its_if():
    source = "if a:\n    model = A()\nelse:\n    model = B()\nfor x in data:\n    model(x)\n"
    site = find_model_site(source, [frame(6, [1, 2, 5, 6])])
    assert (site.line, site.indent) == (4, 0)


def test_a_wrapper_in_the_same_if_keeps_the_plan_inside_before_it():
    source = "if a:\n    model = A()\n    model = DDP(model)\nfor x in data:\n    model(x)\n"
    site = find_model_site(source, [frame(5, [1, 2, 3, 4, 5])], ["module.l"])
    assert (site.line, site.indent, site.strip_prefix) == (2, 4, "module")


def test_built_and_wrapped_in_one_statement_goes_after_it_through_the_wrapper():
    source = "model = DDP(Net())\nfor x in data:\n    model(x)\n"
    site = find_model_site(source, [frame(3, [1, 2, 3])], ["module.l"])
    assert site.line == 1 and site.strip_prefix == "" and "through the wrapper" in site.where


def test_a_parameter_goes_to_the_caller_that_built_it():
    source = textwrap.dedent("""\
        def train_one_epoch(model, data):
            model.train()
            for x in data:
                model(x)
        def main():
            model = Net()
            model.to('cpu')
            for epoch in range(3):
                train_one_epoch(model, data)
        main()
    """)
    frames = [frame(4, [2, 3, 4], "train_one_epoch", first_line=1), frame(9, [6, 7, 8, 9], "main", first_line=5),
              frame(10, [1, 5, 10], expression=None)]
    site = find_model_site(source, frames)
    assert (site.line, site.indent) == (7, 4) and "in main(), which passes it on" in site.where


def test_a_method_call_in_the_training_loop_is_no_site():
    source = "model = Net()\nfor x in data:\n    model.train()\n    model(x)\n"
    assert find_model_site(source, [frame(4, [1, 2, 3, 4])]).line == 1


def test_no_site_says_why_and_names_the_line_to_add():
    source = "def train(model):\n    for x in data:\n        model(x)\n"
    with pytest.raises(PlanRefused) as err:
        find_model_site(source, [frame(3, [2, 3], "train", first_line=1)])
    assert "`model` is a parameter of train()" in str(err.value)
    assert "add this line where the model is built: memadvise.apply_plan(model, PLAN_FILE)" in str(err.value)


def test_old_profiles_without_frames_still_place_the_plan():
    old = ModelInfo(found=True, expression="model", function="<module>", frame_line=19)  # no frames recorded
    site = find_model_site(NANOGPT, old.site_frames())
    assert site.line == 10


def test_a_model_a_library_wrapped_is_planned_where_the_script_built_it():
    # HF Trainer under torchrun: the root that trained is DDP(model), built by the Trainer
    source = "model = Net()\ntrainer = Trainer(model=model)\ntrainer.train()\n"
    f = dict(frame(3, [1, 2, 3]), wrapped_in="module")
    site = find_model_site(source, [f], ["module.h.0", "module.h.1"])
    assert site.line == 1 and site.strip_prefix == "module"


def test_self_model_trained_in_one_method_is_planned_where_init_builds_it():
    source = textwrap.dedent("""\
        class Trainer:
            def __init__(self):
                self.model = Net()
                self.model.to('cpu')
                self.opt = SGD(self.model.parameters())
            def fit(self):
                for x in data:
                    self.model(x).sum().backward()
                    self.opt.step()
        Trainer().fit()
    """)
    frames = [frame(9, [7, 8, 9], "fit", expression="self.model", first_line=6)]
    site = find_model_site(source, frames)
    assert (site.line, site.indent, site.expression) == (4, 8, "self.model")
    assert site.where.endswith("in Trainer.__init__()")
