"""An applied plan is safe where training code copies, pickles or compiles the model: on
every sample model and a Hugging Face Llama, for every strategy, a deep copy (what
``AveragedModel`` and EMA copies make) runs its own weights, ``torch.save(model)`` round
trips, the ``state_dict`` keys do not change, and gradients stay bit-equal to an unplanned
model's (dropout included). In process, tiny models: seconds."""

import copy
import importlib.util
import io
import sys

import pytest
import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel

import memadvise
from conftest import SAMPLES
from memadvise.apply.runtime import MemadviseAutocast, MemadviseForward, memadvise_apply
from memadvise.schema.actions import Action


def _sample(name):
    """A sample script as an importable module (pickle finds its classes by name)."""
    module_name = f"memadvise_sample_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, SAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def mlp():
    model = _sample("mlp").MLP(16, 3, 4)
    return model, ["blocks.0", "blocks.1", "blocks.2"], lambda: ((torch.randn(4, 16),), {})


def gpt():
    model = _sample("gpt").GPT(64, 16, 2, 2, 32, 0.1)  # dropout 0.1: replayed masks checked too
    return model, ["blocks.0", "blocks.1.attn"], lambda: ((torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))), {})


def resnet():
    model = _sample("resnet").ResNet(4, 1, 2, 10)  # BatchNorm: buffers restored after recompute
    return model, ["stages.0", "stages.1.0"], lambda: ((torch.randn(2, 3, 8, 8),), {})


def llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    cfg._attn_implementation = "eager"
    # what the plan's runtime sets (a KV cache would grow twice under recompute); here that
    # changes the last bits of the gradients, so the reference runs without a cache too
    cfg.use_cache = False
    model = transformers.LlamaForCausalLM(cfg)

    def inputs():
        ids = torch.randint(0, 64, (2, 8))
        return (), {"input_ids": ids, "labels": ids}

    return model, ["model.layers.0", "model.layers.1"], inputs


MODELS = {"mlp": mlp, "gpt": gpt, "resnet": resnet, "llama": llama}
STRATEGIES = {
    "checkpoint": lambda u: Action(u, "checkpoint"),
    "selective": lambda u: Action(u, "selective", "save-matmul"),
    "offload": lambda u: Action(u, "offload"),
}


def loss_of(model, inputs):
    args, kwargs = inputs
    out = model(*args, **kwargs)
    out = getattr(out, "loss", out)  # Hugging Face: an output object
    return out if out.dim() == 0 else out.square().sum()


def step(model, make_inputs, seed=0, owner=None):
    """One forward and backward from a fixed seed: the gradients of ``owner`` (default
    ``model``), by parameter name."""
    owner = owner or model
    torch.manual_seed(seed)
    inputs = make_inputs()
    owner.zero_grad(set_to_none=True)
    loss_of(model, inputs).backward()
    return {n: p.grad.clone() for n, p in owner.named_parameters() if p.grad is not None}


def assert_same(a, b):
    assert a.keys() == b.keys()
    bad = [n for n in a if not torch.equal(a[n], b[n])]
    assert not bad, bad


@pytest.fixture(scope="module", params=[(m, s) for m in MODELS for s in STRATEGIES], ids="-".join)
def planned(request):
    name, strategy = request.param
    torch.manual_seed(0)
    ref, units, make_inputs = MODELS[name]()
    model = copy.deepcopy(ref)
    memadvise.apply_plan(model, [STRATEGIES[strategy](u) for u in units])
    return {"ref": ref, "model": model, "units": units, "inputs": make_inputs, "strategy": strategy}


def test_plan_is_recorded_and_gradients_unchanged(planned):
    model = planned["model"]
    for unit in planned["units"]:
        module = model.get_submodule(unit)
        assert isinstance(module.forward, MemadviseForward)
        assert module._memadvise_plan == {"selective": "selective:save-matmul"}.get(planned["strategy"], planned["strategy"])
    assert_same(step(planned["ref"], planned["inputs"]), step(model, planned["inputs"]))


def test_deepcopy_recomputes_with_its_own_weights(planned):
    model = planned["model"]
    twin = copy.deepcopy(model)
    for unit in planned["units"]:
        assert twin.get_submodule(unit).forward.module is twin.get_submodule(unit)
    model.zero_grad(set_to_none=True)
    assert_same(step(planned["ref"], planned["inputs"]), step(twin, planned["inputs"]))
    assert all(p.grad is None for p in model.parameters())  # the original ran nothing


def test_averaged_model_uses_averaged_weights(planned):
    """AveragedModel deep-copies the model: perturbing the live weights must not change it
    (with gradients on, so the plan's checkpoint runs)."""
    model = planned["model"]
    averaged = AveragedModel(model)

    def output():
        torch.manual_seed(1)
        return loss_of(averaged, planned["inputs"]()).detach()

    before = output()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    try:
        assert torch.equal(before, output())
    finally:
        model.load_state_dict(saved)


def test_torch_save_and_load_round_trip(planned):
    model = planned["model"]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for unit in planned["units"]:
        assert loaded.get_submodule(unit).forward.module is loaded.get_submodule(unit)
        assert loaded.get_submodule(unit)._memadvise_plan == model.get_submodule(unit)._memadvise_plan
    assert_same(step(planned["ref"], planned["inputs"]), step(loaded, planned["inputs"]))


