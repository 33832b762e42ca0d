"""Service configuration: one pydantic model per section, unknown keys rejected.

Every problem is reported as one line `FILE:LINE: key.path: what is wrong`, so an operator can go
straight to it. `${VAR}` / `${VAR:-default}` in any string is replaced from the environment, which
keeps passwords out of the file.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streamer.identities.settings import FacesConfig, IdentitiesConfig, ReidConfig
from streamer.metrics.settings import DashboardConfig, MetricsConfig
from streamer.publishing.settings import MqttSinkConfig, RedisSinkConfig
from streamer.section import Section

CAMERA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt")


class ReconnectConfig(Section):
    initial_delay_s: float = Field(1.0, gt=0, description="Delay before the first reconnect attempt.")
    max_delay_s: float = Field(30.0, gt=0, description="Cap on the exponential reconnect delay.")
    multiplier: float = Field(2.0, ge=1, description="Growth of the delay after each failed attempt.")
    healthy_after_s: float = Field(
        10.0, gt=0, description="A connection that delivered frames this long resets the backoff."
    )


class CameraConfig(Section):
    name: str = Field(
        description="Unique camera name; used in topics, metric labels and output.",
        pattern=CAMERA_NAME_PATTERN,
    )
    url: str = Field(description="rtsp://, rtsps://, http(s):// stream, or a video file path.")
    enabled: bool = Field(True, description="Disabled cameras are validated but not started.")
    max_fps: float | None = Field(
        None, gt=0, description="Cap on frames sent to detection per second; None = every frame."
    )
    loop: bool = Field(False, description="Files only: start again from the beginning at the end.")
    pacing: Literal["realtime", "fast"] = Field(
        "realtime",
        description="Files only: 'realtime' plays at the file's frame rate and drops frames "
        "the pipeline cannot keep up with, like a live camera (demos); 'fast' decodes as fast "
        "as the pipeline consumes, without drops (benchmarks, batch processing).",
    )
    open_timeout_s: float = Field(10.0, gt=0, description="Give up opening the stream after this.")
    read_timeout_s: float = Field(
        5.0, gt=0, description="A stream that delivers nothing for this long is reconnected."
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Backoff between reconnect attempts."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme.lower()
        if scheme in STREAM_SCHEMES or scheme == "file":
            return url
        if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
            raise ValueError(
                f"unsupported URL scheme '{scheme}' (expected {', '.join(STREAM_SCHEMES)}, "
                "file:// or a file path)"
            )
        return url

    @property
    def is_file(self) -> bool:
        return urlsplit(self.url).scheme.lower() not in STREAM_SCHEMES

    @property
    def file_path(self) -> Path:
        parts = urlsplit(self.url)
        return Path(parts.path if parts.scheme.lower() == "file" else self.url)


def _on_off(value: Any) -> Any:
    """YAML reads an unquoted `off`/`on` as a boolean; take it as meant."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


class TritonConfig(Section):
    mode: Literal["embedded", "external"] = Field(
        "embedded",
        description="'embedded' starts the tritonserver shipped in nvidia-pytriton on loopback "
        "(CPU, ONNX Runtime); 'external' connects to `url`.",
    )
    url: str = Field("127.0.0.1:8001", description="gRPC host:port of an external Triton server.")
    model_repository: Path = Field(
        Path("model_repository"),
        description="The model repository (config.pbtxt per model); a relative path is taken "
        "relative to the config file; the default is the project's own.",
    )
    shared_memory: Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)] = Field(
        "auto",
        description="Pass tensors through system shared memory; 'auto' = when the server is "
        "on this host (embedded, or an external URL on loopback).",
    )
    startup_timeout_s: float = Field(120.0, gt=0, description="Wait this long for server ready.")
    request_timeout_s: float = Field(10.0, gt=0, description="Deadline of one inference request.")
    ort_threads: int = Field(
        0,
        ge=0,
        description="Embedded: ONNX Runtime intra-op threads per model instance; 0 = the cores "
        "divided by the model's instance count.",
    )
    log_verbose: int = Field(0, ge=0, description="Embedded: tritonserver --log-verbose level.")


