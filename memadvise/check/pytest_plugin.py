"""pytest plugin: ``@pytest.mark.memadvise(max_peak="300MB")`` fails a test whose training
steps use more memory than allowed — the GPU-aware counterpart of pytest-memray's
``limit_memory``.

Registered through the ``pytest11`` entry point, so installing memadvise enables it::

    @pytest.mark.memadvise(max_peak="300MB", max_activation="120MiB")
    def test_train_step():
        model = build(); opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = model(batch).sum(); loss.backward(); opt.step()

Marker arguments (sizes as everywhere in memadvise: ``300MB``, ``1.5GiB``):

* ``max_peak``: largest peak of live tensor storage on the device during the test body;
* ``max_activation``: largest memory held by autograd for backward when a backward starts;
* ``device``: the device to measure (default: ``cuda`` when available, else ``cpu``).

The body is measured with ``memadvise.collect.measure.measure``: the peak counts every
live tensor on the device while the test body runs, including tensors made before it
(as ``torch.cuda.max_memory_allocated`` does); fixtures run outside the measurement.
A failing test gets one line, e.g. ``memadvise: peak 312.4 MiB exceeds max_peak 300.0 MiB``.
The figures are also recorded as the test's ``user_properties`` (shown in pytest's JUnit XML).
Known limitation: the body runs under a tracking dispatch mode, so it runs slower.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import pytest

from memadvise._errors import MemadviseError

MARKER = "memadvise"
_LIMIT_ARGS = ("max_peak", "max_activation")


@dataclass(frozen=True)
class MarkerLimits:
    """The limits of one marked test.

    max_peak_bytes / max_activation_bytes (int | None): limits in bytes.
    max_peak_text / max_activation_text (str | None): as written in the marker.
    device (str | None): the device to measure; None picks ``cuda`` when available.
    """

    max_peak_bytes: int | None = None
    max_peak_text: str | None = None
    max_activation_bytes: int | None = None
    max_activation_text: str | None = None
    device: str | None = None


_LIMITS_KEY = pytest.StashKey[MarkerLimits]()


def parse_marker(args: tuple, kwargs: dict) -> MarkerLimits:
    """Validate the marker's arguments; anything wrong raises a one-line MemadviseError."""
    from memadvise._errors import UsageError
    from memadvise.sizes import parse_size

    if args:
        raise UsageError('the memadvise marker takes keyword arguments only, e.g. max_peak="300MB"')
    unknown = sorted(set(kwargs) - set(_LIMIT_ARGS) - {"device"})
    if unknown:
        raise UsageError(
            f"unknown memadvise marker argument {', '.join(unknown)}; "
            f"use {', '.join(_LIMIT_ARGS)} or device"
        )
    if not any(kwargs.get(name) is not None for name in _LIMIT_ARGS):
        raise UsageError('the memadvise marker needs max_peak= or max_activation=, e.g. max_peak="300MB"')
    values: dict = {}
    for name in _LIMIT_ARGS:
        text = kwargs.get(name)
        if text is not None:
            values[f"{name}_bytes"] = parse_size(str(text), what=name)
            values[f"{name}_text"] = str(text).strip()
    device = kwargs.get("device")
    return MarkerLimits(**values, device=str(device) if device is not None else None)


def marker_failures(limits: MarkerLimits, peak_bytes: int, activation_bytes: int) -> list[str]:
    """One phrase per exceeded limit (empty when the test passes)."""
    from memadvise.check.gate import limit_failure

    failures = []
    if limits.max_peak_bytes is not None:
        failures.append(limit_failure("peak", peak_bytes, "max_peak", limits.max_peak_bytes, limits.max_peak_text or ""))
    if limits.max_activation_bytes is not None:
        failures.append(
            limit_failure("activation", activation_bytes, "max_activation", limits.max_activation_bytes,
                          limits.max_activation_text or "")
        )
    return [f for f in failures if f]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f'{MARKER}(max_peak=None, max_activation=None, device=None): fail the test when the peak or '
        'activation memory of its body exceeds a size such as "300MB" (memadvise).',
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    try:
        item.stash[_LIMITS_KEY] = parse_marker(marker.args, marker.kwargs)
        return
    except MemadviseError as exc:
        message = f"memadvise: {exc}"
    pytest.fail(message, pytrace=False)  # outside `except`: no chained traceback, one line


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    limits = item.stash.get(_LIMITS_KEY, None)
    if limits is None:
        return (yield)
    from memadvise.collect.measure import measure  # torch is imported for marked tests only

    gc.collect()  # tensors of earlier tests that only the cycle collector frees are not this test's
    meter, problem = None, ""
    try:
        meter = measure(limits.device)
    except (RuntimeError, ValueError, AssertionError) as exc:  # e.g. device="cuda" without a GPU
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if meter is None:
        pytest.fail(f"memadvise: cannot measure on device {limits.device!r}: {problem}", pytrace=False)
    with meter:
        outcome = yield  # the test body; an exception in it propagates unmeasured
    result = meter.result
    assert result is not None
    item.user_properties.append(("memadvise_peak_bytes", result.peak_bytes))
    item.user_properties.append(("memadvise_activation_bytes", result.activation_bytes))
    failures = marker_failures(limits, result.peak_bytes, result.activation_bytes)
    if failures:
        pytest.fail("memadvise: " + "; ".join(failures), pytrace=False)
    return outcome
