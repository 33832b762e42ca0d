"""The interface every sink implements (JSON lines, MQTT, Redis)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from streamer.core.events import CameraStatusEvent, Event
from streamer.core.frames import FrameResult


@dataclass
class SinkStats:
    """What an operator wants to know about a sink (metrics and dashboard read this)."""

    connected: bool = True
    published: int = 0
    buffered: int = 0
    dropped: int = 0
    errors: int = 0


class Sink(abc.ABC):
    """Receives results from the pipeline. `publish*` must return at once: buffer or drop, never wait."""

    name: str = "sink"

    def stats(self) -> SinkStats:
        return SinkStats()

    async def start(self) -> None:
        """Connect; a broker that is down is retried in the background, not raised."""

    def publish(self, result: FrameResult) -> None:
        """One processed frame and the track and identity events it produced: one call per result."""
        self.publish_frame(result)
        if result.events:
            self.publish_events(result.events)

    @abc.abstractmethod
    def publish_frame(self, result: FrameResult) -> None:
        """The frame's message (tracks, boxes, timings)."""

    def publish_events(self, events: Sequence[Event]) -> None:
        """Track lifecycle (new/update/end) and identity events; these must not be lost."""

    def publish_status(self, status: CameraStatusEvent) -> None:
        """A camera changed state (connecting, streaming, stalled, degraded, backoff, ...)."""

    def publish_availability(self, availability: str) -> None:
        """The service is `online`, or `degraded` (running, but frames are not processed)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Flush what can be flushed in a bounded time and say what could not."""
