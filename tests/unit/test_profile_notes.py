"""A measurement that fails after the run is said in the profile's notes and by ``show``,
never dropped: above all the scratch probe, whose bytes would silently leave the peak."""

import json

import pytest

from helpers import ROOT, cli, json_out
from memadvise._errors import InputFileError
from memadvise.schema.profile import read_profile

GOLDEN = ROOT / "tests" / "data" / "profile_resnet.json"


def test_a_failing_scratch_probe_is_in_the_profiles_notes(tmp_path, monkeypatch):
    from memadvise.collect.api import profile_script
    from memadvise.collect.probe import ScratchProbe

    def broken(self):
        raise TypeError("an upgraded torch changed the profiler's events")

    monkeypatch.setattr(ScratchProbe, "_run_cpu", broken)
    profile = profile_script(ROOT / "sample_models" / "resnet.py",
                             ["--width", "4", "--blocks", "1", "--stages", "1", "--image-size", "8", "--batch", "2"],
                             warmup=0, steps=1, timing_steps=0, calibrate_overheads=False, out=tmp_path / "p.json")
    [note] = read_profile(tmp_path / "p.json").notes
    assert note.startswith("the scratch probe failed (TypeError: an upgraded torch changed the profiler's events)")
    assert "missing from the peak" in note and profile.notes == [note]
    result = cli("show", "--profile", tmp_path / "p.json")
    assert result.exit_code == 0 and "warning: the scratch probe failed" in result.stdout.replace("\n", " ")
    assert json_out(cli("show", "--profile", tmp_path / "p.json", "--json"))["notes"] == [note]


def test_a_probe_that_ran_leaves_no_note(tmp_path):
    from memadvise.collect.api import estimate_notes
    from memadvise.collect.probe import ScratchProbe

    assert estimate_notes(ScratchProbe(), {}) == []
    notes = estimate_notes(ScratchProbe(), {"error": "RuntimeError: x", "fault_replay_error": "OSError: y",
                                            "compile_probe": {"error": "no compiler"}})
    assert [n.split(" (")[0] for n in notes] == ["the device probes failed", "the page-fault replay failed",
                                                 "the compile probe failed"]


def test_notes_that_are_not_sentences_are_refused(tmp_path):
    doc = json.loads(GOLDEN.read_text())
    doc["notes"] = [{"not": "a sentence"}]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="notes"):
        read_profile(tmp_path / "p.json")
