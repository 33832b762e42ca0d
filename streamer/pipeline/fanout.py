"""One fan-out: each result, event batch, camera status and availability reaches every sink once.

A sink that raises is logged and skipped; the other sinks and the pipeline never notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from streamer.core.events import CameraStatusEvent, Event
from streamer.core.frames import FrameResult
from streamer.core.interfaces import Sink

log = logging.getLogger(__name__)


class SinkFanout:
    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self.availability: str | None = None

    def result(self, result: FrameResult) -> None:
        self._each("a result", lambda sink: sink.publish(result))

    def events(self, events: Sequence[Event]) -> None:
        if events:
            self._each("events", lambda sink: sink.publish_events(events))

    def status(self, status: CameraStatusEvent) -> None:
        self._each("a camera status", lambda sink: sink.publish_status(status))

    def set_availability(self, availability: str) -> None:
        """`online` or `degraded`; sinks hear only of changes."""
        if availability != self.availability:
            self.availability = availability
            self._each("the availability", lambda sink: sink.publish_availability(availability))

    def _each(self, what: str, deliver: Callable[[Sink], Any]) -> None:
        for sink in self.sinks:
            try:
                deliver(sink)
            except Exception:
                log.exception("sink %s rejected %s", sink.name, what)
