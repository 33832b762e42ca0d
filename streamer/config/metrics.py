"""The `metrics` and `dashboard` sections."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, field_validator

from streamer.config.base import Section

DEFAULT_LATENCY_BUCKETS_S = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
DEFAULT_STAGE_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
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
        "${ENV_VAR} references (set in the service's environment) instead.",
    )


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
        description="Access token required on every request (Authorization: Bearer, or "
        "?token=); use ${STREAMER_DASHBOARD_TOKEN}. Empty = no token.",
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
        return token if token is not None and token.get_secret_value() else None
