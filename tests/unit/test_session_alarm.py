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


def test_the_alarm_is_aimed_at_the_main_thread_and_interrupts_its_sleep(monkeypatch):
    sent = []
    real = signal.pthread_kill
    monkeypatch.setattr(signal, "pthread_kill", lambda ident, sig: (sent.append((ident, sig)), real(ident, sig)))
    alarm, old = _armed(0.2)
    try:
        with pytest.raises(_Timeout):
            time.sleep(5)
    finally:
        alarm.cancel()
        signal.signal(signal.SIGALRM, old)
    # thread-directed, from the timer thread: never a process-wide signal that a gloo
    # I/O thread could take. Delivered to the main thread, it interrupts its sleep (a
    # signal taken by another thread would let the sleep run its 5 s, then raise: how
    # long the sleep took is a timing, not asserted; where the signal went is)
    assert sent == [(threading.main_thread().ident, signal.SIGALRM)]


def test_a_cancelled_alarm_never_fires():
    alarm, old = _armed(0.2)
    try:
        alarm.cancel()
        time.sleep(0.4)  # would raise _Timeout if the alarm still fired
    finally:
        signal.signal(signal.SIGALRM, old)
