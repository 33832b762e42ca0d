"""Per-track embedding schedule: embed when confirmed, on a clearly better view, or on refresh.

A track's embedding is the quality-weighted mean of the views embedded so far (re-normalised), so
one poor view moves it little and better views dominate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.config import IdentitiesConfig
from streamer.core.detections import Detections
from streamer.inference.embedding import l2_normalise


def track_ids(tracks: Detections) -> np.ndarray:
    """The tracks' ids by row (none when the detections carry no tracker ids)."""
    return tracks.tracker_id if tracks.tracker_id is not None else np.zeros(0, np.int64)


@dataclass
class TrackEmbedding:
    """One kind (face or ReID) of embedding for one track."""

    weighted_sum: np.ndarray | None = None
    best_quality: float = 0.0
    samples: int = 0
    last_embedded_ts: float = float("-inf")
    published: np.ndarray | None = None  # the embedding last sent in an identity event

    @property
    def embedding(self) -> np.ndarray | None:
        return None if self.weighted_sum is None else l2_normalise(self.weighted_sum)

    def due(self, quality: float, minimum: float, now: float, settings: IdentitiesConfig) -> bool:
        """Whether a view of this quality is worth an embedding request now."""
        if quality < minimum or quality <= 0:
            return False
        if self.samples == 0:
            return True
        if quality >= self.best_quality * (1.0 + settings.better_view_margin):
            return True
        return now - self.last_embedded_ts >= settings.refresh_interval_s

    def add(self, embedding: np.ndarray, quality: float, now: float) -> np.ndarray:
        weighted = embedding.astype(np.float32) * quality
        self.weighted_sum = weighted if self.weighted_sum is None else self.weighted_sum + weighted
        self.best_quality = max(self.best_quality, quality)
        self.samples += 1
        self.last_embedded_ts = now
        result = self.embedding
        assert result is not None
        return result

    def changed_enough(self, min_change: float) -> bool:
        """Whether the embedding moved since the last event (cosine distance >= min_change)."""
        current = self.embedding
        if current is None:
            return False
        if self.published is None:
            return True
        return 1.0 - float(current @ self.published) >= min_change


@dataclass
class TrackIdentity:
    """Everything the identities stage knows about one track of one camera."""

    face: TrackEmbedding = field(default_factory=TrackEmbedding)
    reid: TrackEmbedding = field(default_factory=TrackEmbedding)
    name: str | None = None
    similarity: float | None = None  # to the enrolled face `name`
    global_id: int | None = None
    last_region_search: int = -1  # frame index of the last face search in its region
