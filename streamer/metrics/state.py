"""The `/api/state` document: what the dashboard and `streamer stats` read, as typed models.

The server builds a `ServiceState` (`state_view.py`) and sends it as JSON; `streamer stats` parses
the JSON back into it; the page reads only what its JSON Schema declares (a test checks the page
against `state.schema.json`, the published schema, which a test keeps equal to these models:
`python -m streamer.metrics.state > streamer/metrics/state.schema.json`). Never holds a secret:
sources and details are redacted before they get here.

Readers ignore fields they do not know, so a newer server's additions do not break an older
`streamer stats`; `version` changes when a field changes meaning or goes away.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streamer.core.stats import CameraState

STATE_VERSION = 1
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic writes
SCHEMA_FILE = "state.schema.json"  # in this package: the published schema, reviewed with the code


class StateModel(BaseModel):
    """Base of every part of the state: documented fields, unknown fields ignored on reading."""

    model_config = ConfigDict(
        extra="ignore",
        use_attribute_docstrings=True,
        json_schema_serialization_defaults_required=True,  # the server always sends every field
    )


class ZoneFigures(StateModel):
    occupancy: int = 0
    """Confirmed tracks in the zone now."""
    events: dict[str, int] = Field(default_factory=dict)
    """Zone events counted since start, by event type (zone_enter, zone_exit, loitering)."""


class AnalyticsFigures(StateModel):
    zones: dict[str, ZoneFigures] = Field(default_factory=dict)
    """By zone name."""
    lines: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Line crossings since start, by line name and then direction name."""


class Sparklines(StateModel):
    fps: list[float] = Field(default_factory=list)
    """Processed frames per second at each recent sample, oldest first."""
    latency_ms: list[float | None] = Field(default_factory=list)
    """Mean capture-to-publish latency at each recent sample (null: no frame yet)."""


class StateChange(StateModel):
    time: float
    """Wall-clock time of the change (seconds since the epoch)."""
    status: CameraState
    detail: str | None = None
    """Why, when the state says something went wrong (redacted)."""


class CameraFigures(StateModel):
    """One enabled camera: its state, recent rates and counts since it started."""

    name: str
    source: str
    """The camera's URL or path, credentials redacted."""
    status: CameraState
    detail: str | None = None
    """Why, when the state says something went wrong (redacted)."""
    decoded_fps: float = 0.0
    processed_fps: float = 0.0
    latency_ms: float | None = None
    """Mean capture-to-publish latency over the recent window (null: no frame yet)."""
    quality: float = 1.0
    """Share of the recent window the camera was online and delivering frames (0-1)."""
    tracks: int = 0
    """People tracked in the latest frame."""
    decoded: int = 0
    processed: int = 0
    """Frames published: detected and tracked, or carried over by motion gating."""
    dropped: int = 0
    skipped: int = 0
    """Frames left out by the camera's max_fps cap."""
    motion_gated: bool = False
    """Whether the camera skips detection on frames without motion."""
    gated: int = 0
    """Frames published without detection (no motion)."""
    motion_area: float = 0.0
    """Moving share of the picture in the latest frame (0-1)."""
    reconnects: int = 0
    stream_errors: int = 0
    inference_errors: int = 0
    processing_restarts: int = 0
    history: Sparklines = Field(default_factory=Sparklines)
    state_history: list[StateChange] = Field(default_factory=list)
    """The latest state changes, oldest first."""
    analytics: AnalyticsFigures = Field(default_factory=AnalyticsFigures)


class ModelFigures(StateModel):
    """One served model, as the client and Triton's statistics see it."""

    name: str
    requests: int = 0
    items: int = 0
    """Frames or crops the answered requests carried."""
    failures: int = 0
    up: bool = True
    """False once several requests in a row failed (its backend dead or hung), until one answers."""
    last_error: str | None = None
    """Why it is down; null while up."""
    requests_per_s: float = 0.0
    max_batch_size: int | None = None
    requests_in_flight: int | None = None
    recent_batch: float | None = None
    """Mean batch size Triton ran since its previous statistics reading."""
    queue_ms: float | None = None
    """Mean time a request waited in Triton's queue, since the previous reading."""
    compute_ms: float | None = None
    """Mean time Triton computed a request, since the previous reading."""
    batch_executions: dict[str, int] = Field(default_factory=dict)
    """Model executions by batch size (Triton's statistics)."""