class InferenceConfig(Section):
    requests_in_flight: int = Field(
        8,
        ge=1,
        description="Concurrent requests per model; Triton batches only concurrent requests, "
        "so this bounds the dynamic batch size.",
    )
    queue_size: int = Field(64, ge=1, description="Shared request queue length per model.")
    frames_in_flight_per_camera: int = Field(
        2,
        ge=1,
        description="Frames of one camera in detection at once: 2 overlaps one frame's round "
        "trip with the next; results still reach the tracker in frame order.",
    )


class DetectorConfig(Section):
    model: str = Field("person_detector", description="Model name in the model repository.")
    score_threshold: float = Field(
        0.1, ge=0, le=1, description="Lowest score kept; ByteTrack uses low-score boxes too."
    )
    nms_iou_threshold: float = Field(0.45, gt=0, le=1, description="IoU above which NMS merges.")
    class_ids: list[int] = Field(default_factory=lambda: [0], description="Classes kept (0=person).")
    max_detections: int = Field(300, ge=1, description="Upper bound of boxes kept per frame.")


class TrackerConfig(Section):
    track_high_thresh: float = Field(0.5, ge=0, le=1, description="First-association score.")
    track_low_thresh: float = Field(0.1, ge=0, le=1, description="Boxes below are ignored.")
    new_track_thresh: float = Field(0.6, ge=0, le=1, description="Score to start a new track.")
    match_thresh: float = Field(0.8, gt=0, le=1, description="IoU-distance gate, first stage.")
    track_buffer: int = Field(30, ge=1, description="Frames (at 30 fps) a lost track is kept.")
    frame_rate: float | None = Field(
        None, gt=0, description="Frame rate the buffer is scaled by; None = camera's rate."
    )


class JsonlSinkConfig(Section):
    enabled: bool = Field(True, description="Write one JSON line per processed frame.")
    path: str = Field("-", description="File to append to; '-' is standard output.")


class PublishingConfig(Section):
    jsonl: JsonlSinkConfig = Field(
        default_factory=JsonlSinkConfig, description="JSON lines per processed frame."
    )
    mqtt: MqttSinkConfig = Field(default_factory=MqttSinkConfig, description="MQTT topics.")
    redis: RedisSinkConfig = Field(default_factory=RedisSinkConfig, description="Redis streams.")


class StreamerConfig(Section):
    assets_dir: Path | None = Field(
        None, description="Weights and footage; default $STREAMER_ASSETS, then ../shared."
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
    cameras: Annotated[list[CameraConfig], Field(min_length=1)] = Field(
        description="The cameras to process."
    )

    @model_validator(mode="after")
    def _unique_camera_names(self) -> StreamerConfig:
        first_index: dict[str, int] = {}
        for index, camera in enumerate(self.cameras):
            if camera.name in first_index:
                raise _DuplicateName(camera.name, index, first_index[camera.name])
            first_index[camera.name] = index
        return self

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]


class _DuplicateName(ValueError):
    def __init__(self, name: str, index: int, first: int) -> None:
        super().__init__(f"duplicate camera name '{name}' (first used at cameras[{first}])")
        self.loc: tuple[str | int, ...] = ("cameras", index, "name")


class ConfigError(Exception):
    """Configuration problems, one line each: `FILE:LINE: key.path: message`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


Loc = tuple[str | int, ...]
_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_map(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    """Remember the 1-based line of every key path, for messages an operator can act on."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*loc, str(key_node.value))
            _line_map(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*loc, index), lines)


