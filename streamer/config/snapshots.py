"""The `snapshots` section: a picture of each event (track end, zone, line), kept on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from streamer.config.base import Section
from streamer.core.events import LineCrossEvent, TrackEventType, ZoneEventType

# The events that get a picture: a track's end and every zone and line event (their names are
# the event types' own).
SNAPSHOT_EVENT_NAMES = (TrackEventType.END.value, *(kind.value for kind in ZoneEventType),
                        LineCrossEvent.type)
if TYPE_CHECKING:
    SnapshotEventType = str
else:
    SnapshotEventType = Literal[SNAPSHOT_EVENT_NAMES]
ALL_SNAPSHOT_EVENTS: list[SnapshotEventType] = list(SNAPSHOT_EVENT_NAMES)


class SnapshotsConfig(Section):
    enabled: bool = Field(
        False,
        description="Write a JPEG crop (the track's best view) and an annotated frame for each "
        "event in `events`, index the events for GET /api/events. Off by default: it keeps "
        "pictures of people on disk.",
    )
    directory: Path = Field(
        Path("snapshots"),
        description="Where pictures and the events index (events.sqlite3) go; beside the config "
        "file by default. Created when missing.",
    )
    events: list[SnapshotEventType] = Field(
        default_factory=lambda: list(ALL_SNAPSHOT_EVENTS),
        description="Event types that get a picture and an entry in the events index.",
    )
    min_track_frames: int = Field(
        3, ge=1, description="A track seen in fewer frames gets no picture when it ends (noise)."
    )
    max_age_h: float = Field(
        168.0, gt=0, description="Pictures and indexed events older than this are deleted (hours)."
    )
    max_total_mb: float = Field(
        1024.0, gt=0, description="Pictures beyond this total size are deleted, oldest first (MB)."
    )
    max_events: int = Field(
        1_000_000, ge=1, description="The events index keeps at most this many events, dropping "
        "the oldest (checked every `prune_interval_s`)."
    )
    min_free_mb: float = Field(
        1024.0,
        ge=0,
        description="Never fill the disk: below this much free space, no picture is written "
        "(counted as `snapshots_dropped_disk_floor`) until retention or the operator frees some.",
    )
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of written pictures.")
    frame_max_width: int = Field(
        960, ge=64, description="Annotated frames (and the frames held for them) are scaled down "
        "to this width, pixels."
    )
    crop_margin: float = Field(
        0.1, ge=0, le=1, description="The crop extends the box by this fraction of its size."
    )
    sharp_laplacian_variance: float = Field(
        100.0, gt=0, description="Laplacian variance of a sharp crop (view quality: blur lowers it)."
    )
    better_by: float = Field(
        0.1, ge=0, description="A new view replaces the best so far when its quality is higher "
        "by this fraction (less churn)."
    )
    max_held_mb: float = Field(
        256.0, gt=0, description="Memory for the best views held until tracks end; beyond it "
        "new best views are not kept (counted as `snapshots_dropped_memory`)."
    )
    queue_size: int = Field(
        64, ge=1, description="Pictures waiting for the writer thread; beyond it an event goes "
        "without picture (counted as `snapshots_dropped_queue_full`), the pipeline never waits."
    )
    prune_interval_s: float = Field(
        60.0, gt=0, description="How often age retention and the free-space floor are checked."
    )
