"""A synthetic site for the operator's decisions: people, and cameras that each add their own bias
(light, angle, background) to every embedding, as real cameras do.

`calibrate` lets each camera see a crowd of its own at once: the gallery learns the cameras' bias
and, from people seen at the same moment, how alike different people look on the pair.
"""

from __future__ import annotations

import numpy as np

from streamer.identities.gallery import IdentityGallery, Sighting

BIAS = 1.2  # a camera's bias, relative to a person's own appearance
CROWD_TRACK_IDS = 1000  # the crowd's track ids start here
VIEWS = 5  # views folded into each sighting's embedding


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class Site:
    """`seen(person, camera)`: one view of a person on a camera (the same every time)."""

    def __init__(self, size: int, people: int, cameras: list[str], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.people = rng.normal(size=(people, size))
        self.bias = {camera: BIAS * unit(rng.normal(size=size)) * np.sqrt(size) for camera in cameras}

    def seen(self, person: int, camera: str) -> np.ndarray:
        return unit(self.people[person] + self.bias[camera])

    def sighting(self, person: int, camera: str, track_id: int, ts: float) -> Sighting:
        return Sighting(camera, track_id, self.seen(person, camera), ts, views=VIEWS)


async def calibrate(gallery: IdentityGallery, site: Site, crowds: dict[str, range], ts: float) -> None:
    """Each camera sees its crowd at the same moment (the crowds are different people); then
    every crowd's tracks end."""
    for offset, (camera, people) in enumerate(crowds.items()):
        for person in people:
            await gallery.assign(site.sighting(person, camera, CROWD_TRACK_IDS + person, ts + 0.1 * offset))
    for camera, people in crowds.items():
        for person in people:
            await gallery.track_ended(camera, CROWD_TRACK_IDS + person)
