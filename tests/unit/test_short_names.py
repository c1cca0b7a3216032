"""Unit names in terminal tables: cut on the left to the column, unique, and the units
table of `show` fits 80 columns for a deep Hugging Face-style model."""

import io
from types import SimpleNamespace

from rich.console import Console

from memadvise.report.names import short_names
from memadvise.report.profile_report import _units_table
from memadvise.schema.profile import Summary, UnitRecord


def test_names_are_cut_on_the_left_at_dots():
    got = short_names(["model.layers.7.self_attn", "model.layers.7.mlp", "lm_head"], 20)
    assert got == {"model.layers.7.self_attn": "…layers.7.self_attn", "model.layers.7.mlp": "model.layers.7.mlp",
                   "lm_head": "lm_head"}
    # the layer index stays: 1 and 11 are told apart
    got = short_names([f"model.layers.{i}.self_attn.q_proj" for i in (1, 11)] + ["model.layers.1.mlp"], 12)
    assert got["model.layers.1.self_attn.q_proj"] == "…1.…q_proj" and got["model.layers.11.self_attn.q_proj"] == "…11.…q_proj"


def test_colliding_names_get_their_start_back():
    names = ["encoder.layers.7.self_attn", "decoder.layers.7.self_attn"]
    got = short_names(names, 20)
    assert all(len(v) <= 20 for v in got.values()) and len(set(got.values())) == 2
    assert got["encoder.layers.7.self_attn"].startswith("e") and got["decoder.layers.7.self_attn"].startswith("d")


def test_many_deep_names_stay_unique_and_short():
    names = [f"model.model.layers.{i}.{part}" for i in range(32)
             for part in ("self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj", "mlp.down_proj", "input_layernorm")]
    for width in (12, 16, 24, 30):
        got = short_names(names, width)
        assert len(set(got.values())) == len(names)
        assert max(len(v) for v in got.values()) <= width


class _Profile:
    """What the units table reads of a profile: its unit records and their activations."""

    def __init__(self, units):
        records = tuple(UnitRecord.from_json(dict(u, parent=None, depth=1, container=None, input_bytes=0,
                                                  output_bytes=0, param_bytes=0)) for u in units)
        summary = Summary(peak_bytes=0, activation_bytes=sum(u.activation_bytes for u in records), step_time_s=0.0)
        self.records = SimpleNamespace(units=records, summary=summary)


def test_units_table_fits_80_columns():
    units = [{"name": f"model.model.layers.{i}.self_attn.rotary_emb_and_more", "type": "LlamaRotaryEmbeddingWithAName",
              "in_root": True, "activation_bytes": 10_000_000 * (i + 1), "fwd_time_ms": 123.45, "bwd_time_ms": 234.56,
              "calls": 3, "uses_rng": True} for i in range(12)]
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=False).print(_units_table(_Profile(units), 12, 80))
    lines = out.getvalue().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…layers.11.self_attn.rotary_emb_and_more" not in out.getvalue()  # really cut
    shown = [line.split("│")[0].strip() for line in lines[3:]]
    assert len(set(shown)) == 12 and all("…" in s for s in shown)