class SinkFigures(StateModel):
    name: str
    connected: bool = True
    published: int = 0
    buffered: int = 0
    dropped: int = 0
    errors: int = 0


class InferenceFigures(StateModel):
    """The inference server."""

    mode: str
    """embedded or external."""
    up: bool
    """Frames can be processed: the server is up and every model answers its requests."""
    problem: str | None = None
    """Why not (the server down, or which model); null while up."""
    restarts: int = 0
    down_for_s: float | None = None
    """Seconds since it went down (the server, or its first failing model); null while up."""


class PartFigures(StateModel):
    """An optional part (event pictures, the faces store, a sink): the cameras never stop for it."""

    name: str
    state: str
    """ok, degraded (e.g. pictures paused on a full disk) or unavailable (it could not open)."""
    problem: str | None = None
    """One line while the state is not ok."""


class IdentityStoreFigures(StateModel):
    """The store this instance shares its identity gallery through (`identities.gallery.backend`)."""

    backend: str
    """redis."""
    endpoint: str
    """host:port/db (never credentials)."""
    instance: str
    """This instance's name in the shared gallery."""
    connected: bool
    down_for_s: float | None = None
    """Seconds since the store was lost (or found unreachable); null while connected. Meanwhile
    matching goes on in this instance and its new global ids are provisional."""
    last_error: str | None = None
    outages: int = 0
    sent: int = 0
    """Changes written to the store."""
    applied: int = 0
    """Other instances' changes applied here."""
    queued: int = 0
    """Changes waiting for the store."""
    dropped: int = 0
    """Changes dropped from a full queue (the replica was written again instead)."""
    merges: int = 0
    """Global ids this instance found to be one person with another."""
    snapshots: int = 0
    """Times the replica was written again (the store lost its log, or changes were dropped)."""


class ApiAccess(StateModel):
    enabled: bool
    """The camera API is served."""
    mutations: bool
    """The page may offer camera controls (changes can be accepted)."""


class ServiceState(StateModel):
    """Everything the dashboard shows and `streamer stats` prints (`GET /api/state`, `/api/live`)."""

    version: int = STATE_VERSION
    time: float
    """Wall-clock time of this state (seconds since the epoch)."""
    uptime_s: float
    sample_interval_s: float
    """How often the figures are sampled (and /api/live sends a state)."""
    inference: InferenceFigures | None = None
    """Null until the inference server is started."""
    cameras: list[CameraFigures] = Field(default_factory=list)
    models: list[ModelFigures] = Field(default_factory=list)
    sinks: list[SinkFigures] = Field(default_factory=list)
    identity_store: IdentityStoreFigures | None = None
    """Null unless the identity gallery is shared through a store."""
    parts: list[PartFigures] = Field(default_factory=list)
    """Optional parts that report their health."""
    live_view_interval_s: float
    """The shortest time between two live view pictures of a camera (dashboard.live_view_max_fps)."""
    metrics_enabled: bool
    """/metrics is served."""
    api: ApiAccess
    events_enabled: bool
    """The events list and their pictures are served (snapshots.enabled)."""
    identities_enabled: bool = False
    """Cross-camera identities are served at /api/identities, with the operator's decisions
    (reid.enabled and the API enabled)."""


def state_schema() -> dict[str, Any]:
    """The JSON Schema of `ServiceState`, as published in `state.schema.json`."""
    schema = ServiceState.model_json_schema(mode="serialization")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def published_schema() -> bytes:
    """The schema file shipped with the package (served at /api/state/schema)."""
    return resources.files("streamer.metrics").joinpath(SCHEMA_FILE).read_bytes()


if __name__ == "__main__":
    print(json.dumps(state_schema(), indent=2))
