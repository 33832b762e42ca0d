"""The `cameras` section: one entry per camera (a stream URL or a video file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from streamer.config.analytics import LineConfig, ZoneConfig
from streamer.config.base import MAX_DELAY_S, BackoffConfig, LocatedError, Section, registered
from streamer.config.motion import MotionConfig

CAMERA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
FILE_SCHEMES = ("", "file")  # a path, or file://; everything else is a stream
ENCODE_HINT = (
    "percent-encode '/', '?', '#', '@', '[' and ']' in a user name or password "
    "(%2F, %3F, %23, %40, %5B, %5D)"
)


class ReconnectConfig(BackoffConfig):
    """A camera's reconnect backoff; a connection that delivered long enough starts it over."""

    initial_delay_s: float = Field(
        1.0, gt=0, le=MAX_DELAY_S, description="Delay before the first reconnect attempt."
    )
    healthy_after_s: float = Field(
        10.0,
        gt=0,
        le=MAX_DELAY_S,
        description="A connection that delivered frames this long resets the backoff.",
    )


class CameraConfig(Section):
    name: str = Field(
        description="Unique camera name; used in topics, metric labels and output.",
        pattern=CAMERA_NAME_PATTERN,
    )
    url: str = Field(
        description="rtsp://, rtsps://, http(s):// stream, or a video file path. Credentials "
        "(user:password@, or user/password/pwd/token/key/auth/secret=... in the query or the path) "
        "are hidden in logs, check, metrics, the dashboard and messages. Keep them out of the file: "
        "${CAM_PASSWORD} (an error if unset), ${VAR:-default} (the default when unset or empty), "
        "$$ for a literal $; percent-encode / ? # @ [ ] in a user name or password."
    )
    enabled: bool = Field(True, description="Disabled cameras are validated but not started.")
    max_fps: float | None = Field(
        None, gt=0, description="Cap on frames sent to detection per second; None = every frame."
    )
    weight: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Share of the detector when cameras ask for more than it gives: a camera of "
        "weight 2 gets twice the processed FPS of a camera of weight 1 (frames in flight scale "
        "with it too). A camera that floods frames never gets more than its share. Exact while "
        "the service's queue holds a backlog (more frames waiting than fit in the requests in "
        "flight); with few cameras whose frames all fit, shares follow frames in flight, "
        "less exactly.",
    )
    decode_threads: int = Field(
        1,
        ge=0,
        le=64,
        description="FFmpeg decoding threads for this camera: 1 decodes in the camera's own "
        "thread (the cheapest with several cameras: no threads waking each other); 0 lets "
        "FFmpeg choose (one very large stream on many cores).",
    )
    loop: bool = Field(False, description="Files only: start again from the beginning at the end.")
    pacing: Literal["realtime", "fast"] = Field(
        "realtime",
        description="Files only: 'realtime' plays at the file's frame rate and drops frames "
        "the pipeline cannot keep up with, like a live camera (demos); 'fast' decodes as fast "
        "as the pipeline consumes, without drops (benchmarks, batch processing).",
    )
    open_timeout_s: float = Field(
        10.0, gt=0, le=MAX_DELAY_S, description="Give up opening the stream after this."
    )
    read_timeout_s: float = Field(
        5.0, gt=0, le=MAX_DELAY_S, description="A stream that delivers nothing for this long is reconnected."
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Backoff between reconnect attempts."
    )
    motion: MotionConfig = Field(
        default_factory=MotionConfig,
        description="Motion-gated detection: frames without motion skip the detector.",
    )
    zones: list[ZoneConfig] = Field(
        default_factory=list,
        description="Polygons where entering, leaving and loitering are reported, and occupancy kept.",
    )
    lines: list[LineConfig] = Field(
        default_factory=list, description="Lines whose crossings are reported and counted by direction."
    )

    @model_validator(mode="after")
    def _unique_zone_and_line_names(self) -> CameraConfig:
        for kind, names in (("zones", [z.name for z in self.zones]), ("lines", [x.name for x in self.lines])):
            first: dict[str, int] = {}
            for index, name in enumerate(names):
                if name in first:
                    raise LocatedError(
                        f"duplicate {kind[:-1]} name '{name}' in camera '{self.name}' (first used "
                        f"at {kind}[{first[name]}])", (kind, index, "name"),
                    )
                first[name] = index
        return self

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str, info: ValidationInfo) -> str:
        """A URL that cannot be parsed is one config line here, not a traceback at start; the
        message never shows the URL, which may hold credentials."""
        try:
            parts = urlsplit(url)
            scheme = url_scheme(url)
            if scheme not in FILE_SCHEMES:
                parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            problem = "unbalanced '[' or ']'" if "IPv6" in str(exc) else "the port is not a number 0-65535"
            raise ValueError(f"malformed URL: {problem}; {ENCODE_HINT}") from None
        known = registered(info)
        if known is not None and scheme not in FILE_SCHEMES and scheme not in known.url_schemes:
            streams = sorted(s for s in known.url_schemes if s not in FILE_SCHEMES)
            raise ValueError(
                f"unsupported URL scheme '{scheme}' (expected {', '.join(streams)}, "
                "file:// or a file path)"
            )
        return url

    @property
    def motion_gated(self) -> bool:
        """Whether frames without motion skip detection (default: live streams yes, files no)."""
        return self.motion.enabled if self.motion.enabled is not None else not self.is_file

    @property
    def scheme(self) -> str:
        """The URL's scheme in lower case; "" for a file path."""
        return url_scheme(self.url)

    @property
    def is_file(self) -> bool:
        return self.scheme in FILE_SCHEMES

    @property
    def file_path(self) -> Path:
        parts = urlsplit(self.url)
        return Path(parts.path if parts.scheme.lower() == "file" else self.url)


def url_scheme(url: str) -> str:
    """The scheme of a camera URL in lower case; "" for a path (one letter is a Windows drive)."""
    scheme = urlsplit(url).scheme.lower()
    return scheme if len(scheme) > 1 else ""
