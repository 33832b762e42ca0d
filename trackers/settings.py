"""Tunable parameters of ByteTrack, with the defaults of the reference implementation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteTrackSettings:
    """Every number ByteTrack uses. Defaults follow ByteTrack's MOT17 setup.

    Scores are in [0, 1]; association gates are IoU *distances* (1 - IoU), so a larger gate
    accepts looser overlaps.
    """

    track_high_thresh: float = 0.5
    """Detections scoring at least this take part in the first association."""
    track_low_thresh: float = 0.1
    """Detections scoring below this are ignored; those in [low, high) are used only to keep
    existing tracks alive in the second association (the "BYTE" idea)."""
    new_track_thresh: float = 0.6
    """An unmatched high-score detection starts a new track only if it scores at least this."""
    match_thresh: float = 0.8
    """Largest IoU distance accepted in the first association (tracked and lost tracks)."""
    second_match_thresh: float = 0.5
    """Largest IoU distance accepted between still-unmatched tracks and low-score detections."""
    unconfirmed_match_thresh: float = 0.7
    """Largest IoU distance accepted between tentative (one-frame) tracks and detections."""
    track_buffer: int = 30
    """Frames, counted at `track_buffer_fps`, that a lost track is kept for re-identification."""
    track_buffer_fps: float = 30.0
    """Frame rate at which `track_buffer` is counted; the buffer scales by frame_rate / this."""
    frame_rate: float = 30.0
    """Frame rate of the stream being tracked."""
    fuse_score: bool = True
    """Multiply IoU similarity by detection score in first and unconfirmed associations, so
    confident detections win ties (ByteTrack's default for MOT17; off for crowded MOT20)."""
    min_box_area: float = 0.0
    """Tracks whose smoothed box is smaller than this (pixels²) are kept but not reported."""
    duplicate_iou_distance: float = 0.15
    """A tracked and a lost track closer than this IoU distance are duplicates: the younger
    one is dropped."""
    std_weight_position: float = 1.0 / 20
    """Kalman noise of the box centre and height, as a fraction of the box height."""
    std_weight_velocity: float = 1.0 / 160
    """Kalman noise of the centre and height velocities, as a fraction of the box height."""
    std_aspect_position: float = 1e-2
    """Kalman process noise of the aspect ratio (width / height), absolute."""
    std_aspect_velocity: float = 1e-5
    """Kalman process noise of the aspect-ratio velocity, absolute."""
    std_aspect_measurement: float = 1e-1
    """Kalman measurement noise of the aspect ratio, absolute."""
    initial_position_std_factor: float = 2.0
    """A new track's position uncertainty is this many times the per-frame position noise."""
    initial_velocity_std_factor: float = 10.0
    """A new track's velocity uncertainty is this many times the per-frame velocity noise."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.track_low_thresh <= self.track_high_thresh <= 1.0:
            raise ValueError("need 0 <= track_low_thresh <= track_high_thresh <= 1")
        if not 0.0 <= self.new_track_thresh <= 1.0:
            raise ValueError("new_track_thresh must lie in [0, 1]")
        if self.track_buffer < 0 or self.frame_rate <= 0 or self.track_buffer_fps <= 0:
            raise ValueError("track_buffer must be >= 0 and the frame rates > 0")

    @property
    def max_frames_lost(self) -> int:
        """Frames a lost track survives at this stream's frame rate (ByteTrack's scaling)."""
        return int(self.frame_rate / self.track_buffer_fps * self.track_buffer)
