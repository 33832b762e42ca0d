"""The `metrics` and `dashboard` sections."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, field_validator

from streamer.config.base import Section

DEFAULT_LATENCY_BUCKETS_S = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
DEFAULT_STAGE_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
MIN_TOKEN_LENGTH = 24
TOKEN_HINT = "generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]*[a-z0-9])?|\[?[0-9a-f:.]+\]?")  # a name or an address


def _ascending(buckets: list[float]) -> list[float]:
    if not buckets or any(b <= 0 for b in buckets) or sorted(set(buckets)) != buckets:
        raise ValueError("buckets must be positive, strictly ascending and not empty")
    return buckets


Buckets = Annotated[list[float], AfterValidator(_ascending)]


class MetricsConfig(Section):
    enabled: bool = Field(
        True, description="Serve Prometheus metrics at /metrics on the dashboard's HTTP server."
    )
    sample_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often rates, status and the dashboard are refreshed."
    )
    rate_window_s: float = Field(
        3.0, gt=0, description="FPS, request rates and mean latency are averaged over this window."
    )
    quality_window_s: float = Field(
        60.0,
        gt=0,
        description="Connection quality = share of this window the camera was online and "
        "delivering frames.",
    )
    stall_after_s: float = Field(
        5.0, gt=0, description="An online camera that decoded nothing for this long counts as stalled."
    )
    triton_statistics_interval_s: float = Field(
        5.0, gt=0, description="How often Triton's statistics API (batch sizes, queue time) is read."
    )
    triton_statistics_timeout_s: float = Field(
        2.0, gt=0, description="Give up one statistics request after this long."
    )
    latency_buckets_s: Buckets = Field(
        default_factory=lambda: list(DEFAULT_LATENCY_BUCKETS_S),
        description="Histogram buckets of capture-to-result latency, seconds.",
    )
    stage_buckets_s: Buckets = Field(
        default_factory=lambda: list(DEFAULT_STAGE_BUCKETS_S),
        description="Histogram buckets of per-stage latency, seconds.",
    )
    ready_min_streaming_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="/readyz answers 200 only while at least this share of the enabled cameras "
        "is streaming (cameras whose file finished are left out); 0 = cameras never block "
        "readiness, only the inference server does.",
    )


class CameraApiConfig(Section):
    """The camera API (/api/cameras, /api/reload) and who may change cameras through it."""

    enabled: bool = Field(
        True,
        description="Serve the camera API on the dashboard's server: reading needs what the "
        "dashboard needs; changes need the token.",
    )
    allow_unauthenticated_loopback: bool = Field(
        False,
        description="With no dashboard.token, accept changes from loopback clients (127.0.0.1, "
        "::1) anyway. Off: without a token every change is refused.",
    )
    store_secrets: bool = Field(
        False,
        description="Write a camera URL holding credentials, as sent through the API, into the "
        "config file. Off: such a request is refused with 422; send the credentials as "
        "${ENV_VAR} references (set in the service's environment, listed in env_allowed) instead.",
    )
    env_allowed: list[str] = Field(
        default_factory=list,
        description="Environment variables a camera sent through the API may name as ${VAR}, "
        "and only in the user:password@ part or a query value of its URL (e.g. "
        "[LOBBY_PASSWORD]). Any other ${...} in API input is refused: the environment is the "
        "file's feature, not the API's.",
    )
    file_folders: list[Path] = Field(
        default_factory=list,
        description="Folders (and their subfolders) a file camera sent through the API may "
        "name; empty = the config file's folder (none when the service runs without a file). "
        "The config file itself may name any file.",
    )
    stream_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Hosts a stream camera sent through the API may name: names, addresses, "
        "networks (10.0.0.0/8), '*' = any other host. Loopback (localhost, 127.0.0.0/8, ::1), "
        "unspecified (0.0.0.0, ::) and link-local (169.254.0.0/16, fe80::/10) addresses are "
        "refused unless listed by address or network ('*' does not cover them); names are "
        "resolved and every address they resolve to is checked. E.g. ['*', 127.0.0.1] adds a "
        "local RTSP proxy; [10.20.0.0/16] allows the camera network only.",
    )
    stream_schemes: list[str] = Field(
        default_factory=list,
        description="URL schemes a stream camera sent through the API may use (e.g. [rtsp, "
        "rtsps]); empty = every stream scheme the service reads.",
    )
    allow_listeners: bool = Field(
        False,
        description="Accept cameras through the API whose URL makes the service listen for a "
        "sender (udp://, ?listen=1, mode=listener, an unspecified address such as 0.0.0.0). "
        "Off: such a request is refused with 422.",
    )

    @field_validator("env_allowed")
    @classmethod
    def _variable_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"'{name}' is not an environment variable name (letters, digits, _)")
        return names

    @field_validator("stream_hosts")
    @classmethod
    def _hosts_or_networks(cls, hosts: list[str]) -> list[str]:
        cleaned = []
        for host in hosts:
            name = host.strip().lower().rstrip(".").strip("[]")
            if name == "*":
                pass
            elif "/" in name:
                try:
                    ipaddress.ip_network(name, strict=False)
                except ValueError:
                    raise ValueError(f"'{host}' is not a network (e.g. 10.0.0.0/8)") from None
            elif not HOST_NAME.fullmatch(name):
                raise ValueError(f"'{host}' is not a host name, address or network")
            cleaned.append(name)
        return cleaned

    @field_validator("stream_schemes")
    @classmethod
    def _lower_case_schemes(cls, schemes: list[str]) -> list[str]:
        return [scheme.strip().lower().removesuffix("://") for scheme in schemes]


class DashboardConfig(Section):
    enabled: bool = Field(
        True,
        description="Run the HTTP server: the dashboard page, its JSON API (`streamer stats`) "
        "and /metrics. False serves nothing.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on; keep loopback unless a token is set (e.g. 0.0.0.0).",
    )
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free port.")
    token: SecretStr | None = Field(
        None,
        description=f"Access token required on every request (Authorization: Bearer, or "
        f"?token=); use ${{STREAMER_DASHBOARD_TOKEN}}. At least {MIN_TOKEN_LENGTH} characters "
        f"({TOKEN_HINT}). Empty = no token.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (no port) the dashboard answers to, besides localhost, IP "
        "addresses and the listen address: a request naming another Host gets 421, so a web page "
        "that re-points its own name at this address (DNS rebinding) cannot read it. Needed to "
        "reach the dashboard by a name (e.g. streamer.example.com, or behind a proxy) when no "
        "token is set; with a token and this list empty, any Host is accepted. '*' accepts any "
        "Host. /healthz and /readyz answer any Host (Kubernetes probes send the pod's IP).",
    )
    history_points: int = Field(
        120, ge=2, le=3600, description="Samples kept per camera for the page's sparklines."
    )
    live_view_max_fps: float = Field(
        2.0,
        gt=0,
        le=10,
        validation_alias=AliasChoices("live_view_max_fps", "snapshot_max_fps"),
        description="At most this many live view pictures per second kept per camera "
        "(formerly snapshot_max_fps, still accepted).",
    )
    live_view_watch_s: float = Field(
        5.0,
        gt=0,
        validation_alias=AliasChoices("live_view_watch_s", "snapshot_watch_s"),
        description="Pictures are kept only while the live view of that camera was requested "
        "within this time (someone is watching; formerly snapshot_watch_s, still accepted).",
    )
    live_view_max_width: int = Field(
        960,
        ge=64,
        validation_alias=AliasChoices("live_view_max_width", "snapshot_max_width"),
        description="Live view pictures wider than this are scaled down before encoding "
        "(formerly snapshot_max_width, still accepted).",
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of live view pictures.")
    label_fields: list[str] = Field(
        default_factory=lambda: ["name", "global_id"],
        description="Track data fields shown next to the track id on live view pictures, first present wins.",
    )
    shutdown_timeout_s: float = Field(
        2.0, gt=0, description="Open connections are closed after this long when stopping."
    )
    max_connections: int = Field(
        256,
        ge=8,
        le=100_000,
        description="Open connections the server keeps at most. At the cap a new connection "
        "closes the longest-idle one (no request under way), or else the oldest, so the probes "
        "/healthz and /readyz always get an answer; the process's open-file limit is raised "
        "to its hard limit at start.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A new connection that has not sent a whole request head in this time is "
        "closed (silent or slow clients hold no file descriptor for long).",
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A kept-alive connection with no request for this long is closed.",
    )
    api: CameraApiConfig = Field(
        default_factory=CameraApiConfig,
        description="Cameras at runtime: the REST API, reload and who may change cameras.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        """Names as the Host header carries them, minus the port: lower case, no trailing dot."""
        names = []
        for host in hosts:
            name = host.strip().lower().rstrip(".")
            if name != "*" and not HOST_NAME.fullmatch(name):
                raise ValueError(
                    f"'{host}' is not a host name (write a name or address without scheme or "
                    "port, e.g. streamer.example.com, or '*' for any)"
                )
            names.append(name.strip("[]"))
        return names

    @field_validator("token")
    @classmethod
    def _empty_means_none(cls, token: SecretStr | None) -> SecretStr | None:
        """Empty means none; a short token is refused (the value is never shown)."""
        if token is None or not token.get_secret_value():
            return None
        if len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the token has {len(token.get_secret_value())} characters; at least "
                f"{MIN_TOKEN_LENGTH} are needed ({TOKEN_HINT})"
            )
        return token
