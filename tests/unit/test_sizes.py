import pytest

from memadvise._errors import UsageError
from memadvise.sizes import byte_unit, format_bytes, parse_budget, parse_percent, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [("6GiB", 6 * 2**30), ("6000MB", 6_000_000_000), ("512MiB", 512 * 2**20), ("1.5 KiB", 1536),
     ("300MB", 300_000_000), ("42", 42), ("42B", 42), ("2g", 2 * 2**30), ("1e3kB", 1_000_000)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["6 parsecs", "", "-5MB", "0", "0GiB", "MB", "1..2MB", "nan", "inf GB"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError) as err:
        parse_size(text)
    assert "\n" not in str(err.value)


def test_budget_percent_and_absolute():
    assert parse_budget("60%").resolve(1000) == 600
    assert parse_budget("6GiB").resolve(1) == 6 * 2**30
    for bad in ("-5%", "0", "0%", "6 parsecs", "abc%"):
        with pytest.raises(UsageError):
            parse_budget(bad)


@pytest.mark.parametrize("text, hint", [("60", "60% of the baseline peak, or 60MiB?"),
                                        ("0.6", "60% of the baseline peak, or 0.6MiB?")])
def test_a_bare_number_budget_is_refused_with_a_hint(text, hint):
    with pytest.raises(UsageError) as err:
        parse_budget(text)
    assert f"budget {text!r} has no unit: {hint}" in str(err.value)
    assert parse_budget(f"{text}B").resolve(1) == round(float(text))


def test_percent():
    assert parse_percent("5%") == pytest.approx(0.05)
    assert parse_percent("2.5") == pytest.approx(0.025)
    assert parse_percent("0%", allow_zero=True) == 0
    with pytest.raises(UsageError):
        parse_percent("0%")


def test_format_bytes():
    assert format_bytes(327_680_000) == "312.5 MiB"
    assert format_bytes(512) == "512 B"
    assert format_bytes(-2048) == "-2.0 KiB"
    assert format_bytes(2048, signed=True) == "+2.0 KiB"


def test_the_charts_axes_and_the_text_use_one_unit_choice():
    """The report's and the PNG's byte axes pick their unit as format_bytes does."""
    from memadvise.report.svg import byte_ticks

    assert byte_unit(1023) == (1, "B") and byte_unit(1024) == (1024, "KiB")
    assert byte_unit(-3 * 2**20) == (2**20, "MiB") and byte_unit(5 * 2**30) == (2**30, "GiB")
    for top in (900, 70_000, 3 * 2**20, 5 * 2**30):
        unit = format_bytes(top).split()[-1]
        assert all(label.endswith(f" {unit}") for _, label in byte_ticks(top))
