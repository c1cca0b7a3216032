"""The scratch probe runs torch's profiler; what that prints as it starts and stops is
not the user's script's output."""

import os

import torch

from memadvise.collect.probe import _without_profiler_banner


def test_the_profilers_banner_is_dropped_and_other_lines_are_kept(capfd):
    with _without_profiler_banner():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
            torch.ones(4).add_(1)
        os.write(2, b"USDT:2026-12-03 12:00:00 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a warning of the user's\n")
    err = capfd.readouterr().err
    assert "USDT" not in err
    assert "a warning of the user's" in err
