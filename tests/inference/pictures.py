"""Facts about the real face photo the tests use (skimage's `astronaut`, NASA, public domain)."""

from __future__ import annotations

import numpy as np

# Where the astronaut's features are, in pixels of the 512x512 photo (read off the picture with
# the landmarks drawn on it): left eye, right eye, nose tip, left and right mouth corners.
ASTRONAUT_FEATURES = np.array(
    [[204, 101], [247, 103], [224, 128], [202, 140], [246, 142]], np.float32
)
LANDMARK_TOLERANCE_PX = 6.0
