"""``@pytest.mark.memadvise``: inner pytest sessions (pytester) that train a small model.

The plugin comes from the ``pytest11`` entry point, as it does for users: nothing in the
inner sessions names it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib.metadata import entry_points

import pytest
import torch

pytest_plugins = ["pytester"]

# A 2-layer MLP trained for two steps, with figures one can derive by hand (float32):
# parameters 256*256*4 + 256*4 + 256*4 + 4 = 264196 bytes (258 KiB), gradients as much;
# activations: the ReLU output, saved by ReLU and the second Linear, 64*256*4 = 65536
# bytes, plus the second Linear's output saved by pow, 64*1*4 = 256 bytes: 65792 bytes.
TRAIN = """
import pytest
import torch


def train(device="cpu"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(64, 256, device=device)
        model(x).pow(2).mean().backward()
        opt.step()
"""


@pytest.fixture(autouse=True, scope="module")
def _import_lazily_loaded_modules_first():
    """The first measurement imports hundreds of torch modules (dynamo, inductor). pytester's
    in-process runs drop the modules imported inside them afterwards, and torch refuses to
    register its operator libraries twice, so they are imported here, outside, once."""
    from memadvise.collect.measure import measure

    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with measure("cpu"):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()


def test_registered_through_the_pytest11_entry_point():
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("memadvise") == "memadvise.check.pytest_plugin"


def test_limits_pass_and_fail_with_a_one_line_reason(pytester):
    pytester.makepyfile(TRAIN + """
@pytest.mark.memadvise(max_peak="10MiB", max_activation="1MiB")
def test_within_limits():
    train()


@pytest.mark.memadvise(max_peak="300KB")
def test_over_the_limit():
    train()


def test_unmarked():
    train()
""")
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    # 300 kB = 293.0 KiB, below params + grads + activations
    result.stdout.fnmatch_lines(["memadvise: peak * exceeds max_peak 293.0 KiB (300KB)"])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*def test_over_the_limit*")  # the reason alone, no source listing


def test_activation_limit(pytester):
    pytester.makepyfile(TRAIN + """
@pytest.mark.memadvise(max_activation="32KiB")
def test_activations():
    train()
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    # 65792 bytes (see TRAIN) = 64.25 KiB
    result.stdout.fnmatch_lines(["memadvise: activation 64.2 KiB exceeds max_activation 32.0 KiB"])
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["memadvise_activation_bytes"] == "65792"
    assert int(props["memadvise_peak_bytes"]) > 2 * 264196  # parameters and gradients at least


def test_marker_mistakes_are_setup_errors_with_one_line(pytester):
    pytester.makepyfile(TRAIN + """
@pytest.mark.memadvise(max_peek="1GB")
def test_typo():
    train()


@pytest.mark.memadvise(max_peak="lots")
def test_not_a_size():
    train()
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "memadvise: unknown memadvise marker argument max_peek; use max_peak, max_activation or device",
        "memadvise: max_peak 'lots' is not a size; use e.g. 6GiB, 6000MB or 512MiB",
    ])
    result.stdout.no_fnmatch_line("*During handling*")


def test_a_failing_body_is_reported_as_itself(pytester):
    pytester.makepyfile("""
import pytest

@pytest.mark.memadvise(max_peak="1GiB")
def test_body_raises():
    raise ValueError("not a memory problem")
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: not a memory problem*"])
    result.stdout.no_fnmatch_line("*memadvise:*")


def test_marker_is_listed(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.memadvise(max_peak=None, max_activation=None, device=None):*"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda(pytester):
    pytester.makepyfile(TRAIN + """
@pytest.mark.memadvise(max_peak="10MiB", device="cuda")
def test_within():
    train("cuda")


@pytest.mark.memadvise(max_peak="300KB", device="cuda")
def test_over():
    train("cuda")
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*memadvise: peak * exceeds max_peak 293.0 KiB (300KB)"])
