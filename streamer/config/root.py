"""`StreamerConfig`: every section assembled in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from streamer.config.analytics import AnalyticsConfig
from streamer.config.base import LocatedError, Section
from streamer.config.cameras import CameraConfig
from streamer.config.detector import DetectorConfig
from streamer.config.identities import FacesConfig, IdentitiesConfig, ReidConfig
from streamer.config.metrics import DashboardConfig, MetricsConfig
from streamer.config.publishing import PublishingConfig
from streamer.config.serving import InferenceConfig, TritonConfig
from streamer.config.snapshots import SnapshotsConfig
from streamer.config.tracker import TrackerConfig


class StreamerConfig(Section):
    assets_dir: Path | None = Field(
        None,
        description="Demo weights (`models/`) and footage; default $STREAMER_ASSETS, else the "
        "nearest folder named `shared` in the config file's folder or above it (a `shared/` "
        "beside a checkout serves its configs/).",
    )
    triton: TritonConfig = Field(default_factory=TritonConfig, description="Inference server.")
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="Request scheduling."
    )
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Person detector.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="ByteTrack settings.")
    publishing: PublishingConfig = Field(
        default_factory=PublishingConfig, description="Where results go."
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics.")
    dashboard: DashboardConfig = Field(
        default_factory=DashboardConfig, description="Live dashboard, JSON API and /metrics server."
    )
    faces: FacesConfig = Field(default_factory=FacesConfig, description="Faces per track.")
    reid: ReidConfig = Field(default_factory=ReidConfig, description="Person ReID per track.")
    identities: IdentitiesConfig = Field(
        default_factory=IdentitiesConfig, description="Enrolled faces, cross-camera identities."
    )
    analytics: AnalyticsConfig = Field(
        default_factory=AnalyticsConfig, description="Zones and lines (drawn per camera)."
    )
    snapshots: SnapshotsConfig = Field(
        default_factory=SnapshotsConfig,
        description="Event pictures (best view, annotated frame) and the events index.",
    )
    cameras: Annotated[list[CameraConfig], Field(min_length=1)] = Field(
        description="The cameras to process."
    )

    @model_validator(mode="after")
    def _unique_camera_names(self) -> StreamerConfig:
        first_index: dict[str, int] = {}
        for index, camera in enumerate(self.cameras):
            if camera.name in first_index:
                raise DuplicateCameraName(camera.name, index, first_index[camera.name])
            first_index[camera.name] = index
        return self

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]


class DuplicateCameraName(LocatedError):
    """Raised inside validation; `loc` points the error at the second use of the name."""

    def __init__(self, name: str, index: int, first: int) -> None:
        super().__init__(
            f"duplicate camera name '{name}' (first used at cameras[{first}])", ("cameras", index, "name")
        )
