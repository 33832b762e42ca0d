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
GT_SCORE = 0.9
PEDESTRIAN_CLASS = 1
# In MOT17-05 frames 3-4 pedestrian 5, 67-89 % hidden, walks in step right behind pedestrian
# 14 (boxes overlap by IoU ~0.6) while pedestrian 4 steps in beside them: with IoU alone the
# optimal assignment hands 14's track to 5. The reference ByteTrack code does exactly the same
# on these boxes; telling them apart needs appearance (ReID), not motion.
KNOWN_OCCLUSION_SWAP = pytest.mark.xfail(
    raises=AssertionError, strict=True,
    reason="IoU-only association swaps a pedestrian and the one hidden behind him",
)


def sequence_dir(assets: Path, name: str) -> Path:
    path = assets / "videos" / "MOT17-mini" / "train" / name
    if not (path / "gt" / "gt.txt").is_file() or not (path / "seqinfo.ini").is_file():
        pytest.fail(
            f"MOT17 sequence {name} (gt/gt.txt and seqinfo.ini) is missing under {path}. "
            "Set STREAMER_ASSETS to the shared assets folder that holds videos/MOT17-mini "
            "(default: ../shared next to the repository)."
        )
    return path


def load_pedestrians(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frame number -> (gt ids (N,), xyxy boxes (N, 4)) of the scored pedestrian rows."""
    rows = np.loadtxt(path / "gt" / "gt.txt", delimiter=",", ndmin=2)
    rows = rows[(rows[:, 6] == 1) & (rows[:, 7] == PEDESTRIAN_CLASS)]
    frames = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        in_frame = rows[rows[:, 0] == frame]
        xywh = in_frame[:, 2:6]
        frames[frame] = (in_frame[:, 1].astype(int), np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    return frames


def frame_rate(path: Path) -> float:
    info = configparser.ConfigParser()
    info.read(path / "seqinfo.ini")
    return float(info["Sequence"]["frameRate"])


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=KNOWN_OCCLUSION_SWAP) if name == "MOT17-05-FRCNN" else name
     for name in SEQUENCES],
)
def test_ground_truth_boxes_keep_every_identity(assets: Path, name: str) -> None:
    path = sequence_dir(assets, name)
    frames = load_pedestrians(path)
    numbers = sorted(frames)
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), "frames must be consecutive"
    tracker = ByteTrack(ByteTrackSettings(frame_rate=frame_rate(path)))

    tracker_id_of: dict[int, int] = {}
    first_seen: dict[int, int] = {}
    for number in numbers:
        gt_ids, boxes = frames[number]
        out = tracker.update(boxes, np.full(len(boxes), GT_SCORE))
        reported = dict(zip(gt_ids[out.detection_index].tolist(), out.tracker_id.tolist(),
                            strict=True))
        for gt_id, tracker_id in reported.items():
            assert tracker_id_of.setdefault(gt_id, tracker_id) == tracker_id, (
                f"frame {number}: pedestrian {gt_id} switched from track "
                f"{tracker_id_of[gt_id]} to {tracker_id}"
            )
        for gt_id in gt_ids.tolist():
            first_seen.setdefault(gt_id, number)
        # Everyone is reported, except a newcomer on its first frame (tentative until seen twice).
        expected = {g for g in gt_ids.tolist() if number == numbers[0] or first_seen[g] < number}
        assert expected <= set(reported), f"frame {number}: lost {expected - set(reported)}"

    assert len(set(tracker_id_of.values())) == len(tracker_id_of), "two pedestrians share a track"
