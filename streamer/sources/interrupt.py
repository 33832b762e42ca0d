"""Stopping a camera thread that FFmpeg holds in a blocking open or read, within its 100 ms poll.

FFmpeg asks the container's interrupt callback every 100 ms or so while it waits on a socket; PyAV
installs one that says "interrupt" once the open or read timeout has passed, and it reads the time
from `time.monotonic()` of its own module. PyAV offers no other way in, so the module's `time` is
replaced by a clock that answers like `time` for every thread, except a camera thread whose stop
was asked: to that one it answers a time far past any timeout, and FFmpeg gives up at its next
poll (`ExitError: Immediate exit requested`). A listener (`udp://0.0.0.0:PORT`) or a camera with
an open timeout of a day then frees its thread and socket within a fraction of a second.

Only the thread that calls `interruptible(stop)` is affected, and only after `stop` is set; if
the installed PyAV reads its clock another way, `installed()` is False and a stop waits for the
timeout as before.
"""

from __future__ import annotations

import logging
import threading
import time
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

# Each answer to a stopped thread jumps this much further, so that even a timeout started after
# the stop (its start read from this clock too) has passed at the next poll.
LEAP_S = 1e9


class InterruptingClock:
    """Stands in for the `time` module inside PyAV's container module."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real
        self._local = threading.local()

    def monotonic(self) -> float:
        now: float = self._real.monotonic()
        stop: threading.Event | None = getattr(self._local, "stop", None)
        if stop is None or not stop.is_set():
            return now
        self._local.leaps += 1
        return now + LEAP_S * self._local.leaps

    def watch(self, stop: threading.Event) -> None:
        self._local.stop = stop
        self._local.leaps = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_clock: InterruptingClock | None = None
_install_lock = threading.Lock()


def install() -> InterruptingClock | None:
    """Put the clock into PyAV's container module once; None when PyAV reads time otherwise."""
    global _clock
    with _install_lock:
        if _clock is not None:
            return _clock
        try:
            from av.container import core
        except ImportError:  # pragma: no cover - PyAV is a dependency
            return None
        current = getattr(core, "time", None)
        if isinstance(current, InterruptingClock):
            _clock = current
        elif current is time:
            _clock = InterruptingClock(time)
            core.time = _clock  # type: ignore[attr-defined]
        else:
            log.warning("this PyAV version reads its clock another way: a removed camera's "
                        "thread ends only at its open or read timeout")
        return _clock


def interruptible(stop: threading.Event) -> bool:
    """From now on FFmpeg calls made by this thread give up soon after `stop` is set."""
    clock = install()
    if clock is None:
        return False
    clock.watch(stop)
    return True


def installed() -> bool:
    return install() is not None