def _interpolate(value: Any, loc: Loc, env: dict[str, str], missing: list[tuple[Loc, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), env, missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append((loc, name))
        return ""

    return _ENV_PATTERN.sub(replace, value)


def _describe(error: Any) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind in {"value_error", "assertion_error"}:
        return loc, message
    return loc, f"{message} (got {error.get('input')!r})"


def _suggest(loc: Loc) -> str:
    """For an unknown key, name the closest valid key of that section."""
    model: Any = StreamerConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type)]
        model = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_config(
    text: str, source: str = "<config>", env: dict[str, str] | None = None
) -> StreamerConfig:
    """Parse YAML text into a validated config, or raise ConfigError with one line per problem."""
    env = dict(os.environ) if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: expected a mapping with a 'cameras' list at the top level"])
    lines: dict[Loc, int] = {}
    if root is not None:
        _line_map(root, (), lines)

    def line_of(loc: Loc) -> str:
        for end in range(len(loc), -1, -1):
            if loc[:end] in lines:
                return f"{source}:{lines[loc[:end]]}"
        return source

    missing: list[tuple[Loc, str]] = []
    data = _interpolate(raw, (), env, missing)
    if missing:
        raise ConfigError(
            [f"{line_of(loc)}: {format_loc(loc)}: environment variable {name} is not set"
             for loc, name in missing]
        )
    try:
        return StreamerConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe(error)
            context = error.get("ctx") or {}
            inner = context.get("error")
            if isinstance(inner, _DuplicateName):
                loc = inner.loc
            if message == "unknown key":
                message += _suggest(loc)
            problems.append(f"{line_of(loc)}: {format_loc(loc)}: {message}")
        raise ConfigError(problems) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> StreamerConfig:
    """Load a YAML file; relative camera file paths are taken relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    config = parse_config(text, str(path), env)
    base = path.resolve().parent
    # Paths the operator wrote are relative to the file; defaults stay the project's own.
    repository = config.triton.model_repository
    if "model_repository" in config.triton.model_fields_set and not repository.is_absolute():
        config.triton.model_repository = Path(os.path.normpath(base / repository))
    store = config.identities.faces_store
    if "faces_store" in config.identities.model_fields_set and not store.is_absolute():
        config.identities.faces_store = Path(os.path.normpath(base / store))
    for camera in config.cameras:
        if camera.is_file and not camera.file_path.is_absolute():
            camera.url = os.path.normpath(base / camera.file_path)
    return config


def redact_url(url: str) -> str:
    """Hide credentials in a URL before it reaches a log, a metric or a message."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()


def _type_name(annotation: Any) -> str:
    if getattr(annotation, "__origin__", None) is Literal:
        return " \\| ".join(repr(a) for a in annotation.__args__)
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation)
    for module in ("typing.", "pathlib.", "pydantic.types."):
        text = text.replace(module, "")
    return text.replace("|", "\\|")


def _plain(value: Any) -> str:
    return str(value) if isinstance(value, Path) else repr(value)


def reference_markdown() -> str:
    """The configuration reference, generated from the models so it never drifts from the code."""
    lines = ["# Configuration reference", "", "Generated from `streamer/config.py` "
             "(`python -m streamer.config > docs/configuration.md`).", ""]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows, nested = [], []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            args = getattr(annotation, "__args__", ())
            inner = next(
                (a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )
            key = f"{prefix}{name}"
            if inner is not None:
                suffix = "[]" if getattr(annotation, "__origin__", None) is list else ""
                nested.append((inner, f"{key}{suffix}.", field.description or ""))
                continue
            default = field.get_default(call_default_factory=True)
            shown = "required" if field.is_required() else f"`{_plain(default)}`"
            rows.append(f"| `{key}` | {_type_name(annotation)} | {shown} | {field.description or ''} |")
        if rows:
            lines.extend(["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        for inner, child_prefix, description in nested:
            lines.extend([f"## `{child_prefix.rstrip('.')}`", "", description, ""])
            walk(inner, child_prefix)

    walk(StreamerConfig, "")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
