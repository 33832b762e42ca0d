"""Who a track is: its embeddings matched against enrolled faces (name) and the gallery (global id).

A new embedding is folded into the track's history first, so matches use the track's
quality-weighted embedding, not the single view. An `identity` event is due when the name or
global id changed, or the embedding moved enough since the last event.
"""

from __future__ import annotations

import numpy as np

from streamer.config import FacesConfig, IdentitiesConfig
from streamer.core.detections import Detections
from streamer.core.events import IdentityEvent
from streamer.core.frames import Frame
from streamer.identities.enrolment import FaceStore
from streamer.identities.gallery import IdentityGallery, Sighting
from streamer.identities.scheduling import Embedded
from streamer.identities.stats import IdentityStats
from streamer.identities.track_embeddings import TrackEmbedding, TrackIdentity

QUALITY_DECIMALS = 3


class IdentityResolver:
    """Matches track embeddings; `face_store` is set at start when faces are on."""

    def __init__(
        self,
        faces: FacesConfig,
        settings: IdentitiesConfig,
        gallery: IdentityGallery,
        face_store: FaceStore | None,
        stats: IdentityStats,
    ) -> None:
        self.faces = faces
        self.settings = settings
        self.gallery = gallery
        self.face_store = face_store
        self.stats = stats

    async def track_ended(self, camera: str, track_id: int) -> None:
        await self.gallery.track_ended(camera, track_id)

    async def resolve(
        self, frame: Frame, identity: TrackIdentity, embedded: Embedded
    ) -> IdentityEvent | None:
        """Fold a new embedding into its track and match it; the identity event, if one is due."""
        history: TrackEmbedding = identity.face if embedded.kind == "face" else identity.reid
        embedding = history.add(embedded.embedding, embedded.quality, frame.capture_ts)
        if embedded.kind == "face":
            identity_changed = self._match_enrolled(identity, embedding)
            if identity_changed and identity.name is not None:
                named = await self.gallery.name_track(frame.camera, embedded.track_id, identity.name)
                if named is not None:
                    identity.global_id = named
        else:
            identity_changed = await self._match_gallery(frame, embedded.track_id, identity, embedding)
        if not (identity_changed or history.changed_enough(self.settings.min_embedding_change)):
            return None
        history.published = embedding
        self.stats.identity_events += 1
        return identity_event(frame, embedded, identity, history)

    def _match_enrolled(self, identity: TrackIdentity, embedding: np.ndarray) -> bool:
        """Name the track after the best enrolled face; whether the name changed."""
        assert self.face_store is not None
        self.face_store.refresh_if_changed()
        match = self.face_store.match(embedding, self.faces.match_threshold)
        name = match.name if match else None
        similarity = match.similarity if match else None
        changed = name != identity.name
        identity.name, identity.similarity = name, similarity
        return changed

    async def _match_gallery(
        self, frame: Frame, track_id: int, identity: TrackIdentity, embedding: np.ndarray
    ) -> bool:
        """Give the track its global id from the gallery; whether the id changed."""
        found = await self.gallery.assign(
            Sighting(frame.camera, track_id, embedding, frame.capture_ts, identity.reid.samples)
        )
        changed = found.global_id != identity.global_id
        identity.global_id = found.global_id
        return changed


def identity_event(
    frame: Frame, embedded: Embedded, identity: TrackIdentity, history: TrackEmbedding
) -> IdentityEvent:
    assert history.published is not None, "an event is built for a published embedding"
    return IdentityEvent(
        camera=frame.camera,
        track_id=embedded.track_id,
        frame_index=frame.index,
        capture_ts=frame.capture_ts,
        kind=embedded.kind,
        embedding=history.published,
        quality=round(history.best_quality, QUALITY_DECIMALS),
        samples=history.samples,
        global_id=identity.global_id,
        name=identity.name if embedded.kind == "face" else None,
        similarity=identity.similarity if embedded.kind == "face" else None,
    )


def with_identity_columns(tracks: Detections, identities: dict[int, TrackIdentity]) -> Detections:
    """Tracks with `name`, `similarity` and `global_id` columns (None where unknown)."""
    ids = tracks.tracker_id.tolist() if tracks.tracker_id is not None else [None] * len(tracks)
    known = [identities.get(track_id) if track_id is not None else None for track_id in ids]
    columns = {
        "name": np.array([i.name if i else None for i in known], dtype=object),
        "similarity": np.array([i.similarity if i else None for i in known], dtype=object),
        "global_id": np.array([i.global_id if i else None for i in known], dtype=object),
    }
    return Detections(
        xyxy=tracks.xyxy,
        confidence=tracks.confidence,
        class_id=tracks.class_id,
        tracker_id=tracks.tracker_id,
        data={**tracks.data, **columns},
    )
