"""The `tracker` section: the ByteTrack numbers an operator may tune (the rest keep its defaults)."""

from __future__ import annotations

from pydantic import Field

from streamer.config.base import Section
from trackers import ByteTrackSettings

_DEFAULTS = ByteTrackSettings()


class TrackerConfig(Section):
    track_high_thresh: float = Field(
        _DEFAULTS.track_high_thresh, ge=0, le=1, description="First-association score."
    )
    track_low_thresh: float = Field(
        _DEFAULTS.track_low_thresh, ge=0, le=1, description="Boxes below are ignored."
    )
    new_track_thresh: float = Field(
        _DEFAULTS.new_track_thresh, ge=0, le=1, description="Score to start a new track."
    )
    match_thresh: float = Field(
        _DEFAULTS.match_thresh, gt=0, le=1, description="IoU-distance gate, first stage."
    )
    track_buffer: int = Field(
        _DEFAULTS.track_buffer, ge=1, description="Frames (at 30 fps) a lost track is kept."
    )
    frame_rate: float | None = Field(
        None, gt=0, description="Frame rate the buffer is scaled by; None = camera's rate."
    )

    def bytetrack_settings(self, camera_frame_rate: float) -> ByteTrackSettings:
        """The tracker's full settings for a camera delivering `camera_frame_rate` frames/s."""
        rate = self.frame_rate or camera_frame_rate
        return ByteTrackSettings(
            **self.model_dump(exclude={"frame_rate"}), frame_rate=max(1, round(rate))
        )
