"""Cross-camera identities: recent tracks' ReID embeddings from every camera, and global ids.

`IdentityGallery` is the interface the stage uses (async, so a shared store such as Redis can
back it and several service instances can share identities); `InMemoryGallery` keeps it in this
process.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from streamer.config import GalleryConfig


class EmbeddingSizeMismatch(ValueError):
    """A model's embeddings cannot be compared with the stored ones; refused at start."""


@dataclass(frozen=True)
class Sighting:
    """A track's current ReID embedding (unit length)."""

    camera: str
    track_id: int
    embedding: np.ndarray
    ts: float


@dataclass(frozen=True)
class GalleryMatch:
    global_id: int
    similarity: float | None  # to the matched identity; None when the identity is new


class IdentityGallery(abc.ABC):
    """Assigns global ids: the same person on several cameras shares one."""

    @abc.abstractmethod
    async def bind(self, embedding_size: int, model: str) -> None:
        """Called at start with the ReID model's embedding size; raises EmbeddingSizeMismatch."""

    @abc.abstractmethod
    async def assign(self, sighting: Sighting) -> GalleryMatch:
        """The global id of the sighted track (kept once given, unless it joins a known one)."""

    @abc.abstractmethod
    async def track_ended(self, camera: str, track_id: int) -> None:
        """The track left its camera; it stays matchable for the configured window."""

    async def close(self) -> None:
        """Release connections (a shared store)."""


@dataclass
class _Entry:
    camera: str
    track_id: int
    global_id: int
    embedding: np.ndarray
    last_seen_ts: float
    active: bool = True


class InMemoryGallery(IdentityGallery):
    """One process's gallery; a Redis-backed one would keep the same entries in the store."""

    def __init__(self, settings: GalleryConfig, embedding_size: int | None = None) -> None:
        self.settings = settings
        self.embedding_size = embedding_size
        self.model: str | None = None
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._last_global_id = 0

    async def bind(self, embedding_size: int, model: str) -> None:
        if self.embedding_size is not None and self.embedding_size != embedding_size:
            raise EmbeddingSizeMismatch(
                f"identity gallery holds {self.embedding_size}-d embeddings"
                f"{f' from {self.model}' if self.model else ''} but ReID model '{model}' produces "
                f"{embedding_size}-d ones: use the gallery's model or a new gallery"
            )
        self.embedding_size, self.model = embedding_size, model

    async def assign(self, sighting: Sighting) -> GalleryMatch:
        if self.embedding_size is not None and sighting.embedding.shape != (self.embedding_size,):
            raise EmbeddingSizeMismatch(
                f"embedding of shape {sighting.embedding.shape}, gallery holds {self.embedding_size}-d"
            )
        self._forget_older_than(sighting.ts - self.settings.window_s)
        key = (sighting.camera, sighting.track_id)
        entry = self._entries.get(key)
        candidate, similarity = self._best_match(sighting, entry)
        matched = candidate is not None and similarity >= self.settings.match_threshold
        if entry is None:
            global_id = candidate.global_id if matched and candidate else self._new_global_id()
            entry = _Entry(sighting.camera, sighting.track_id, global_id, sighting.embedding, sighting.ts)
            self._entries[key] = entry
        else:
            # A track keeps its id, except one nobody else holds yet: it joins a match found later
            # (its first views were too poor to recognise the person).
            if matched and candidate and candidate.global_id != entry.global_id and self._alone(entry):
                entry.global_id = candidate.global_id
            entry.embedding, entry.last_seen_ts, entry.active = sighting.embedding, sighting.ts, True
        self._limit_size()
        same = matched and candidate is not None and candidate.global_id == entry.global_id
        return GalleryMatch(entry.global_id, round(similarity, 4) if same else None)

    async def track_ended(self, camera: str, track_id: int) -> None:
        entry = self._entries.get((camera, track_id))
        if entry is not None:
            entry.active = False

    def _best_match(self, sighting: Sighting, own: _Entry | None) -> tuple[_Entry | None, float]:
        """Most similar other track, leaving out ids that are on this camera right now: one
        person cannot be two tracks of one camera at once."""
        busy = {
            e.global_id
            for e in self._entries.values()
            if e.camera == sighting.camera and e.active and e is not own
        }
        best: _Entry | None = None
        best_similarity = -1.0
        for entry in self._entries.values():
            if entry is own or entry.global_id in busy:
                continue
            similarity = float(entry.embedding @ sighting.embedding)
            if similarity > best_similarity:
                best, best_similarity = entry, similarity
        return best, best_similarity

    def _alone(self, entry: _Entry) -> bool:
        return all(e is entry or e.global_id != entry.global_id for e in self._entries.values())

    def _new_global_id(self) -> int:
        self._last_global_id += 1
        return self._last_global_id

    def _forget_older_than(self, oldest_ts: float) -> None:
        stale = [k for k, e in self._entries.items() if not e.active and e.last_seen_ts < oldest_ts]
        for key in stale:
            del self._entries[key]

    def _limit_size(self) -> None:
        excess = len(self._entries) - self.settings.max_entries
        if excess > 0:
            oldest = sorted(self._entries, key=lambda k: self._entries[k].last_seen_ts)[:excess]
            for key in oldest:
                del self._entries[key]


def build_gallery(settings: GalleryConfig) -> IdentityGallery:
    """The configured gallery backend."""
    return InMemoryGallery(settings)