def test_state_dict_keys_unchanged_and_loadable(planned):
    ref, model = planned["ref"], planned["model"]
    assert list(model.state_dict()) == list(ref.state_dict())
    model.load_state_dict(ref.state_dict(), strict=True)
    fresh = copy.deepcopy(ref)
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_hooks_fire_once_and_eval_matches(planned):
    model, ref = planned["model"], planned["ref"]
    calls = []
    handle = model.get_submodule(planned["units"][0]).register_forward_hook(lambda *a: calls.append(1))
    try:
        step(model, planned["inputs"])  # the recompute in backward calls forward, not the hooks
        assert calls == [1]
    finally:
        handle.remove()
    model.load_state_dict(ref.state_dict())  # the same BatchNorm running statistics
    model.eval(), ref.eval()
    try:
        torch.manual_seed(2)
        inputs = planned["inputs"]()
        with torch.no_grad():
            assert torch.equal(loss_of(model, inputs), loss_of(ref, inputs))
        assert torch.equal(loss_of(model, inputs), loss_of(ref, inputs))
    finally:
        model.train(), ref.train()


def test_hugging_face_cache_turned_off():
    model, units, _ = llama()
    model.config.use_cache = True
    memadvise.apply_plan(model, [Action(units[0], "checkpoint")])
    assert model.config.use_cache is False


class TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))).tanh()


def saved_by(keep):
    """Tensors autograd keeps for the wrapped module: the outputs the policy saved."""
    torch.manual_seed(0)
    model = nn.Sequential(TwoLinears())
    memadvise_apply(model, [("0", "selective", keep, False)])
    x = torch.randn(4, 8, requires_grad=True)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t.shape) or t, lambda t: t):
        y = model(x)
    grads = torch.autograd.grad(y.sum(), [x, *model.parameters()])
    return packed, grads


def test_keep_selects_the_kth_call_of_an_op():
    policy = MemadviseForward(nn.Linear(1, 1), "selective", [("addmm", 1), "tanh"]).policy()
    addmm, tanh, detach = torch.ops.aten.addmm.default, torch.ops.aten.tanh.default, torch.ops.aten.detach.default

    class Ctx:
        def __init__(self, is_recompute):
            self.is_recompute = is_recompute

    from torch.utils.checkpoint import CheckpointPolicy as P

    fwd = [policy(Ctx(False), op) for op in (addmm, detach, addmm, tanh, addmm)]
    assert fwd == [P.PREFER_RECOMPUTE, P.PREFER_RECOMPUTE, P.MUST_SAVE, P.MUST_SAVE, P.PREFER_RECOMPUTE]
    # the recompute counts on its own: its second addmm is the kept one again
    assert [policy(Ctx(True), op) for op in (addmm, addmm)] == [P.PREFER_RECOMPUTE, P.MUST_SAVE]
    # each checkpoint call counts from zero
    again = MemadviseForward(nn.Linear(1, 1), "selective", [("addmm", 1)]).policy()
    assert [again(Ctx(False), addmm) for _ in range(2)] == [P.PREFER_RECOMPUTE, P.MUST_SAVE]

    # end to end: the same gradients whatever is kept
    _, all_kept = saved_by(["addmm"])
    _, second = saved_by([("addmm", 1)])
    _, nothing = saved_by([])
    for a, b, c in zip(all_kept, second, nothing):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_torch_compile_after_apply():
    """One compile of a model with all three strategies (compiling takes seconds): it runs
    and its gradients match eager ones to float rounding (compiled kernels differ)."""
    torch.manual_seed(0)
    ref, units, make_inputs = mlp()
    model = copy.deepcopy(ref)
    memadvise.apply_plan(model, [Action(units[0], "checkpoint"), Action(units[1], "selective", "save-matmul"),
                                 Action(units[2], "offload")])
    compiled = torch.compile(model)
    expected, got = step(ref, make_inputs), step(compiled, make_inputs, owner=model)
    assert expected.keys() == got.keys()
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-4, atol=1e-5)


def test_autocast_forward_deep_copies_and_pickles():
    """The autocast traffic change is an object holding its module too, on top of a plan."""
    torch.manual_seed(0)
    model, units, make_inputs = mlp()
    memadvise.apply_plan(model, [Action("", "checkpoint")])
    model.forward = MemadviseAutocast(model, "cpu", "bfloat16")
    twin = copy.deepcopy(model)
    assert twin.forward.module is twin and twin.forward.inner.module is twin
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.forward.module is loaded
    expected = step(model, make_inputs)
    assert_same(expected, step(twin, make_inputs))
    assert_same(expected, step(loaded, make_inputs))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert_same(expected, step(twin, make_inputs))


def test_keep_accepts_json_pairs():
    """Plan files write [op, k] lists, k null for every call."""
    keep = MemadviseForward(nn.Linear(1, 1), "selective", [["addmm", None], ["mm", 2], "tanh"]).keep
    assert keep == {"addmm", ("mm", 2), "tanh"}


def test_inlined_runtime_pickles_from_the_scripts_module():
    """A patched script defines the runtime at module level: torch.save(model) there
    pickles MemadviseForward by that module's name, as it does the script's own classes."""
    import types

    from memadvise.apply.patch import runtime_source

    script = types.ModuleType("memadvise_patched_script")
    sys.modules[script.__name__] = script
    try:
        exec(compile(runtime_source(["MemadviseForward", "memadvise_apply"]), "<patch>", "exec"), script.__dict__)
        torch.manual_seed(0)
        ref, units, make_inputs = gpt()
        model = copy.deepcopy(ref)
        script.memadvise_apply(model, [(units[0], "checkpoint", None, False), (units[1], "selective", ["addmm"], False)])
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert type(loaded.get_submodule(units[0]).forward).__module__ == script.__name__
        assert_same(step(ref, make_inputs), step(loaded, make_inputs))
    finally:
        del sys.modules[script.__name__]
