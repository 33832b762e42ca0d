"""The identities stage's parts without a server: what is embedded when, and what it resolves to."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.config import FacesConfig, GalleryConfig, IdentitiesConfig, ReidConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.identities.faces import FACE_TRACK_KEY, FaceFinder
from streamer.identities.gallery import InMemoryGallery
from streamer.identities.resolver import IdentityResolver
from streamer.identities.scheduling import EmbeddingScheduler
from streamer.identities.stats import IdentityStats
from streamer.identities.track_embeddings import TrackIdentity, track_ids

SETTINGS = IdentitiesConfig(confirm_frames=3, refresh_interval_s=10.0)
EMBEDDING_SIZE = 8
CONFIRMED, NEW = 7, 8  # track ids
PEOPLE = [[100, 100, 200, 400], [400, 100, 500, 400]]  # well apart, well inside the frame


class Book:
    """A TrackBook whose tracks have been seen a fixed number of frames."""

    def __init__(self, seen: dict[int, int]) -> None:
        self.seen = seen

    def frames_seen(self, track_id: int) -> int:
        return self.seen.get(track_id, 0)

    def annotate(self, frame: Frame, track_id: int, **attributes: Any) -> None:
        return None


class FakePersonEmbedder:
    async def embed(self, crop: np.ndarray) -> tuple[np.ndarray, None]:
        return np.eye(1, EMBEDDING_SIZE, dtype=np.float32)[0], None

    def crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return image[:8, :4]


def _tracks(rows: list[list[float]], ids: list[int]) -> Detections:
    return Detections(
        xyxy=np.array(rows, np.float32).reshape(-1, 4),
        confidence=np.full(len(rows), 0.9, np.float32),
        class_id=np.zeros(len(rows), np.int64),
        tracker_id=np.array(ids, np.int64),
    )


def _frame(index: int) -> Frame:
    return Frame("gate", index, 1000.0 + index / 10, 0.0, np.zeros((480, 640, 3), np.uint8))


async def test_reid_is_requested_once_a_track_is_confirmed_and_not_again_for_the_same_view() -> None:
    counters = IdentityStats()
    scheduler = EmbeddingScheduler(FacesConfig(), ReidConfig(), SETTINGS, counters)
    scheduler.person_embedder = FakePersonEmbedder()  # type: ignore[assignment]
    resolver = IdentityResolver(FacesConfig(), SETTINGS, InMemoryGallery(GalleryConfig()), None, counters)
    tracks = _tracks(PEOPLE, [CONFIRMED, NEW])
    identities = {CONFIRMED: TrackIdentity(), NEW: TrackIdentity()}
    confirmed = scheduler.confirmed(track_ids(tracks), Book({CONFIRMED: 3, NEW: 2}))
    assert confirmed == [0], "a track seen in fewer than confirm_frames frames is not embedded"

    (job,) = scheduler.reid_jobs(_frame(1), tracks, confirmed, identities)
    embedded = await job
    event = await resolver.resolve(_frame(1), identities[CONFIRMED], embedded)
    assert event is not None and event.type == "identity" and event.kind == "reid"
    assert event.track_id == CONFIRMED and event.global_id is not None

    assert scheduler.reid_jobs(_frame(2), tracks, confirmed, identities) == [], "same view again"
    assert counters.reid_embeddings == 1 and counters.identity_events == 1


def test_faces_link_to_every_track_but_only_confirmed_tracks_faces_are_embedded() -> None:
    finder = FaceFinder(FacesConfig(), IdentityStats())
    tracks = _tracks(PEOPLE, [CONFIRMED, NEW])
    faces = Detections(
        xyxy=np.array([[435, 105, 465, 140], [135, 105, 165, 140]], np.float32),
        confidence=np.full(2, 0.9, np.float32),
        class_id=np.zeros(2, np.int64),
    )

    linked = finder.link(faces, tracks, confirmed=[0])

    assert linked.faces.data[FACE_TRACK_KEY].tolist() == [NEW, CONFIRMED]
    assert linked.of_confirmed == [(1, CONFIRMED)]
