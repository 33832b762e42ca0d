"""MQTT sink (aiomqtt): a documented topic tree in the spirit of Frigate's.

    {prefix}/available             retained, "online" / "degraded" / "offline" (plain text);
                                   Last Will = "offline"
    {prefix}/stats                 retained, QoS 1, every stats_interval_s (JSON, schemas/stats.json)
    {prefix}/{camera}/status       retained, QoS 1, latest camera status (schemas/camera_status.json)
    {prefix}/{camera}/tracks       QoS 0, one message per processed frame (schemas/frame.json)
    {prefix}/{camera}/events       QoS 1, track new/update/end with before/after (schemas/track_event.json)
    {prefix}/{camera}/identities   QoS 1, face / ReID embeddings (schemas/identity.json)

QoS 1 events leave the buffer only after the broker's PUBACK, so an outage or broker restart loses
none of them (within the buffer's bounds); they can arrive twice, hence the `id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from streamer.config import MqttSinkConfig
from streamer.publishing.broker import (
    BrokerFailure,
    BrokerSink,
    is_identity,
    network_failure,
    spill_file_name,
)
from streamer.publishing.buffer import PendingEvent, PendingFrame
from streamer.publishing.messages import AVAILABLE_OFFLINE, to_json

QOS_AT_MOST_ONCE = 0
QOS_AT_LEAST_ONCE = 1
# MQTT 3.1.1 CONNACK codes 4/5 and their MQTT 5 reason codes 134/135.
CREDENTIAL_REFUSED_CODES = frozenset({4, 5, 134, 135})


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


class MqttSink(BrokerSink):
    name = "mqtt"

    def __init__(self, settings: MqttSinkConfig) -> None:
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
        self._password = password
        self._client: aiomqtt.Client | None = None
        self._tls: ssl.SSLContext | None = None
        self._probing = False

    def _wants_frames(self) -> bool:
        return self.settings.publish_tracks

    async def probe(self) -> None:
        self._probing = True  # no Last Will, random client id: never disturbs a running service
        await super().probe()

    def _new_client(self) -> aiomqtt.Client:
        settings = self.settings
        if self._tls is None and settings.tls.enabled:
            self._tls = tls_context(settings)
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=self._password,
            identifier=None if self._probing else settings.client_id,
            will=None if self._probing else aiomqtt.Will(
                self.topics.available, AVAILABLE_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True
            ),
            clean_session=True,
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
        client = self._new_client()
        self._client = client
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s * 2):
                await client.__aenter__()
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

    def _connected_client(self) -> aiomqtt.Client:
        if self._client is None:
            raise ConnectionError("not connected")
        return self._client

    async def _watch_connection(self) -> None:
        """aiomqtt ends message iteration when the connection drops; nothing is subscribed."""
        async for _message in self._connected_client().messages:
            pass

    async def _publish_all(self, messages: list[tuple[str, str, int, bool]]) -> None:
        """Hand the whole batch to paho at once, in order; paho keeps at most `max_inflight`
        unacknowledged and queues the rest in order, so the stream to the broker never pauses."""
        client = self._connected_client()
        results = await asyncio.gather(
            *(client.publish(topic, payload, qos=qos, retain=retain)
              for topic, payload, qos, retain in messages),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _announce_online(self) -> None:
        await self._publish_all([(self.topics.available, self.availability, QOS_AT_LEAST_ONCE, True)])

    async def _announce_offline(self) -> None:
        await self._publish_all([(self.topics.available, AVAILABLE_OFFLINE, QOS_AT_LEAST_ONCE, True)])

    async def _send(self, events: list[PendingEvent], frames: list[PendingFrame]) -> None:
        topics = self.topics
        await self._publish_all([
            *(
                (topics.identities(e.camera) if is_identity(e) else topics.events(e.camera),
                 e.payload, QOS_AT_LEAST_ONCE, False)
                for e in events
            ),
            *((topics.tracks(f.camera), to_json(f.message), QOS_AT_MOST_ONCE, False) for f in frames),
        ])

    async def _send_statuses(self, statuses: list[dict[str, Any]]) -> None:
        await self._publish_all([
            (self.topics.status(s["camera"]), to_json(s), QOS_AT_LEAST_ONCE, True) for s in statuses
        ])

    async def _send_stats(self, message: dict[str, Any]) -> None:
        await self._publish_all([(self.topics.stats, to_json(message), QOS_AT_LEAST_ONCE, True)])

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
