"""The --timeout alarm: aimed at the main thread, and silent once cancelled."""

import signal
import threading
import time

import pytest

from memadvise.collect.session import _MainThreadAlarm, _Timeout


def _armed(seconds):
    alarm = _MainThreadAlarm(seconds)
    old = signal.signal(signal.SIGALRM, alarm.handler)
    alarm.start()
    return alarm, old


def test_the_alarm_interrupts_the_main_threads_sleep_while_another_thread_sleeps_on():
    woke = []
    other = threading.Thread(target=lambda: (time.sleep(0.6), woke.append(time.monotonic())))
    other.start()
    alarm, old = _armed(0.2)
    t0 = time.monotonic()
    try:
        with pytest.raises(_Timeout):
            time.sleep(5)
        assert time.monotonic() - t0 < 2
    finally:
        alarm.cancel()
        signal.signal(signal.SIGALRM, old)
    other.join()
    assert woke and woke[0] - t0 >= 0.5  # the other thread's sleep ran its course


def test_a_cancelled_alarm_never_fires():
    alarm, old = _armed(0.2)
    try:
        alarm.cancel()
        time.sleep(0.4)  # would raise _Timeout if the alarm still fired
    finally:
        signal.signal(signal.SIGALRM, old)
