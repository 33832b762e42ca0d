"""ByteTrack on real MOT17 pedestrians: perfect boxes must never swap or split identities."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest

from trackers import ByteTrack, ByteTrackSettings

SEQUENCES = [
    "MOT17-02-FRCNN", "MOT17-04-FRCNN", "MOT17-05-FRCNN", "MOT17-09-FRCNN",
    "MOT17-10-FRCNN", "MOT17-11-FRCNN", "MOT17-13-FRCNN",
]  # listed, not globbed, so a missing assets folder fails instead of collecting nothing
PEDESTRIAN_CLASS = 1
# A real detector is confident about people it sees and unsure about people mostly hidden; the
# boxes of the latter are what ByteTrack's second, low-score association stage exists for. The
# ground truth's visibility column gives that score: without it (every box 0.9), in MOT17-05
# frames 3-4 pedestrian 5, 67-89 % hidden right behind pedestrian 14 (IoU ~0.6), takes 14's
# track, with this implementation and with the reference ByteTrack code alike.
VISIBLE_SCORE = 0.9
HIDDEN_SCORE = 0.3  # between track_low_thresh and track_high_thresh: second-stage association
MOSTLY_HIDDEN_BELOW = 0.4


def sequence_dir(assets: Path, name: str) -> Path:
    path = assets / "videos" / "MOT17-mini" / "train" / name
    if not (path / "gt" / "gt.txt").is_file() or not (path / "seqinfo.ini").is_file():
        pytest.fail(
            f"MOT17 sequence {name} (gt/gt.txt and seqinfo.ini) is missing under {path}. "
            "Set STREAMER_ASSETS to the shared assets folder that holds videos/MOT17-mini "
            "(default: ../shared next to the repository)."
        )
    return path


def load_pedestrians(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frame number -> (gt ids (N,), xyxy boxes (N, 4), detector-like scores (N,))."""
    rows = np.loadtxt(path / "gt" / "gt.txt", delimiter=",", ndmin=2)
    rows = rows[(rows[:, 6] == 1) & (rows[:, 7] == PEDESTRIAN_CLASS)]
    frames = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        in_frame = rows[rows[:, 0] == frame]
        xywh = in_frame[:, 2:6]
        scores = np.where(in_frame[:, 8] < MOSTLY_HIDDEN_BELOW, HIDDEN_SCORE, VISIBLE_SCORE)
        boxes = np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]
        frames[frame] = (in_frame[:, 1].astype(int), boxes, scores)
    return frames


def frame_rate(path: Path) -> float:
    info = configparser.ConfigParser()
    info.read(path / "seqinfo.ini")
    return float(info["Sequence"]["frameRate"])


@pytest.mark.parametrize("name", SEQUENCES)
def test_ground_truth_boxes_keep_every_identity(assets: Path, name: str) -> None:
    path = sequence_dir(assets, name)
    frames = load_pedestrians(path)
    numbers = sorted(frames)
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), "frames must be consecutive"
    tracker = ByteTrack(ByteTrackSettings(frame_rate=frame_rate(path)))

    tracker_id_of: dict[int, int] = {}
    first_seen: dict[int, int] = {}
    for number in numbers:
        gt_ids, boxes, scores = frames[number]
        out = tracker.update(boxes, scores)
        reported = dict(zip(gt_ids[out.detection_index].tolist(), out.tracker_id.tolist(),
                            strict=True))
        for gt_id, tracker_id in reported.items():
            assert tracker_id_of.setdefault(gt_id, tracker_id) == tracker_id, (
                f"frame {number}: pedestrian {gt_id} switched from track "
                f"{tracker_id_of[gt_id]} to {tracker_id}"
            )
        clearly_seen = {g for g, score in zip(gt_ids.tolist(), scores, strict=True) if score == VISIBLE_SCORE}
        for gt_id in clearly_seen:
            first_seen.setdefault(gt_id, number)
        # Everyone once seen clearly is reported (hidden or not), except a newcomer on its first
        # frame (tentative until seen twice); nobody only ever seen mostly hidden starts a track.
        expected = {
            g for g in gt_ids.tolist()
            if g in first_seen and (number == numbers[0] or first_seen[g] < number)
        }
        assert expected <= set(reported), f"frame {number}: lost {expected - set(reported)}"

    assert len(set(tracker_id_of.values())) == len(tracker_id_of), "two pedestrians share a track"
