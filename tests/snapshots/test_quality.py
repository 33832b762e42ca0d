"""The snapshot stage's person-view quality is the identities stage's, for every track at once."""

from __future__ import annotations

import numpy as np

from streamer.config import ReidConfig
from streamer.core.detections import Detections
from streamer.identities.quality import person_qualities, person_quality


def test_every_track_at_once_scores_like_one_at_a_time() -> None:
    boxes = np.array([
        [100, 100, 180, 340],  # clear view
        [150, 120, 230, 360],  # overlaps the first
        [0, 50, 60, 250],  # cut off by the border
        [400, 400, 410, 420],  # too small
        [500, 100, 600, 400],
    ], np.float32)
    tracks = Detections(boxes, np.array([0.9, 0.8, 0.95, 0.9, 0.6], np.float32),
                        np.zeros(5, np.int64), np.arange(5))
    settings = ReidConfig()
    one_by_one = [person_quality(tracks, row, 640, 480, settings) for row in range(5)]
    assert np.allclose(person_qualities(tracks, 640, 480, settings), one_by_one)
    assert one_by_one[3] == 0.0 and one_by_one[0] > one_by_one[1] and one_by_one[0] > one_by_one[2]
    assert len(person_qualities(Detections.empty(), 640, 480, settings)) == 0
