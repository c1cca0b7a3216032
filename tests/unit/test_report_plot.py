"""``show --plot``: a PNG of the timeline, with exactly the categories the step holds."""

import io

import numpy as np
import pytest

from memadvise.report.svg import CATEGORY_COLORS
from memadvise.report.plot import timeline_png
from memadvise.schema.io import atomic_write_bytes
from memadvise.schema.profile import Profile, read_profile
from memadvise.testing.synthetic import chain_profile

from helpers import ROOT

pytest.importorskip("matplotlib")


def colours_drawn(png: bytes) -> set[str]:
    """Categories whose colour covers a visible area of the image (legend swatches are
    a few hundred pixels; a drawn area is thousands)."""
    from matplotlib.image import imread

    img = (imread(io.BytesIO(png), format="png")[:, :, :3] * 255).round().astype(int)
    out = set()
    for name, hexcolor in CATEGORY_COLORS.items():
        rgb = np.array([int(hexcolor[i:i + 2], 16) for i in (1, 3, 5)])
        if (np.abs(img - rgb).sum(axis=2) <= 6).sum() > 1500:
            out.add(name)
    return out


def test_png_of_the_chain_shows_its_three_categories(tmp_path):
    png = timeline_png(Profile(chain_profile(8, 4096, 1024, 4)))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1200, 504)  # 10 x 4.2 in at 120 dpi
    assert colours_drawn(png) == {"activation", "temporary", "input"}
    path = atomic_write_bytes(tmp_path / "sub" / "t.png", png)
    assert path.read_bytes() == png


def test_png_of_a_real_step_shows_every_category():
    png = timeline_png(read_profile(ROOT / "tests" / "data" / "profile_v1.json"))
    # the golden MLP step (SGD, no optimizer state) holds the five others
    assert colours_drawn(png) == {"parameter", "gradient", "activation", "temporary", "input"}
