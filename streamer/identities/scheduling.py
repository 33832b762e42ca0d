"""Which confirmed tracks are due for a face or ReID embedding, and the requests for them.

A track is embedded only once confirmed, and then only on a clearly better view or when the
refresh interval passed (`TrackEmbedding.due`), judged by the view's quality. The requests come
back as not-yet-started awaitables, so the stage can send every crop of a frame at once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamer.config import FacesConfig, IdentitiesConfig, ReidConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.core.interfaces import TrackBook
from streamer.identities.faces import LinkedFaces
from streamer.identities.quality import face_quality, person_quality
from streamer.identities.stats import IdentityStats
from streamer.identities.track_embeddings import TrackIdentity
from streamer.inference.faces import FaceEmbedder
from streamer.inference.reid import PersonEmbedder
from streamer.inference.scrfd import LANDMARKS_KEY

EmbeddingKind = Literal["face", "reid"]


@dataclass(frozen=True)
class Embedded:
    """A new embedding of one view of a track."""

    track_id: int
    kind: EmbeddingKind
    embedding: np.ndarray
    quality: float


class EmbeddingScheduler:
    """Embedding requests for due views; the embedders are set at start (None: kind is off)."""

    def __init__(
        self,
        faces: FacesConfig,
        reid: ReidConfig,
        settings: IdentitiesConfig,
        stats: IdentityStats,
    ) -> None:
        self.faces = faces
        self.reid = reid
        self.settings = settings
        self.stats = stats
        self.face_embedder: FaceEmbedder | None = None
        self.person_embedder: PersonEmbedder | None = None

    def confirmed(self, ids: np.ndarray, book: TrackBook) -> list[int]:
        """Rows of the tracks seen in enough frames to be worth embedding."""
        return [
            row
            for row, track_id in enumerate(ids.tolist())
            if book.frames_seen(track_id) >= self.settings.confirm_frames
        ]

    def reid_jobs(
        self,
        frame: Frame,
        tracks: Detections,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
    ) -> list[Awaitable[Embedded]]:
        """ReID requests for the confirmed tracks whose person view is due."""
        embedder = self.person_embedder
        if embedder is None:
            return []
        assert tracks.tracker_id is not None or not confirmed
        jobs: list[Awaitable[Embedded]] = []
        for row in confirmed:
            track_id = int(tracks.tracker_id[row])  # type: ignore[index]
            quality = person_quality(tracks, row, frame.width, frame.height, self.reid)
            history = identities[track_id].reid
            if not history.due(quality, self.reid.min_quality, frame.capture_ts, self.settings):
                continue
            crop = embedder.crop(frame.image, tracks.xyxy[row])
            if crop is not None:
                jobs.append(self._embed(track_id, "reid", embedder, crop, quality))
        return jobs

    def face_jobs(
        self, frame: Frame, linked: LinkedFaces, identities: dict[int, TrackIdentity]
    ) -> list[Awaitable[Embedded]]:
        """Face requests for the confirmed tracks whose aligned face is due."""
        embedder = self.face_embedder
        if embedder is None:
            return []
        faces = linked.faces
        jobs: list[Awaitable[Embedded]] = []
        for face_row, track_id in linked.of_confirmed:
            landmarks = faces.data[LANDMARKS_KEY][face_row]
            aligned = embedder.align(frame.image, landmarks)
            quality = face_quality(
                float(faces.confidence[face_row]), faces.xyxy[face_row], landmarks, aligned, self.faces
            )
            history = identities[track_id].face
            if history.due(quality, self.faces.min_quality, frame.capture_ts, self.settings):
                jobs.append(self._embed(track_id, "face", embedder, aligned, quality))
        return jobs

    async def _embed(
        self,
        track_id: int,
        kind: EmbeddingKind,
        embedder: FaceEmbedder | PersonEmbedder,
        crop: np.ndarray,
        quality: float,
    ) -> Embedded:
        embedding, _timing = await embedder.embed(crop)
        if kind == "face":
            self.stats.face_embeddings += 1
        else:
            self.stats.reid_embeddings += 1
        return Embedded(track_id, kind, embedding, quality)
