"""Synthetic detections for the benchmarks that need no model: people walking in straight lines."""

from __future__ import annotations

import numpy as np

SCENE_PEOPLE = 20
SCENE_FRAMES = 300


def random_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` person-sized xyxy boxes in a 1280x840 picture."""
    x, y = rng.uniform(0, 1200, count), rng.uniform(0, 600, count)
    width, height = rng.uniform(20, 80, count), rng.uniform(60, 240, count)
    return np.stack([x, y, x + width, y + height], axis=1)


def walking_people(people: int = SCENE_PEOPLE, frames: int = SCENE_FRAMES) -> list[np.ndarray]:
    """Boxes of `people` walking in straight lines with a little detector jitter, per frame."""
    rng = np.random.default_rng(0)
    start = random_boxes(rng, people)
    velocity = rng.uniform(-3, 3, (people, 2))
    out = []
    for frame in range(frames):
        shift = np.tile(velocity * frame, 2)
        out.append(start + shift + rng.normal(scale=1.0, size=start.shape))
    return out
