"""MQTT sink (aiomqtt): a documented topic tree in the spirit of Frigate's.

    {prefix}/available             retained, "online" / "degraded" / "offline" (plain text);
                                   Last Will = "offline"
    {prefix}/stats                 retained, QoS 1, every stats_interval_s (JSON, schemas/stats.json)
    {prefix}/{camera}/status       retained, QoS 1, latest camera status (schemas/camera_status.json)
    {prefix}/{camera}/tracks       QoS 0, one message per processed frame (schemas/frame.json)
    {prefix}/{camera}/events       QoS 1, track new/update/end with before/after (schemas/track_event.json)
    {prefix}/{camera}/identities   QoS 1, face / ReID embeddings (schemas/identity.json)
    {prefix}/{camera}/zones/{zone} retained, QoS 1, occupancy, sent with each zone_enter/zone_exit
                                   (schemas/zone_state.json); zone and line events go to .../events
    {prefix}/{camera}/lines/{line} retained, QoS 1, crossings per direction since the camera
                                   started, sent with each line_cross (schemas/line_state.json)
    {prefix}/{camera}/enabled      retained, QoS 1, "ON" / "OFF" (with `camera_control`)
    {prefix}/{camera}/enabled/set  subscribed: "ON" / "OFF" switches the camera (`camera_control`)

QoS 1 events leave the buffer only after the broker's PUBACK, so an outage or broker restart loses
none of them (within the buffer's bounds); they can arrive twice, hence the `id`.

MQTT 5 by default (`protocol: auto` falls back to 3.1.1 when the broker refuses version 5): only
MQTT 5 lets a broker say that it refused a publish (PUBACK reason code >= 0x80, e.g. 0x87 Not
authorized by its ACL); MQTT 3.1.1 brokers acknowledge a denied publish and drop it. A refused
event is not retried (the broker would refuse it again, and the in-order buffer would stall behind
it for ever): it is counted as dropped (reason "refused by the broker: not authorized") and as a
sink error, and logged as an ERROR naming the topics, at most once per `log_interval_s`. Refused
retained state (availability, status, stats) is counted and logged the same way and sent again
when it next changes. Only refusals a new connection can cure (0x91 packet identifier in use,
0x97 quota exceeded) are treated like a lost connection: events kept, reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt import ProtocolVersion
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from streamer.config import MqttSinkConfig
from streamer.core.events import LineState, ZoneState
from streamer.publishing.broker import (
    BrokerFailure,
    BrokerProbeError,
    BrokerSink,
    is_identity,
    network_failure,
    spill_file_name,
)
from streamer.publishing.buffer import PendingEvent, PendingFrame
from streamer.publishing.messages import (
    AVAILABLE_OFFLINE,
    AnalyticsLayout,
    state_message,
    to_json,
)

log = logging.getLogger(__name__)

QOS_AT_MOST_ONCE = 0
QOS_AT_LEAST_ONCE = 1
# MQTT 3.1.1 CONNACK codes 4/5 and their MQTT 5 reason codes 134/135.
CREDENTIAL_REFUSED_CODES = frozenset({4, 5, 134, 135})
# MQTT 3.1.1 CONNACK 1 "unacceptable protocol version" (paho reads it as 0x84 under MQTT 5).
PROTOCOL_REFUSED_CODES = frozenset({1, 0x84})
# PUBACK refusals a new connection may cure: packet identifier in use, quota exceeded.
TRANSIENT_REFUSAL_CODES = frozenset({0x91, 0x97})
PROTOCOLS = {"5": ProtocolVersion.V5, "3.1.1": ProtocolVersion.V311}
PROTOCOL_NAMES = {ProtocolVersion.V5: "MQTT 5", ProtocolVersion.V311: "MQTT 3.1.1"}
PROBE_READ_BACK_S = 3.0
SUBACK_FAILURE = 0x80  # and above: the broker refused the subscription
REFUSED_TOPICS_LOGGED = 5

Refusal = tuple[str, ReasonCode]  # topic, the broker's PUBACK reason code
# Switches a camera on or off (injected by the app: publishing knows nothing of the control layer);
# raises with a one-line reason when the change is refused.
CameraSwitch = Callable[[str, bool], Awaitable[Any]]
SWITCH_ON, SWITCH_OFF = "ON", "OFF"


class PublishRefused(Exception):
    """The broker refused a publish for a reason a new connection may cure (quota exceeded)."""


class AckingClient(aiomqtt.Client):
    """aiomqtt 2.x waits for a PUBACK but drops its reason code; `publish_acked` returns it.

    With MQTT 5 a broker answers a publish it refuses (its ACL denies the topic: 0x87 Not
    authorized) with a PUBACK carrying a reason code >= 0x80; aiomqtt's `publish` returns as if
    it had been accepted.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, asyncio.Future[ReasonCode | None]] = {}
        self._early: dict[int, ReasonCode] = {}  # answered before publish() returned

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        refusal = reason_code if reason_code.is_failure else None
        waiting = self._acks.pop(mid, None)
        if waiting is None:
            if refusal is not None:
                self._early[mid] = refusal
        elif not waiting.done():
            waiting.set_result(refusal)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acked(
        self, topic: str, payload: str | bytes, qos: int, retain: bool
    ) -> ReasonCode | None:
        """Publish; for QoS 1, wait for the PUBACK. The broker's refusal, or None if accepted."""
        self._early.clear()  # only an answer given during the call below counts as early
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            cause = self._disconnected.exception() if self._disconnected.done() else None
            raise MqttCodeError(info.rc, "Could not publish message") from cause
        if info.is_published():
            return self._early.pop(info.mid, None)
        answered: asyncio.Future[ReasonCode | None] = self._loop.create_future()
        self._acks[info.mid] = answered
        try:
            return await answered
        finally:
            self._acks.pop(info.mid, None)


