"""ByteTrack multi-object tracker (Zhang et al., ECCV 2022) on plain numpy arrays.

Follows the reference `BYTETracker.update`: a first association of tracked and lost tracks
with high-score detections, a second one of the still-unmatched tracked tracks with low-score
detections, then tentative tracks, new tracks and expiry of lost ones. Two deliberate
differences: an identity is numbered when its track is confirmed (so reported ids have no gaps
left by one-frame false positives), and each instance counts its own ids.
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
    """One target hypothesis. Identity comparison only: two tracks are never 'equal'."""

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


@dataclass(frozen=True)
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


@dataclass
class _Detections:
    """The usable input rows: boxes, scores and their row numbers in the caller's arrays."""

    xyxy: FloatArray
    scores: FloatArray
    rows: IndexArray

    def subset(self, picks: IndexArray) -> _Detections:
        return _Detections(self.xyxy[picks], self.scores[picks], self.rows[picks])


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
        """Number of frames processed since creation or the last reset."""
        return self._frame_id

    @property
    def active_count(self) -> int:
        """Confirmed tracks currently held, tracked or lost."""
        return sum(track.confirmed for track in self._tracked) + len(self._lost)

    def update(self, xyxy: npt.ArrayLike, scores: npt.ArrayLike) -> TrackerOutput:
        """Consume one frame's detections (N, 4) corner boxes and (N,) scores."""
        s = self.settings
        detections = _usable_detections(xyxy, scores, s.track_low_thresh)
        self._frame_id += 1
        high = detections.subset(np.flatnonzero(detections.scores >= s.track_high_thresh))
        low = detections.subset(np.flatnonzero(detections.scores < s.track_high_thresh))
        unconfirmed = [track for track in self._tracked if not track.confirmed]
        pool = [track for track in self._tracked if track.confirmed] + self._lost
        self._predict(pool)

        # First association: every confirmed track (tracked or lost) against high scores.
        first = linear_assignment(self._cost(pool, high, s.fuse_score), s.match_thresh)
        self._correct([pool[i] for i in first.rows], high.subset(first.columns))

        # Second association: tracks still unmatched against the low-score detections.
        remaining = [pool[i] for i in first.unmatched_rows if pool[i].state is _State.TRACKED]
        second = linear_assignment(self._cost(remaining, low, False), s.second_match_thresh)
        self._correct([remaining[i] for i in second.rows], low.subset(second.columns))
        newly_lost = [remaining[i] for i in second.unmatched_rows]
        for track in newly_lost:
            track.state = _State.LOST

        # Tentative tracks (seen once) must match now or are dropped.
        leftover = high.subset(first.unmatched_columns)
        tentative = linear_assignment(
            self._cost(unconfirmed, leftover, s.fuse_score), s.unconfirmed_match_thresh
        )
        confirmed_now = [unconfirmed[i] for i in tentative.rows]
        self._correct(confirmed_now, leftover.subset(tentative.columns))
        dropped = {id(unconfirmed[i]) for i in tentative.unmatched_rows}

        births = leftover.subset(tentative.unmatched_columns)
        confident = births.subset(np.flatnonzero(births.scores >= s.new_track_thresh))
        born = self._start_tracks(confident)
        if self._frame_id == 1:
            confirmed_now += born
        for track in confirmed_now:
            self._last_track_id += 1
            track.track_id = self._last_track_id

        expired = [
            track for track in self._lost
            if track.state is _State.LOST and self._frame_id - track.last_frame > s.max_frames_lost
        ]
        expired_ids = {id(track) for track in expired}
        tracked = [
            track for track in self._tracked
            if track.state is _State.TRACKED and id(track) not in dropped
        ]
        tracked += [track for track in self._lost if track.state is _State.TRACKED] + born
        lost = [
            track for track in self._lost
            if track.state is _State.LOST and id(track) not in expired_ids
        ] + newly_lost
        self._tracked, self._lost, duplicates = _remove_duplicates(
            tracked, lost, s.duplicate_iou_distance
        )
        ended = [track for track in expired + duplicates if track.confirmed]
        return self._output(
            started=confirmed_now, ended=ended, lost=[t for t in newly_lost if t in self._lost]
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

    @staticmethod
    def _cost(tracks: list[_Track], detections: _Detections, fuse: bool) -> FloatArray:
        cost = iou_distance(_boxes(tracks), detections.xyxy)
        return fuse_score(cost, detections.scores) if fuse else cost

    def _correct(self, tracks: list[_Track], detections: _Detections) -> None:
        """Apply matched detections: Kalman update, and the track is (again) tracked."""
        if not tracks:
            return
        means, covariances = self._kalman.update(
            np.stack([track.mean for track in tracks]),
            np.stack([track.covariance for track in tracks]),
            xyxy_to_xyah(detections.xyxy),
        )
        for i, track in enumerate(tracks):
            track.mean, track.covariance = means[i], covariances[i]
            track.score = float(detections.scores[i])
            track.detection_index = int(detections.rows[i])
            track.last_frame = self._frame_id
            track.state = _State.TRACKED

    def _start_tracks(self, detections: _Detections) -> list[_Track]:
        if len(detections.rows) == 0:
            return []
        means, covariances = self._kalman.initiate(xyxy_to_xyah(detections.xyxy))
        return [
            _Track(means[i], covariances[i], float(detections.scores[i]),
                   int(detections.rows[i]), self._frame_id, self._frame_id)
            for i in range(len(detections.rows))
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


def _usable_detections(xyxy: npt.ArrayLike, scores: npt.ArrayLike, min_score: float) -> _Detections:
    """Validate shapes and keep finite, non-empty boxes scoring at least min_score."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(values):
        raise ValueError(f"{len(boxes)} boxes but {len(values)} scores")
    usable = (
        np.isfinite(boxes).all(axis=1)
        & np.isfinite(values)
        & (boxes[:, 2] > boxes[:, 0])
        & (boxes[:, 3] > boxes[:, 1])
        & (values >= min_score)
    )
    rows = np.flatnonzero(usable)
    return _Detections(boxes[rows], values[rows], rows)


def _remove_duplicates(
    tracked: list[_Track], lost: list[_Track], max_distance: float
) -> tuple[list[_Track], list[_Track], list[_Track]]:
    """Where a tracked and a lost track overlap almost fully, keep the longer-lived one."""
    close_pairs = np.argwhere(iou_distance(_boxes(tracked), _boxes(lost)) < max_distance)
    drop: set[int] = set()
    for i, j in close_pairs:
        a, b = tracked[i], lost[j]
        younger = b if a.last_frame - a.start_frame > b.last_frame - b.start_frame else a
        drop.add(id(younger))
    duplicates = [track for track in tracked + lost if id(track) in drop]
    return (
        [track for track in tracked if id(track) not in drop],
        [track for track in lost if id(track) not in drop],
        duplicates,
    )
