"""ByteTrack multi-object tracker (Zhang et al., ECCV 2022) on plain numpy arrays.

Follows the reference `BYTETracker.update` step by step: tracked and lost tracks against
high-score detections, still-unmatched tracked tracks against low-score ones, tentative tracks,
new tracks, expiry of lost tracks, duplicate removal. Deliberate differences: ids are numbered
when a track is confirmed (no gaps left by one-frame false positives) and per instance; a lost
track expires exactly `max_frames_lost` frames after it was last seen (the reference, by the
order of its list updates, keeps it matchable one frame longer), and that buffer counts time:
a caller that skipped frames (motion gating, a frame-rate cap) says how many frames' time passed
(`elapsed_frames`), the states are predicted that many steps and the frame count advances by it;
IoU uses continuous
coordinates (no +1 pixel); detection-score thresholds are inclusive (a score equal to
`track_high_thresh`, `track_low_thresh` or `new_track_thresh` passes it), where the reference
compares with a strict `>`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trackers.kalman import FloatArray, KalmanFilterXYAH, xyah_to_xyxy, xyxy_to_xyah
from trackers.matching import IndexArray, fuse_score, iou_distance, linear_assignment
from trackers.settings import ByteTrackSettings

_HEIGHT_VELOCITY = 7  # state index zeroed while a track is not observed, as ByteTrack does


class _State(enum.Enum):
    TRACKED = enum.auto()
    LOST = enum.auto()


@dataclass(eq=False)
class _Track:
    """One target hypothesis; compared and hashed by identity, so it can sit in sets."""

    mean: FloatArray
    covariance: FloatArray
    score: float
    detection_index: int
    start_frame: int
    last_frame: int
    state: _State = _State.TRACKED
    track_id: int = 0
    """0 while tentative; numbered when confirmed."""

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0


@dataclass(frozen=True, eq=False)  # field-wise == is ambiguous on numpy arrays
class TrackerOutput:
    """Confirmed tracks matched in this frame (struct of arrays, sorted by id) and events."""

    tracker_id: npt.NDArray[np.int64]
    """(M,) identity of each reported track."""
    xyxy: npt.NDArray[np.float32]
    """(M, 4) Kalman-smoothed box after this frame's correction."""
    score: npt.NDArray[np.float32]
    """(M,) score of the detection matched this frame."""
    detection_index: npt.NDArray[np.int64]
    """(M,) row of the input arrays matched by each track this frame."""
    started_ids: tuple[int, ...] = ()
    """Tracks confirmed this frame (they also appear in `tracker_id`, unless too small)."""
    ended_ids: tuple[int, ...] = ()
    """Tracks removed this frame, mostly after staying lost longer than the buffer."""
    lost_ids: tuple[int, ...] = ()
    """Tracks that found no detection this frame; they may be re-found within the buffer."""

    def __len__(self) -> int:
        return len(self.tracker_id)


@dataclass(frozen=True)
class _Frame:
    """One frame's validated input; detections are addressed by their input row."""

    xyxy: FloatArray
    scores: FloatArray

    def cost(self, tracks: list[_Track], rows: IndexArray, fuse: bool) -> FloatArray:
        cost = iou_distance(_boxes(tracks), self.xyxy[rows])
        return fuse_score(cost, self.scores[rows]) if fuse else cost


def _boxes(tracks: list[_Track]) -> FloatArray:
    if not tracks:
        return np.empty((0, 4))
    return xyah_to_xyxy(np.stack([track.mean for track in tracks]))


