"""The `publishing` section: JSON lines, MQTT and Redis sinks.

Passwords are `SecretStr`: their repr is masked, so they never reach a log by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from streamer.config.base import BackoffConfig, Section

TOPIC_SEGMENT_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_/-]{0,127}$"
KEY_PREFIX_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_:-]{0,127}$"

EmbeddingDtype = Literal["float16", "float32"]
MqttProtocol = Literal["auto", "5", "3.1.1"]


class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect with TLS.")
    ca_file: Path | None = Field(
        None, description="CA bundle that signed the broker's certificate; None = system CAs."
    )
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Private key of the client certificate.")
    verify_hostname: bool = Field(
        True, description="Check the broker's certificate matches its host name (leave on)."
    )


class DeliveryConfig(Section):
    """How much is kept while a broker is slow or away, and what happens beyond that."""

    frame_buffer: int = Field(
        1000,
        ge=1,
        description="Per-frame track messages waiting to be sent; beyond this the OLDEST are "
        "dropped (counted): they describe a moment that has passed.",
    )
    event_buffer: int = Field(
        20000,
        ge=1,
        description="Lifecycle and identity events kept during an outage (memory plus spill "
        "file); beyond this the oldest are dropped, counted and logged.",
    )
    memory_events: int = Field(
        5000,
        ge=1,
        description="With `spill_dir` set: events kept in memory before the rest go to disk.",
    )
    spill_dir: Path | None = Field(
        None,
        description="Folder for a spill file holding events beyond `memory_events` during an "
        "outage (relative: to the config file's folder); None = memory only. Emptied at start "
        "(not a crash journal).",
    )
    max_event_age_s: float | None = Field(
        3600.0,
        gt=0,
        description="Events older than this when the broker comes back are dropped (counted); "
        "None = no age limit.",
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="Events, and as many frame messages, sent per round trip (one Redis "
        "MULTI/EXEC, concurrent MQTT publishes).",
    )
    linger_s: float = Field(
        0.02,
        ge=0,
        description="After the first message arrives, wait this long so messages of several "
        "cameras share one round trip (less CPU per frame); 0 = send at once.",
    )
    ack_timeout_s: float = Field(
        10.0, gt=0, description="A batch not acknowledged in this time counts as a broken connection."
    )
    stop_timeout_s: float = Field(
        5.0, ge=0, description="At shutdown, wait at most this long to flush what is buffered."
    )
    log_interval_s: float = Field(
        60.0, gt=0, description="Drops and ongoing outages are logged at most once per interval."
    )


def _password_as_text(value: Any) -> Any:
    # YAML turns `password: 1234` into an int; a validation error would echo it back.
    return str(value) if isinstance(value, int | float) else value


class BrokerSinkConfig(Section):
    """What every broker sink has: credentials, TLS, delivery policy and reconnect backoff."""

    password: SecretStr | None = Field(
        None, description="Password; use ${ENV_VAR} to keep it out of the file. Never logged."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Give up one connection attempt after this.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS options.")
    delivery: DeliveryConfig = Field(
        default_factory=DeliveryConfig, description="Buffering and drop policy."
    )
    reconnect: BackoffConfig = Field(
        default_factory=BackoffConfig, description="Backoff between connection attempts."
    )

    _password_text = field_validator("password", mode="before")(_password_as_text)


def _protocol_as_text(value: Any) -> Any:
    # YAML turns `protocol: 5` into an int.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class MqttSinkConfig(BrokerSinkConfig):
    enabled: bool = Field(False, description="Publish to an MQTT broker.")
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    username: str | None = Field(None, description="User name; None = anonymous.")
    client_id: str | None = Field(
        None, description="MQTT client id; None = a random one (two services never collide)."
    )
    protocol: MqttProtocol = Field(
        "auto",
        description="MQTT version: '5' lets the broker refuse a publish its ACL denies (counted "
        "and logged; with 3.1.1 the broker acknowledges it and drops it silently); 'auto' tries "
        "5 and falls back to 3.1.1 when the broker refuses that protocol version.",
    )
    topic_prefix: str = Field(
        "streamer",
        pattern=TOPIC_SEGMENT_PATTERN,
        description="Root of the topic tree: {prefix}/{camera}/tracks, .../events, .../identities, "
        ".../status, {prefix}/available, {prefix}/stats.",
    )
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive; a dead link is noticed after 1.5x.")
    publish_tracks: bool = Field(
        True, description="Publish the per-frame tracks topic (QoS 0, one message per frame)."
    )
    max_inflight: int = Field(
        64, ge=1, description="Messages published concurrently (QoS 1: awaiting their PUBACK)."
    )
    stats_interval_s: float = Field(
        30.0, gt=0, description="Period of the retained {prefix}/stats message."
    )
    embedding_dtype: EmbeddingDtype = Field(
        "float16",
        description="Precision of embeddings in identity messages (base64, little-endian).",
    )
    camera_control: bool = Field(
        False,
        description="Frigate-style switches: ON/OFF on {prefix}/{camera}/enabled/set enables or "
        "disables the camera (written to the config file, like an API change) and the state is "
        "kept retained on {prefix}/{camera}/enabled. Anyone allowed to publish there can switch "
        "cameras: restrict it in the broker's ACL.",
    )

    _protocol_text = field_validator("protocol", mode="before")(_protocol_as_text)


class RedisSinkConfig(BrokerSinkConfig):
    enabled: bool = Field(False, description="Write streams and state to Redis.")
    host: str = Field("127.0.0.1", description="Redis host name or address.")
    port: int = Field(6379, ge=1, le=65535, description="Redis port.")
    db: int = Field(0, ge=0, description="Database number.")
    username: str | None = Field(None, description="ACL user; None = the default user.")
    key_prefix: str = Field(
        "streamer",
        pattern=KEY_PREFIX_PATTERN,
        description="Prefix of every key: {prefix}:{camera}:events, ...:tracks, ...:state, "
        "{prefix}:identity:{camera}:{kind}:{track_id}, {prefix}:available, {prefix}:stats.",
    )
    events_maxlen: int = Field(
        100_000, ge=1, description="Approximate length cap (XADD MAXLEN ~) of each events stream."
    )
    publish_tracks: bool = Field(
        True, description="Also append every frame's tracks to {prefix}:{camera}:tracks."
    )
    tracks_maxlen: int = Field(
        10_000, ge=1, description="Approximate length cap of each per-frame tracks stream."
    )
    identity_ttl_s: int = Field(
        86_400, ge=1, description="Identity/embedding records expire after this many seconds."
    )
    stats_interval_s: float = Field(
        30.0, gt=0, description="Period of {prefix}:stats; {prefix}:available expires after 3x."
    )
    ping_interval_s: float = Field(
        5.0, gt=0, description="PING this often while idle, so a dead server is noticed."
    )
    embedding_dtype: EmbeddingDtype = Field(
        "float32",
        description="Precision of embeddings, in messages (base64) and identity records (raw "
        "little-endian bytes; float32 suits RediSearch vector indexes).",
    )


class JsonlSinkConfig(Section):
    enabled: bool = Field(True, description="Write one JSON line per processed frame.")
    path: str = Field(
        "-", description="File to append to (relative: to the config file's folder); '-' is "
        "standard output."
    )
    stop_timeout_s: float = Field(
        2.0,
        ge=0,
        description="At shutdown, wait at most this long for the last lines (a stalled reader "
        "must not hold the other sinks' flush hostage); lines left are counted as dropped.",
    )


class PublishingConfig(Section):
    jsonl: JsonlSinkConfig = Field(
        default_factory=JsonlSinkConfig, description="JSON lines per processed frame."
    )
    mqtt: MqttSinkConfig = Field(default_factory=MqttSinkConfig, description="MQTT topics.")
    redis: RedisSinkConfig = Field(default_factory=RedisSinkConfig, description="Redis streams.")
