"""The outputs of ``show``, ``suggest`` and ``report`` on the sample profiles in
``tests/data`` are those in ``tests/data/golden``, byte for byte (normalised as
``tests/golden.py`` says). A change of output that is intended: ``python tests/golden.py``,
and commit the new golden files with the change."""

import pytest

from golden import GOLDEN, SAMPLES, outputs


@pytest.fixture(scope="module", params=SAMPLES)
def sample(request):
    return request.param, outputs(request.param)


def first_difference(want: str, got: str, context: int = 120) -> str:
    i = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    line = want.count("\n", 0, i) + 1
    return (f"line {line}, character {i}:\n  golden: {want[max(0, i - context):i + context]!r}\n"
            f"  now:    {got[max(0, i - context):i + context]!r}")


@pytest.mark.parametrize("file", ["show.json", "show.txt", "suggest.txt", "plan.json", "report.html"])
def test_output_is_the_golden_one(sample, file):
    name, got = sample
    want = (GOLDEN / name / file).read_text(encoding="utf-8")
    if got[file] != want:
        pytest.fail(f"{name}: {file} differs from tests/data/golden/{name}/{file} (intended? regenerate with "
                    f"`python tests/golden.py`) at {first_difference(want, got[file])}")