def tls_context(settings: MqttSinkConfig) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    context.check_hostname = tls.verify_hostname
    return context


class MqttTopics:
    """The topic tree; one place, so the README, the sink and the tests agree."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.available = f"{self.prefix}/available"
        self.stats = f"{self.prefix}/stats"

    def camera(self, camera: str, leaf: str) -> str:
        return f"{self.prefix}/{camera}/{leaf}"

    def tracks(self, camera: str) -> str:
        return self.camera(camera, "tracks")

    def events(self, camera: str) -> str:
        return self.camera(camera, "events")

    def identities(self, camera: str) -> str:
        return self.camera(camera, "identities")

    def status(self, camera: str) -> str:
        return self.camera(camera, "status")

    def zone(self, camera: str, zone: str) -> str:
        return self.camera(camera, f"zones/{zone}")

    def line(self, camera: str, line: str) -> str:
        return self.camera(camera, f"lines/{line}")

    def state(self, state: ZoneState | LineState) -> str:
        """The retained topic of a zone's or line's state."""
        if isinstance(state, ZoneState):
            return self.zone(state.camera, state.zone)
        return self.line(state.camera, state.line)

    def state_of(self, event: PendingEvent) -> tuple[str, str] | None:
        """The retained (topic, payload) a zone or line event updates, if any."""
        state = event.state
        if isinstance(state, LineState) and state.counts is None:
            return None  # a crossing that did not say the counts leaves the retained ones alone
        if isinstance(state, ZoneState | LineState):
            return self.state(state), to_json(state_message(state))
        return None

    def enabled(self, camera: str) -> str:
        return self.camera(camera, "enabled")

    @property
    def enabled_set_filter(self) -> str:
        return f"{self.prefix}/+/enabled/set"

    def switched_camera(self, topic: str) -> str | None:
        """The camera a `{prefix}/{camera}/enabled/set` topic names, else None."""
        if not topic.startswith(f"{self.prefix}/"):
            return None
        camera, _, leaf = topic[len(self.prefix) + 1:].partition("/")
        return camera if leaf == "enabled/set" and camera else None


class MqttSink(BrokerSink):
    name = "mqtt"
    retained_states = (ZoneState, LineState)

    def __init__(self, settings: MqttSinkConfig, layout: AnalyticsLayout | None = None) -> None:
        password = settings.password.get_secret_value() if settings.password else None
        super().__init__(
            endpoint=f"{settings.host}:{settings.port}",
            delivery=settings.delivery,
            reconnect=settings.reconnect,
            stats_interval_s=settings.stats_interval_s,
            embedding_dtype=settings.embedding_dtype,
            secrets=[password] if password else [],
            spill_name=spill_file_name(self.name, settings.topic_prefix),
        )
        self.settings = settings
        self.topics = MqttTopics(settings.topic_prefix)
        self.layout = layout or AnalyticsLayout()
        self._password = password
        self._client: AckingClient | None = None
        self._tls: ssl.SSLContext | None = None
        self._probing = False
        self.protocol = PROTOCOLS.get(settings.protocol, ProtocolVersion.V5)
        self._refused: dict[tuple[str, str], int] = {}  # (topic, reason): count, not yet logged
        self._refusals_logged = -float("inf")
        self._switch: CameraSwitch | None = None
        self._enabled: dict[str, bool] = {}  # camera -> enabled, as last told by the app
        self._switching: set[asyncio.Task[None]] = set()

    # -- camera switches (Frigate's {camera}/enabled/set) -----------------------------------------

    def enable_camera_control(self, switch: CameraSwitch) -> None:
        """Subscribe to `{prefix}/+/enabled/set` on every connection and call `switch` for it."""
        self._switch = switch

    def set_camera_states(self, enabled: Mapping[str, bool]) -> None:
        """The cameras and whether each is enabled; changes go out retained on `{camera}/enabled`
        (a removed camera's retained state is cleared)."""
        previous, self._enabled = self._enabled, dict(enabled)
        if self._switch is None:
            return
        changes = [(self.topics.enabled(c), SWITCH_ON if on else SWITCH_OFF)
                   for c, on in self._enabled.items() if previous.get(c) != on]
        changes += [(self.topics.enabled(c), "") for c in previous if c not in self._enabled]
        if changes and self._client is not None:
            self._background(self._publish_states(changes))

    def _background(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the state goes out again on the next connection
                log.debug("%s: camera switch handling failed: %s", self.name, exc)

        task = asyncio.ensure_future(run())
        self._switching.add(task)
        task.add_done_callback(self._switching.discard)

    async def _publish_states(self, states: list[tuple[str, str]]) -> None:
        await self._publish_all([(topic, state, QOS_AT_LEAST_ONCE, True) for topic, state in states])

    async def _start_camera_control(self, client: AckingClient) -> None:
        if self._switch is None:
            return
        await client.subscribe(self.topics.enabled_set_filter, qos=QOS_AT_LEAST_ONCE)
        await self._publish_states([
            (self.topics.enabled(c), SWITCH_ON if on else SWITCH_OFF) for c, on in self._enabled.items()
        ])

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        camera = self.topics.switched_camera(topic)
        if camera is None or self._switch is None:
            return
        if retained:  # a stale command kept by the broker must not switch cameras at every start
            log.warning("%s: ignored a retained command on %s (publish it without retain)",
                        self.name, topic)
            return
        command = payload.decode("utf-8", "replace").strip().upper()
        if command not in (SWITCH_ON, SWITCH_OFF):
            log.warning("%s: %s expects ON or OFF; ignored %r", self.name, topic, command[:20])
            return
        self._background(self._apply_switch(camera, command == SWITCH_ON))

    async def _apply_switch(self, camera: str, enabled: bool) -> None:
        assert self._switch is not None
        try:
            await self._switch(camera, enabled)
        except Exception as exc:
            log.warning("%s: %s %s refused: %s", self.name, self.topics.enabled(camera) + "/set",
                        SWITCH_ON if enabled else SWITCH_OFF, exc)
            if camera in self._enabled:  # say again what is true
                state = SWITCH_ON if self._enabled[camera] else SWITCH_OFF
                await self._publish_states([(self.topics.enabled(camera), state)])

    def _wants_frames(self) -> bool:
        return self.settings.publish_tracks

    async def probe(self) -> str:
        self._probing = True  # no Last Will, random client id: never disturbs a running service
        return await super().probe()

    async def stop(self) -> None:
        for task in list(self._switching):
            task.cancel()
        await asyncio.gather(*self._switching, return_exceptions=True)
        await super().stop()
        self._report_refusals(force=True)

    def _new_client(self) -> AckingClient:
        settings = self.settings
        if self._tls is None and settings.tls.enabled:
            self._tls = tls_context(settings)
        v5 = self.protocol == ProtocolVersion.V5
        client = AckingClient(
            settings.host,
            settings.port,
            username=settings.username,
            password=self._password,
            identifier=None if self._probing else settings.client_id,
            protocol=self.protocol,
            will=None if self._probing else aiomqtt.Will(
                self.topics.available, AVAILABLE_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True
            ),
            clean_session=None if v5 else True,
            clean_start=True if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=settings.keepalive_s,
            timeout=settings.delivery.ack_timeout_s,
            max_inflight_messages=settings.max_inflight,
            tls_context=self._tls,
        )
        # The TCP connect and the CONNACK wait are bounded separately (paho / aiomqtt).
        client._client.connect_timeout = settings.connect_timeout_s
        # A round trip carries up to batch_size events and batch_size frames: not a warning sign.
        client.pending_calls_threshold = 2 * settings.delivery.batch_size + 1
        return client

    async def _connect(self) -> None:
        try:
            await self._connect_once()
        except MqttConnectError as exc:
            code = getattr(exc.rc, "value", exc.rc)
            if not (self.settings.protocol == "auto" and self.protocol == ProtocolVersion.V5
                    and code in PROTOCOL_REFUSED_CODES):
                raise
            log.warning(
                "%s: %s refused MQTT 5; using MQTT 3.1.1, with which a broker acknowledges a "
                "publish its ACL denies and drops it: such denials cannot be detected (run "
                "`streamer check` to test the account's rights)", self.name, self.endpoint,
            )
            self.protocol = ProtocolVersion.V311
            await self._connect_once()

    async def _connect_once(self) -> None:
        client = self._new_client()
        self._client = client
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s * 2):
                await client.__aenter__()
                if not self._probing:
                    await self._start_camera_control(client)
        except BaseException:
            self._client = None
            # aiomqtt leaves the socket open when CONNACK never came; close it here.
            with contextlib.suppress(Exception):
                client._client.disconnect()
            raise

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await client.__aexit__(None, None, None)
        except Exception:
            with contextlib.suppress(Exception):
                client._client.disconnect()

    def _connected_client(self) -> AckingClient:
        if self._client is None:
            raise ConnectionError("not connected")
        return self._client

    async def _watch_connection(self) -> None:
        """aiomqtt ends message iteration when the connection drops; the only subscription is
        the camera switches (with `camera_control`)."""
        async for message in self._connected_client().messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload).encode()
            self._on_message(str(message.topic), payload, bool(message.retain))

    async def _publish_all(self, messages: list[tuple[str, str, int, bool]]) -> list[Refusal]:
        """Hand the whole batch to paho at once, in order; paho keeps at most `max_inflight`
        unacknowledged and queues the rest in order, so the stream to the broker never pauses.

        Returns what the broker refused for good (counted as errors and logged here); raises on
        a broken connection or a refusal that a new connection may cure.
        """
        client = self._connected_client()
        results = await asyncio.gather(
            *(client.publish_acked(topic, payload, qos, retain)
              for topic, payload, qos, retain in messages),
            return_exceptions=True,
        )
        refusals: list[Refusal] = []
        for (topic, _payload, _qos, _retain), result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                refusals.append((topic, result))
        for topic, reason in refusals:
            if reason.value in TRANSIENT_REFUSAL_CODES:
                raise PublishRefused(f"the broker refused a publish on {topic} ({reason})")
        if refusals:
            self.errors += len(refusals)
            for topic, reason in refusals:
                key = (topic, f"{reason}")
                self._refused[key] = self._refused.get(key, 0) + 1
            self._report_refusals()
        return refusals

    def _report_refusals(self, force: bool = False) -> None:
        """One ERROR line per `log_interval_s` naming the refused topics and why."""
        now = time.monotonic()
        interval = self.delivery.log_interval_s
        if not self._refused or (not force and now - self._refusals_logged < interval):
            return
        total = sum(self._refused.values())
        ranked = sorted(self._refused.items(), key=lambda item: -item[1])
        parts = [f"{count} on {topic} ({reason})" for (topic, reason), count in
                 ranked[:REFUSED_TOPICS_LOGGED]]
        if len(ranked) > REFUSED_TOPICS_LOGGED:
            parts.append(f"and {len(ranked) - REFUSED_TOPICS_LOGGED} more topics")
        user = f"user '{self.settings.username}'" if self.settings.username else "anonymous clients"
        log.error(
            "%s: %s refused %d publishes: %s. Not retried (the broker would refuse them again); "
            "refused events are counted as dropped. Allow %s to publish under '%s/' in the "
            "broker's ACL.", self.name, self.endpoint, total, ", ".join(parts), user,
            self.topics.prefix,
        )
        self._refused.clear()
        self._refusals_logged = now

    async def _announce_online(self) -> None:
        await self._publish_all([(self.topics.available, self.availability, QOS_AT_LEAST_ONCE, True)])

    async def _announce_layout(self) -> None:
        """Retained occupancy 0 and no crossings yet, replacing what a crashed run left behind."""
        messages = [
            (self.topics.state(state), to_json(state_message(state)), QOS_AT_LEAST_ONCE, True)
            for state in self.layout.initial_states(time.time())
        ]
        if messages:
            await self._publish_all(messages)

    async def _announce_offline(self) -> None:
        await self._publish_all([(self.topics.available, AVAILABLE_OFFLINE, QOS_AT_LEAST_ONCE, True)])

    async def _send(self, events: list[PendingEvent], frames: list[PendingFrame]) -> int:
        topics = self.topics
        messages: list[tuple[str, str, int, bool]] = []
        states: set[str] = set()
        for e in events:
            topic = topics.identities(e.camera) if is_identity(e) else topics.events(e.camera)
            messages.append((topic, e.payload, QOS_AT_LEAST_ONCE, False))
            state = topics.state_of(e)
            if state is not None:  # right after its event, so the retained value is never older
                states.add(state[0])
                messages.append((state[0], state[1], QOS_AT_LEAST_ONCE, True))
        messages.extend(
            (topics.tracks(f.camera), to_json(f.message), QOS_AT_MOST_ONCE, False) for f in frames
        )
        refusals = await self._publish_all(messages)
        # Only QoS 1 publishes are answered: every refusal is an event's or a zone/line state's.
        refusals = [(topic, reason) for topic, reason in refusals if topic not in states]
        reasons: dict[str, int] = {}
        for _topic, reason in refusals:
            key = f"events (refused by the broker: {str(reason).lower()})"
            reasons[key] = reasons.get(key, 0) + 1
        for key, count in reasons.items():
            self.drops.note(key, count, reported_elsewhere=True)  # the ERROR line says it
        return len(refusals)

    async def _send_statuses(self, statuses: list[dict[str, Any]]) -> None:
        await self._publish_all([
            (self.topics.status(s["camera"]), to_json(s), QOS_AT_LEAST_ONCE, True) for s in statuses
        ])

    async def _send_stats(self, message: dict[str, Any]) -> None:
        await self._publish_all([(self.topics.stats, to_json(message), QOS_AT_LEAST_ONCE, True)])

    async def _probe_connected(self) -> str:
        """Publish a QoS 1 probe on {prefix}/check/<random> and read it back.

        MQTT 5: the PUBACK says whether the broker took it. MQTT 3.1.1: only reading it back can.
        """
        client = self._connected_client()
        topic = f"{self.topics.prefix}/check/{uuid.uuid4().hex[:12]}"
        protocol = PROTOCOL_NAMES[self.protocol]
        user = f"user '{self.settings.username}'" if self.settings.username else "anonymous clients"
        timeout = self.delivery.ack_timeout_s
        async with asyncio.timeout(timeout):
            granted = await client.subscribe(topic, qos=QOS_AT_LEAST_ONCE)
        readable = not any(getattr(code, "value", code) >= SUBACK_FAILURE for code in granted)
        async with asyncio.timeout(timeout):
            refusal = await client.publish_acked(topic, "streamer check", QOS_AT_LEAST_ONCE, False)
        if refusal is not None:
            raise BrokerProbeError(
                f"connected ({protocol}), but the broker refused to let {user} publish on {topic} "
                f"({refusal}, 0x{refusal.value:02X}): allow '{self.topics.prefix}/#' in its ACL"
            )
        came_back, closed = (await self._read_back(client, topic)) if readable else (False, False)
        if came_back:
            return f"connected ({protocol}); a QoS 1 probe on {topic} was published and read back"
        if self.protocol == ProtocolVersion.V5:
            return (f"connected (MQTT 5); the broker accepted a QoS 1 probe on {topic} (not read "
                    f"back: {user} may not read there)")
        raise BrokerProbeError(
            f"connected (MQTT 3.1.1), but a QoS 1 probe on {topic} did not come back within "
            f"{PROBE_READ_BACK_S:g} s{' (the broker closed the connection)' if closed else ''}: "
            f"the broker's ACL probably denies {user} publishing (or reading) there, and MQTT "
            f"3.1.1 cannot say which"
        )

    @staticmethod
    async def _read_back(client: AckingClient, topic: str) -> tuple[bool, bool]:
        """(the probe came back, the broker closed the connection meanwhile)."""
        try:
            async with asyncio.timeout(PROBE_READ_BACK_S):
                async for message in client.messages:
                    if str(message.topic) == topic:
                        return True, False
        except TimeoutError:
            return False, False
        except aiomqtt.MqttError:
            return False, True  # mosquitto 2.0 with max_queued_messages 0 drops a denied client
        return False, True

    def _describe_failure(self, exc: BaseException) -> BrokerFailure:
        code = getattr(exc, "rc", None)
        value = getattr(code, "value", code)
        if isinstance(exc, MqttConnectError) and value in CREDENTIAL_REFUSED_CODES:
            if self.settings.username is None:
                reason = f"{exc}; the broker does not accept anonymous clients, set a username/password"
            else:
                reason = f"{exc} (user '{self.settings.username}')"
            return BrokerFailure(reason, credentials_refused=True)
        if isinstance(exc, TimeoutError):
            return BrokerFailure("no answer from the broker in time")
        if isinstance(exc, aiomqtt.MqttError) and exc.__cause__ is not None:
            exc = exc.__cause__  # "disconnected during message iteration" -> why it disconnected
        if "Connection refused" in str(exc) and not isinstance(exc, MqttConnectError):
            return BrokerFailure("connection refused; is the broker running and listening there?")
        return network_failure(exc) or BrokerFailure(str(exc) or type(exc).__name__)
