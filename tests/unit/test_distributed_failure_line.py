"""The one line naming the rank that failed, from the launcher's report."""

from memadvise.collect.distributed import _failure_line


def _launcher(*failures: tuple[int, int], root: tuple[int, int]) -> str:
    def block(rank: int, code: int) -> str:
        return f"  time      : 2026-12-01_10:55:01\n  host      : h\n  rank      : {rank} (local_rank: {rank})\n  exitcode  : {code} (pid: 1)\n"
    return ("memadvise FAILED\nFailures:\n" + "".join(block(*f) for f in failures)
            + "Root Cause (first observed failure):\n[0]:\n" + block(*root))


def test_a_peers_own_error_beats_the_abort_it_caused():
    # rank 1 timed out (its own error); rank 0, blocked in gloo, aborted when it went away,
    # and the launcher happened to see the abort first
    stderr = ("memadvise: error: rank 1: the script timed out after 15 s\n"
              + _launcher((1, 2), root=(0, -6)))
    assert _failure_line(stderr, 1) == "rank 1: the script timed out after 15 s"


def test_a_kill_is_named_and_a_lone_abort_too():
    assert _failure_line(_launcher((0, -6), root=(1, -9)), 1).startswith("rank 1 was killed (SIGKILL)")
    assert _failure_line(_launcher(root=(0, -6)), 1).startswith("rank 0 was killed (SIGABRT)")
    # the peer's error is only the broken connection: the abort stays the cause
    stderr = "memadvise: error: rank 1: the script raised RuntimeError: Connection closed by peer\n" + _launcher(root=(0, -6))
    assert _failure_line(stderr, 1).startswith("rank 0 was killed (SIGABRT)")


def test_the_first_printed_error_beats_a_later_one_and_a_teardown_abort():
    # seen in CI: rank 1 timed out and printed; rank 0, blocked in gloo until rank 1 left,
    # then timed out too, printed, and aborted in interpreter teardown; the launcher saw
    # rank 0's abort first
    stderr = ("memadvise: error: rank 1: the script timed out after 15 s (3 of 7 steps done)\n"
              "memadvise: error: rank 0: the script timed out after 15 s (3 of 7 steps done)\n"
              "terminate called without an active exception\n"
              + _launcher((1, -15), root=(0, -6)))
    assert _failure_line(stderr, 1) == "rank 1: the script timed out after 15 s (3 of 7 steps done)"


def test_a_rank_that_printed_its_error_then_died_is_named_by_its_error():
    stderr = "memadvise: error: rank 0: the script raised ValueError: bad batch\n" + _launcher(root=(0, -6))
    assert _failure_line(stderr, 1) == "rank 0: the script raised ValueError: bad batch"


def test_a_silent_kill_beats_the_connection_error_the_launcher_saw_first():
    stderr = ("memadvise: error: rank 0: the script raised RuntimeError: [pair.cc:537] Read error: Connection reset by peer\n"
              + _launcher((1, -9), root=(0, 2)))
    assert _failure_line(stderr, 1).startswith("rank 1 was killed (SIGKILL)")
