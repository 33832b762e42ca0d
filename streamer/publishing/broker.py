"""What the MQTT and Redis sinks share: buffering, one connection supervisor, honest logging.

The pipeline calls `publish*` on the event loop; they only build a message and append it to the
DeliveryBuffer, then wake the sink's pump. One supervisor task per sink connects (capped backoff),
runs the pump while connected and reconnects when the connection breaks; the pump sends statuses,
events (removed only once acknowledged), per-frame messages and periodic stats, yielding to the
loop after every batch. Nothing on the pipeline side ever awaits the broker.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamer.config import BackoffConfig, DeliveryConfig
from streamer.core.backoff import Backoff
from streamer.core.events import CameraStatusEvent, Event, IdentityEvent, RetainedState
from streamer.core.frames import FrameResult
from streamer.core.interfaces import ProbeFailed, Sink
from streamer.core.stats import SinkStats
from streamer.core.tasks import cancel_and_wait
from streamer.publishing.buffer import (
    DROP_FRAME_SEND_FAILED,
    DeliveryBuffer,
    DropLog,
    PendingEvent,
    PendingFrame,
)
from streamer.publishing.messages import (
    AVAILABLE_ONLINE,
    MS_PER_S,
    camera_status_message,
    event_message,
    frame_message,
    stats_message,
    to_json,
)

log = logging.getLogger(__name__)

REDACTED = "***"


@dataclass(frozen=True)
class BrokerFailure:
    """Why a connection failed, in one line an operator can act on (never contains secrets)."""

    reason: str
    credentials_refused: bool = False

    def describe(self) -> str:
        return f"credentials refused: {self.reason}" if self.credentials_refused else self.reason


def network_failure(exc: BaseException) -> BrokerFailure | None:
    """Common network causes, found anywhere in the exception chain, in plain words."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return BrokerFailure("connection refused; is the broker running and listening there?")
        if isinstance(seen, socket.gaierror):
            return BrokerFailure(f"host name not found ({seen.strerror})")
        if isinstance(seen, ssl.SSLError):
            return BrokerFailure(f"TLS handshake failed ({seen.reason or seen})")
        seen = seen.__cause__ or seen.__context__
    return None


class BrokerProbeError(ProbeFailed):
    """`streamer check`: the broker cannot be used; the message is the one line to print."""


@dataclass
class CameraActivity:
    """What the stats message says about one camera, as seen by this sink."""

    frames: int = 0
    gated: int = 0  # of `frames`, published without detection (motion gating)
    events: int = 0
    tracks: int = 0
    latency_ms: float = 0.0
    last_capture_ts: float | None = None
    status: str | None = None
    frames_at_last_stats: int = 0

    def snapshot(self, elapsed_s: float) -> dict[str, Any]:
        fps = (self.frames - self.frames_at_last_stats) / elapsed_s if elapsed_s > 0 else 0.0
        self.frames_at_last_stats = self.frames
        return {
            "status": self.status,
            "frames": self.frames,
            "gated": self.gated,
            "events": self.events,
            "fps": round(fps, 2),
            "tracks": self.tracks,
            "latency_ms": self.latency_ms,
            "last_capture_ts": self.last_capture_ts,
        }