class ByteTrack:
    """Assigns persistent ids to per-frame detections of one video stream.

    Not thread-safe: one instance per stream, fed frames in order.
    """

    def __init__(self, settings: ByteTrackSettings | None = None) -> None:
        self.settings = settings or ByteTrackSettings()
        self._kalman = KalmanFilterXYAH(self.settings)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks; the next frame is frame 1 and ids count from 1 again."""
        self._tracked: list[_Track] = []
        self._lost: list[_Track] = []
        self._frame_id = 0
        self._last_track_id = 0

    @property
    def frame_id(self) -> int:
        """Frames of time since creation or the last reset: one per update, plus skipped ones."""
        return self._frame_id

    @property
    def active_count(self) -> int:
        """Confirmed tracks currently held, tracked or lost."""
        return sum(track.confirmed for track in self._tracked) + len(self._lost)

    def update(
        self, xyxy: npt.ArrayLike, scores: npt.ArrayLike, *, elapsed_frames: int = 1
    ) -> TrackerOutput:
        """Consume one frame's detections: (N, 4) corner boxes and (N,) scores.

        `elapsed_frames` is the time since the previous update, in frames of `frame_rate`
        (1 when no frame was skipped); lost tracks expire by it, not by the number of updates.
        """
        if elapsed_frames < 1:
            raise ValueError(f"elapsed_frames must be >= 1, got {elapsed_frames}")
        s = self.settings
        frame = _validated(xyxy, scores)
        usable = _usable_rows(frame, s.track_low_thresh)
        high = usable[frame.scores[usable] >= s.track_high_thresh]
        low = usable[frame.scores[usable] < s.track_high_thresh]
        # The first frame is frame 1 whatever time passed before it.
        self._frame_id += elapsed_frames if self._frame_id else 1
        unconfirmed = [track for track in self._tracked if not track.confirmed]
        pool = [track for track in self._tracked if track.confirmed] + self._lost
        # Beyond the buffer every lost track expires anyway: no need to predict further.
        for _step in range(min(elapsed_frames, s.max_frames_lost + 1)):
            self._predict(pool)

        # First association: every confirmed track (tracked or lost) against high scores.
        first = linear_assignment(frame.cost(pool, high, s.fuse_score), s.match_thresh)
        self._correct([pool[i] for i in first.rows], frame, high[first.columns])

        # Second association: tracks still unmatched against the low-score detections.
        remaining = [pool[i] for i in first.unmatched_rows if pool[i].state is _State.TRACKED]
        second = linear_assignment(frame.cost(remaining, low, False), s.second_match_thresh)
        self._correct([remaining[i] for i in second.rows], frame, low[second.columns])
        newly_lost = [remaining[i] for i in second.unmatched_rows]
        for track in newly_lost:
            track.state = _State.LOST

        # Tentative tracks (seen once) must match again now, or they are dropped.
        leftover = high[first.unmatched_columns]
        tentative = linear_assignment(
            frame.cost(unconfirmed, leftover, s.fuse_score), s.unconfirmed_match_thresh
        )
        confirmed_now = [unconfirmed[i] for i in tentative.rows]
        self._correct(confirmed_now, frame, leftover[tentative.columns])
        dropped = {unconfirmed[i] for i in tentative.unmatched_rows}

        births = leftover[tentative.unmatched_columns]
        born = self._start_tracks(frame, births[frame.scores[births] >= s.new_track_thresh])
        if self._frame_id == 1:  # nothing to confirm against yet: trust the first frame
            confirmed_now += born
        for track in confirmed_now:
            self._last_track_id += 1
            track.track_id = self._last_track_id

        expired = {
            track for track in self._lost
            if track.state is _State.LOST and self._frame_id - track.last_frame > s.max_frames_lost
        }
        tracked = [
            track for track in self._tracked + self._lost
            if track.state is _State.TRACKED and track not in dropped
        ] + born
        lost = [
            track for track in self._lost if track.state is _State.LOST and track not in expired
        ] + newly_lost
        self._tracked, self._lost, duplicates = _remove_duplicates(
            tracked, lost, s.duplicate_iou_distance
        )
        return self._output(
            started=confirmed_now,
            ended=[track for track in [*expired, *duplicates] if track.confirmed],
            lost=[track for track in newly_lost if track not in duplicates],
        )

    def _predict(self, tracks: list[_Track]) -> None:
        if not tracks:
            return
        means = np.stack([track.mean for track in tracks])
        not_observed = np.array([track.state is not _State.TRACKED for track in tracks])
        means[not_observed, _HEIGHT_VELOCITY] = 0.0
        covariances = np.stack([track.covariance for track in tracks])
        means, covariances = self._kalman.predict(means, covariances)
        for track, mean, covariance in zip(tracks, means, covariances, strict=True):
            track.mean, track.covariance = mean, covariance

    def _correct(self, tracks: list[_Track], frame: _Frame, rows: IndexArray) -> None:
        """Apply matched detections: Kalman update, and the track is (again) tracked."""
        if not tracks:
            return
        means, covariances = self._kalman.update(
            np.stack([track.mean for track in tracks]),
            np.stack([track.covariance for track in tracks]),
            xyxy_to_xyah(frame.xyxy[rows]),
        )
        for track, mean, covariance, row in zip(tracks, means, covariances, rows, strict=True):
            track.mean, track.covariance = mean, covariance
            track.score, track.detection_index = float(frame.scores[row]), int(row)
            track.last_frame, track.state = self._frame_id, _State.TRACKED

    def _start_tracks(self, frame: _Frame, rows: IndexArray) -> list[_Track]:
        means, covariances = self._kalman.initiate(xyxy_to_xyah(frame.xyxy[rows]))
        return [
            _Track(mean, covariance, float(frame.scores[row]), int(row),
                   start_frame=self._frame_id, last_frame=self._frame_id)
            for mean, covariance, row in zip(means, covariances, rows, strict=True)
        ]

    def _output(
        self, started: list[_Track], ended: list[_Track], lost: list[_Track]
    ) -> TrackerOutput:
        reported = sorted(
            (track for track in self._tracked if track.confirmed), key=lambda t: t.track_id
        )
        boxes = _boxes(reported)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = np.flatnonzero(areas >= self.settings.min_box_area)
        reported = [reported[i] for i in keep]
        return TrackerOutput(
            tracker_id=np.array([t.track_id for t in reported], dtype=np.int64),
            xyxy=boxes[keep].astype(np.float32),
            score=np.array([t.score for t in reported], dtype=np.float32),
            detection_index=np.array([t.detection_index for t in reported], dtype=np.int64),
            started_ids=tuple(sorted(t.track_id for t in started)),
            ended_ids=tuple(sorted(t.track_id for t in ended)),
            lost_ids=tuple(sorted(t.track_id for t in lost)),
        )


def _validated(xyxy: npt.ArrayLike, scores: npt.ArrayLike) -> _Frame:
    """Reject malformed input loudly: a silent reshape would scramble detection_index."""
    boxes = np.asarray(xyxy, dtype=np.float64)
    values = np.asarray(scores, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or values.ndim != 1:
        raise ValueError(f"expected (N, 4) boxes and (N,) scores, got {boxes.shape} and "
                         f"{values.shape}")
    if len(boxes) != len(values):
        raise ValueError(f"{len(boxes)} boxes but {len(values)} scores")
    return _Frame(boxes, values)


def _usable_rows(frame: _Frame, min_score: float) -> IndexArray:
    """Rows with finite, non-empty boxes scoring at least min_score; the rest are ignored."""
    boxes, scores = frame.xyxy, frame.scores
    return np.flatnonzero(
        np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & (scores >= min_score)
        & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    )


def _remove_duplicates(
    tracked: list[_Track], lost: list[_Track], max_distance: float
) -> tuple[list[_Track], list[_Track], list[_Track]]:
    """Where a tracked and a lost track overlap almost fully, keep the longer-lived one."""
    close_pairs = np.argwhere(iou_distance(_boxes(tracked), _boxes(lost)) < max_distance)
    drop: set[_Track] = set()
    for i, j in close_pairs:
        a, b = tracked[i], lost[j]
        drop.add(b if a.last_frame - a.start_frame > b.last_frame - b.start_frame else a)
    return (
        [track for track in tracked if track not in drop],
        [track for track in lost if track not in drop],
        [track for track in tracked + lost if track in drop],
    )
