"""Service configuration: one pydantic model per section, unknown keys rejected.

One module per section; `StreamerConfig` assembles them (`root`), `loader` reads a file into it
with file/line/key-path errors, `reference` writes the generated documentation. Stage folders
import their section from here; nothing here imports a stage.
"""

from streamer.config.analytics import AnalyticsConfig, LineConfig, ZoneConfig
from streamer.config.base import BackoffConfig, Registered, Section
from streamer.config.cameras import (
    CAMERA_NAME_PATTERN,
    FILE_SCHEMES,
    CameraConfig,
    ReconnectConfig,
)
from streamer.config.detector import DetectorConfig
from streamer.config.identities import (
    CalibrationConfig,
    FaceMode,
    FacesConfig,
    GalleryConfig,
    IdentitiesConfig,
    ReidConfig,
)
from streamer.config.loader import (
    ConfigError,
    format_loc,
    load_config,
    parse_config,
    resolve_relative_paths,
    validate_data,
)
from streamer.config.metrics import CameraApiConfig, DashboardConfig, MetricsConfig
from streamer.config.motion import MotionConfig
from streamer.config.publishing import (
    BrokerSinkConfig,
    DeliveryConfig,
    JsonlSinkConfig,
    MqttSinkConfig,
    PublishingConfig,
    RedisSinkConfig,
    TlsConfig,
)
from streamer.config.root import StreamerConfig
from streamer.config.serving import InferenceConfig, TritonConfig
from streamer.config.snapshots import ALL_SNAPSHOT_EVENTS, SnapshotEventType, SnapshotsConfig
from streamer.config.tracker import TrackerConfig

__all__ = [
    "ALL_SNAPSHOT_EVENTS",
    "CAMERA_NAME_PATTERN",
    "FILE_SCHEMES",
    "AnalyticsConfig",
    "BackoffConfig",
    "BrokerSinkConfig",
    "CalibrationConfig",
    "CameraApiConfig",
    "CameraConfig",
    "ConfigError",
    "DashboardConfig",
    "DeliveryConfig",
    "DetectorConfig",
    "FaceMode",
    "FacesConfig",
    "GalleryConfig",
    "IdentitiesConfig",
    "InferenceConfig",
    "JsonlSinkConfig",
    "LineConfig",
    "MetricsConfig",
    "MotionConfig",
    "MqttSinkConfig",
    "PublishingConfig",
    "ReconnectConfig",
    "RedisSinkConfig",
    "Registered",
    "ReidConfig",
    "Section",
    "SnapshotEventType",
    "SnapshotsConfig",
    "StreamerConfig",
    "TlsConfig",
    "TrackerConfig",
    "TritonConfig",
    "ZoneConfig",
    "format_loc",
    "load_config",
    "parse_config",
    "resolve_relative_paths",
    "validate_data",
]
