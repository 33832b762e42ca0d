"""The gating bench's recall and lateness on made-up runs: no model, no server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamer.benchmarks.footage import IdleFootage
from streamer.benchmarks.gating import compare_runs
from streamer.core.detections import Detections
from streamer.core.events import TrackEvent
from streamer.core.frames import FrameResult

FOOTAGE = IdleFootage(Path("idle.mp4"), 10.0, 40, 768, 576, busy=((11, 20), (31, 40)))


def run(people: dict[int, dict[int, list[float]]], detected: set[int] | None = None) -> list[FrameResult]:
    """Frames 1..40 with the given track id -> {frame: box}; `new` at each track's first frame."""
    results = []
    for index in range(1, FOOTAGE.frames + 1):
        rows = [(tid, boxes[index]) for tid, boxes in people.items() if index in boxes]
        tracks = Detections(
            xyxy=np.array([box for _tid, box in rows], np.float32).reshape(-1, 4),
            confidence=np.full(len(rows), 0.9, np.float32),
            class_id=np.zeros(len(rows), np.int64),
            tracker_id=np.array([tid for tid, _box in rows], np.int64),
        )
        events = [
            TrackEvent("new", "c", tid, index, 0.0, None, {}) for tid, boxes in people.items()
            if min(boxes) == index
        ]
        results.append(FrameResult(
            "c", index, 0.0, 768, 576, tracks, 0.0, {}, events=list(events),
            detected=detected is None or index in detected,
        ))
    return results


def walk(first: int, last: int, x: float) -> dict[int, list[float]]:
    return {i: [x + 2 * i, 100.0, x + 2 * i + 40, 200.0] for i in range(first, last + 1)}


def test_recall_matches_tracks_by_overlap_over_time_whatever_their_ids() -> None:
    ungated = run({1: walk(12, 20, 100), 2: walk(32, 40, 400), 3: walk(5, 6, 600)})
    # the gated run numbers them differently, starts one a frame later, and misses the third
    gated = run({7: walk(12, 20, 100), 8: walk(33, 40, 400)}, detected={1, 11, 12, 20, 31, 32, 33})
    report = compare_runs(ungated, gated, FOOTAGE)
    assert (report.tracks, report.recalled, report.recall) == (2, 2, 1.0), "track 3 is too short"
    assert sorted(report.delay_frames) == [0, 1]
    assert report.appearance_ungated == [1, 1] and report.appearance_gated == [1, 2]
    assert report.detected_share == 7 / 40


def test_a_track_overlapping_in_less_than_half_its_frames_is_missed() -> None:
    ungated = run({1: walk(11, 20, 100)})
    gated = run({1: walk(16, 20, 100) | {i: [600.0, 0.0, 640.0, 50.0] for i in range(11, 16)}})
    report = compare_runs(ungated, gated, FOOTAGE)
    assert (report.tracks, report.recalled) == (1, 1)  # 5 of 10 frames: exactly half
    gated = run({1: walk(17, 20, 100)})
    assert compare_runs(ungated, gated, FOOTAGE).recalled == 0
