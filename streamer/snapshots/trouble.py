"""Disk trouble of the event pictures, told the way an operator can bear: a line, not a flood.

Pictures pause when the disk is full or the free-space floor is reached: one WARNING when it starts,
at most one line per interval while it lasts (with what was dropped since when), one INFO when it
ends. Every drop is also counted in the snapshot stats (Prometheus) and the part's health (the
dashboard, `/readyz`), never logged one by one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streamer.core.stats import PartHealth, PartState

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 60.0
ERROR_RETRY_S = 10.0  # paused for an error other than space: one picture tries again this often


class PauseReport:
    """Whether pictures are paused and why, and what was dropped since; thread-safe (the event
    loop and the writer thread both drop)."""

    def __init__(
        self,
        health: PartHealth,
        interval_s: float = REPORT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health
        self.interval_s = interval_s
        self.clock = clock
        self.reason: str | None = None
        self.for_space = False  # paused for want of space (ends when space is back), else an error
        self._tried_at = 0.0
        self.pictures = 0  # dropped since the pause began
        self.events = 0  # not indexed since the pause began
        self._since_wall = 0.0
        self._since = 0.0
        self._logged_at = 0.0
        self._lock = threading.Lock()

    @property
    def paused(self) -> bool:
        return self.reason is not None

    def admits(self) -> bool:
        """Whether a picture may be tried: not paused, or paused for an error and due for one
        more try (space comes back by itself; an error is only known gone by trying)."""
        with self._lock:
            if self.reason is None:
                return True
            if self.for_space or self.clock() - self._tried_at < ERROR_RETRY_S:
                return False
            self._tried_at = self.clock()
            return True

    def pause(self, reason: str, for_space: bool) -> None:
        """Pictures stop (or stay stopped) for `reason`; logged when the pause begins."""
        with self._lock:
            starting = self.reason is None
            self.reason, self.for_space = reason, for_space
            self._tried_at = self.clock()
            if starting:
                self._since, self._since_wall = self._tried_at, time.time()
                self._logged_at = self._since
                self.pictures = self.events = 0
                log.warning("snapshots: pictures paused: %s", reason)
            self._tell()

    def dropped(self, pictures: int = 0, events: int = 0) -> None:
        """Count drops of the pause; a line when the interval since the last one has passed."""
        with self._lock:
            if self.reason is None:
                return
            self.pictures += pictures
            self.events += events
            now = self.clock()
            if now - self._logged_at >= self.interval_s:
                self._logged_at = now
                log.warning("snapshots: pictures paused: %s; %s", self.reason, self._dropped_since())
            self._tell()

    def resume(self, detail: str) -> None:
        with self._lock:
            if self.reason is None:
                return
            log.info(
                "snapshots: pictures resumed after %.0f s (%s); %s",
                self.clock() - self._since, detail, self._dropped_since(),
            )
            self.reason = None
            self.health.set(PartState.OK)

    def _dropped_since(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self._since_wall))
        return f"{self.pictures} pictures and {self.events} events dropped since {since}"

    def _tell(self) -> None:
        if self.health.state != PartState.UNAVAILABLE:
            self.health.set(PartState.DEGRADED, f"pictures paused: {self.reason}; {self._dropped_since()}")