class BrokerSink(Sink):
    """Base of the broker sinks; subclasses only say how to connect and how to send a batch."""

    name = "broker"
    # The retained states (`Event.retained_state()`) this sink keeps; they travel with their
    # event through the buffer, so `_send` routes on them without parsing the event's JSON.
    retained_states: tuple[type[RetainedState], ...] = ()

    def __init__(
        self,
        *,
        endpoint: str,
        delivery: DeliveryConfig,
        reconnect: BackoffConfig,
        stats_interval_s: float,
        embedding_dtype: str,
        secrets: list[str],
        spill_name: str,
    ) -> None:
        self.endpoint = endpoint  # host:port, never with credentials
        self.delivery = delivery
        self.reconnect = reconnect
        self.stats_interval_s = stats_interval_s
        self.embedding_dtype = embedding_dtype
        self._secrets = [s for s in secrets if s]
        self.drops = DropLog(self.name, delivery.log_interval_s, log)
        spill = delivery.spill_dir / spill_name if delivery.spill_dir is not None else None
        self.buffer = DeliveryBuffer(delivery, self.drops, spill_path=spill)
        self.connected = False
        self.published = 0
        self.errors = 0
        self.failed_connects = 0  # since the last successful connection
        self.activity: dict[str, CameraActivity] = {}
        self.started_ts = time.time()
        self._statuses: dict[str, dict[str, Any]] = {}
        self._dirty_statuses: set[str] = set()
        self.availability = AVAILABLE_ONLINE  # or degraded: the service runs, frames are not processed
        self._availability_dirty = False
        self._wake = asyncio.Event()
        self._stop_nudge = asyncio.Event()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._layout_announced = False
        self._last_stats_monotonic = time.monotonic()

    # -- what subclasses provide ------------------------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open a connection and check it works (authenticated); raise on failure."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the connection; must not raise and must return in bounded time."""

    @abc.abstractmethod
    async def _announce_online(self) -> None:
        """Mark the service available (MQTT retained topic, Redis key)."""

    async def _announce_layout(self) -> None:
        """Once per run, on the first connection: the initial zone and line states; default none."""

    @abc.abstractmethod
    async def _announce_offline(self) -> None:
        """Clean shutdown: mark the service unavailable."""

    @abc.abstractmethod
    async def _send(self, events: list[PendingEvent], frames: list[PendingFrame]) -> int | None:
        """One round trip: return only once the broker answered every event; raise otherwise.

        Frames are best effort: on failure they are counted as dropped, events are sent again.
        An event the broker refused for good (an MQTT 5 PUBACK "not authorized") leaves the buffer
        like an acknowledged one: the subclass counts it as dropped and returns how many it
        refused (None = 0), so they are not counted as published.
        """

    @abc.abstractmethod
    async def _send_statuses(self, statuses: list[dict[str, Any]]) -> None:
        """The latest status of these cameras (retained / stored as state)."""

    @abc.abstractmethod
    async def _send_stats(self, message: dict[str, Any]) -> None:
        """The periodic stats message."""

    @abc.abstractmethod
    def _describe_failure(self, exc: BaseException) -> BrokerFailure:
        """Turn a client library exception into one clear line."""

    async def _watch_connection(self) -> None:
        """Return or raise when the connection is found broken while idle; default: never."""
        await asyncio.Event().wait()

    def _wants_frames(self) -> bool:
        return True

    # -- the Sink interface (pipeline side: never awaits) -----------------------------------

    def stats(self) -> SinkStats:
        return SinkStats(
            connected=self.connected,
            published=self.published,
            buffered=self.buffer.buffered,
            dropped=sum(self.drops.total.values()),
            errors=self.errors,
        )

    def publish_frame(self, result: FrameResult) -> None:
        activity = self._activity(result.camera)
        activity.frames += 1
        activity.gated += not result.detected
        activity.tracks = len(result.tracks)
        activity.latency_ms = round(result.latency_s * MS_PER_S, 2)
        activity.last_capture_ts = result.capture_ts
        if self._wants_frames():
            self.buffer.put_frame(
                PendingFrame(result.camera, result.capture_ts, frame_message(result))
            )
            self._wake.set()

    def publish_events(self, events: Sequence[Event]) -> None:
        for event in events:
            state = event.retained_state()
            self.buffer.put_event(
                event.camera,
                str(event.type),
                event.id,
                to_json(event_message(event, self.embedding_dtype)),
                float(event.capture_ts),
                state if isinstance(state, self.retained_states) else None,
            )
            self._activity(event.camera).events += 1
        if events:
            self._wake.set()

    def publish_status(self, status: CameraStatusEvent) -> None:
        self._statuses[status.camera] = camera_status_message(status)
        self._dirty_statuses.add(status.camera)
        self._activity(status.camera).status = status.status
        self._wake.set()

    def publish_availability(self, availability: str) -> None:
        if availability != self.availability:
            self.availability = availability
            self._availability_dirty = True
            self._wake.set()

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        self.started_ts = time.time()
        self.buffer.open()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"sink:{self.name}")

    async def stop(self) -> None:
        """Flush for at most `stop_timeout_s`, announce offline, and say what was not delivered."""
        supervisor = self._supervisor
        if supervisor is None:
            return
        self._stopping = True
        self._stop_nudge.set()
        self._wake.set()
        nothing_to_flush = not self.buffer.buffered and not self._dirty_statuses
        flush_timeout = 0.0 if nothing_to_flush and not self.connected else self.delivery.stop_timeout_s
        try:
            async with asyncio.timeout(flush_timeout):
                await asyncio.shield(supervisor)
        except TimeoutError:
            pass
        except Exception:
            log.exception("%s: delivery task failed", self.name)
        if not supervisor.done():
            await cancel_and_wait(supervisor)
            await self._disconnect()
        self._supervisor = None
        self.connected = False
        self.drops.report_if_due(force=True)
        if self.buffer.buffered:
            events = self.buffer.events_buffered
            lost = self.buffer.drop_everything()
            log.warning(
                "%s: stopped with %d messages (%d of them events) not delivered to %s: broker "
                "unreachable or too slow within stop_timeout_s=%g", self.name, lost, events,
                self.endpoint, self.delivery.stop_timeout_s,
            )
        self.buffer.close()

    # -- helpers for subclasses -------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """Remove secrets from text that is about to be logged or printed."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    async def probe(self) -> str:
        """Connect once, try what the service needs, disconnect; the one line to print.

        Raises BrokerProbeError with one clear line instead.
        """
        try:
            await self._connect()
            return self.scrub(await self._probe_connected())
        except BrokerProbeError as exc:
            raise BrokerProbeError(self.scrub(str(exc))) from None
        except Exception as exc:
            raise BrokerProbeError(self.scrub(self._describe_failure(exc).describe())) from None
        finally:
            await self._disconnect()

    async def _probe_connected(self) -> str:
        """`streamer check`, once connected: what else to try; default: nothing."""
        return "connected"

    # -- the delivery side ------------------------------------------------------------------

    def _activity(self, camera: str) -> CameraActivity:
        activity = self.activity.get(camera)
        if activity is None:
            activity = self.activity[camera] = CameraActivity()
        return activity

    async def _supervise(self) -> None:
        backoff = Backoff(self.reconnect)
        last_failure: BrokerFailure | None = None
        last_reminder = time.monotonic()
        while True:
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = self._describe_failure(exc)
                self.failed_connects += 1
                delay = backoff.next_delay()
                if failure != last_failure:
                    self._log_connect_failure(failure)
                    last_failure, last_reminder = failure, time.monotonic()
                elif time.monotonic() - last_reminder >= self.delivery.log_interval_s:
                    last_reminder = time.monotonic()
                    log.warning(
                        "%s: still not connected to %s after %d attempts (%s); %d events buffered",
                        self.name, self.endpoint, self.failed_connects, self.scrub(failure.reason),
                        self.buffer.events_buffered,
                    )
                else:
                    log.debug("%s: connect failed again: %s", self.name, self.scrub(failure.reason))
                await self._disconnect()
                await self._pause(delay)
                continue
            backoff.reset()
            log.info(
                "%s: connected to %s%s", self.name, self.endpoint,
                f" after {self.failed_connects} failed attempts; sending "
                f"{self.buffer.events_buffered} buffered events" if self.failed_connects else "",
            )
            last_failure, self.failed_connects = None, 0
            self.connected = True
            try:
                await self._announce_online()
                if not self._layout_announced:  # before any buffered event, so never newer
                    await self._announce_layout()
                    self._layout_announced = True
                self._dirty_statuses.update(self._statuses)
                finished = await self._run_session()
                if finished:
                    await self._announce_offline()
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                failure = self._describe_failure(exc)
                log.warning(
                    "%s: connection to %s lost (%s); keeping events and reconnecting",
                    self.name, self.endpoint, self.scrub(failure.reason),
                )
            finally:
                self.connected = False
                await self._disconnect()
            await self._pause(backoff.next_delay())

    def _log_connect_failure(self, failure: BrokerFailure) -> None:
        retry = (
            f"Retrying with backoff up to {self.reconnect.max_delay_s:g} s; events are kept "
            f"(up to {self.delivery.event_buffer})."
        )
        if failure.credentials_refused:
            log.error(
                "%s: %s refused the credentials (%s). Fix the username/password in the "
                "configuration. %s", self.name, self.endpoint, self.scrub(failure.reason), retry,
            )
        else:
            log.warning(
                "%s: cannot connect to %s (%s). %s",
                self.name, self.endpoint, self.scrub(failure.reason), retry,
            )

    async def _pause(self, seconds: float) -> None:
        """Sleep between attempts; a stop request cuts the current pause short once."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_nudge.wait()
        self._stop_nudge.clear()

    async def _run_session(self) -> bool:
        """Pump until stopped and drained (True) or until the connection breaks (raises)."""
        pump = asyncio.create_task(self._pump(), name=f"sink:{self.name}:pump")
        watcher = asyncio.create_task(self._watch_connection(), name=f"sink:{self.name}:watch")
        try:
            done, _pending = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watcher):
                task.cancel()
            await asyncio.gather(pump, watcher, return_exceptions=True)
        if pump in done:
            return pump.result()
        watcher.result()
        raise ConnectionError("connection closed")

    async def _pump(self) -> bool:
        ack_timeout = self.delivery.ack_timeout_s
        batch_size = self.delivery.batch_size
        next_stats = time.monotonic()
        while True:
            self._wake.clear()
            if self._availability_dirty:
                self._availability_dirty = False
                try:
                    async with asyncio.timeout(ack_timeout):
                        await self._announce_online()
                except BaseException:
                    self._availability_dirty = True
                    raise
            if self._dirty_statuses:
                cameras = sorted(self._dirty_statuses)
                self._dirty_statuses.clear()
                try:
                    async with asyncio.timeout(ack_timeout):
                        await self._send_statuses([self._statuses[c] for c in cameras])
                except BaseException:
                    self._dirty_statuses.update(cameras)
                    raise
            if time.monotonic() >= next_stats:
                async with asyncio.timeout(ack_timeout):
                    await self._send_stats(self._stats_message())
                next_stats = time.monotonic() + self.stats_interval_s
            events = self.buffer.peek_events(batch_size)
            frames = self.buffer.take_frames(batch_size)
            if events or frames:
                try:
                    async with asyncio.timeout(ack_timeout):
                        refused = await self._send(events, frames) or 0
                except BaseException:
                    self.drops.note(DROP_FRAME_SEND_FAILED, len(frames))
                    raise
                if events:
                    self.buffer.ack_events(events[-1].seq)
                self.published += len(events) + len(frames) - refused
                self.drops.report_if_due()
                await asyncio.sleep(0)  # let the cameras run between batches
                continue
            self.drops.report_if_due()
            if self._stopping and not self._dirty_statuses:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_stats - time.monotonic())):
                    await self._wake.wait()
            if self.delivery.linger_s and not self._stopping:
                await asyncio.sleep(self.delivery.linger_s)  # let a few cameras share the trip

    def _stats_message(self) -> dict[str, Any]:
        now = time.monotonic()
        elapsed = now - self._last_stats_monotonic
        self._last_stats_monotonic = now
        sink = self.stats()
        return stats_message(
            started_ts=self.started_ts,
            cameras={name: a.snapshot(elapsed) for name, a in sorted(self.activity.items())},
            sink={
                "name": self.name,
                "endpoint": self.endpoint,
                "connected": sink.connected,
                "published": sink.published,
                "buffered": sink.buffered,
                "dropped": sink.dropped,
                "errors": sink.errors,
            },
        )


def spill_file_name(sink: str, prefix: str) -> str:
    return f"{sink}-{prefix.replace('/', '_').replace(':', '_')}-events.jsonl"


def is_identity(event: PendingEvent) -> bool:
    return event.message_type == IdentityEvent.type

