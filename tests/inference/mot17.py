"""Real pedestrians from the MOT17-mini ground truth, for ReID and face tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import require_asset

MOT17_MINI = "videos/MOT17-mini/train"
PEDESTRIAN_CLASS = 1
# gt.txt columns: frame, id, left, top, width, height, considered, class, visibility
FRAME, IDENTITY, LEFT, TOP, WIDTH, HEIGHT, CONSIDERED, CLASS, VISIBILITY = range(9)


@dataclass(frozen=True)
class Pedestrian:
    sequence: str
    identity: int
    frame: int
    box: np.ndarray  # x0, y0, x1, y1 in frame pixels, clipped to the frame
    image: np.ndarray  # the whole frame, BGR

    @property
    def key(self) -> tuple[str, int]:
        return self.sequence, self.identity

    def crop(self) -> np.ndarray:
        x0, y0, x1, y1 = self.box.astype(int)
        return self.image[y0:y1, x0:x1]


def sequences() -> list[Path]:
    root = require_asset(MOT17_MINI)
    return sorted(p for p in root.iterdir() if (p / "gt" / "gt.txt").is_file())


def frame_numbers(sequence: Path) -> list[int]:
    return sorted(int(p.stem) for p in (sequence / "img1").glob("*.jpg"))


def pedestrians(
    sequence: Path, frame: int, min_visibility: float, min_height: float
) -> list[Pedestrian]:
    """Clearly visible pedestrians of one frame (considered, mostly unoccluded, tall enough)."""
    truth = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)
    image = cv2.imread(str(sequence / "img1" / f"{frame:06d}.jpg"))
    assert image is not None, f"cannot read frame {frame} of {sequence}"
    height, width = image.shape[:2]
    rows = truth[
        (truth[:, FRAME] == frame)
        & (truth[:, CLASS] == PEDESTRIAN_CLASS)
        & (truth[:, CONSIDERED] == 1)
        & (truth[:, VISIBILITY] >= min_visibility)
        & (truth[:, HEIGHT] >= min_height)
    ]
    found = []
    for row in rows:
        x0, y0 = max(0.0, row[LEFT]), max(0.0, row[TOP])
        x1, y1 = min(width, row[LEFT] + row[WIDTH]), min(height, row[TOP] + row[HEIGHT])
        if x1 - x0 >= 16 and y1 - y0 >= 32:
            box = np.array([x0, y0, x1, y1], np.float32)
            found.append(Pedestrian(sequence.name, int(row[IDENTITY]), frame, box, image))
    return found
