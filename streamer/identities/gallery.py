"""Cross-camera identities: recent tracks' ReID embeddings from every camera, and global ids.

`IdentityGallery` is the interface the stage uses (async, so a shared store such as Redis can
back it and several service instances can share identities); `InMemoryGallery` keeps it in this
process, as rows of one matrix so that matching a sighting is one matrix product.

Global ids must not collide across restarts or between service instances (events are stored and
joined downstream long after a process ended), so they are not a per-process counter: see
`GlobalIds`.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamer.config import GalleryConfig

# Global ids: 10 ms ticks since ID_EPOCH_S in the high bits, a random instance tag in the low
# TAG_BITS. 38 bits of ticks last 87 years; the whole id stays below 2**53, so JSON consumers
# that read numbers as doubles (JavaScript) keep it exact.
ID_EPOCH_S = 1_735_689_600  # 2025-01-01T00:00:00Z
ID_TICK_S = 0.01
TAG_BITS = 15
TICK_BITS = 38
# Matching a table of at least this many rows runs in a worker thread (about 0.5 ms at 10,000
# rows of 512 floats on one core; more rows would hold the event loop the cameras share).
OFFLOAD_MIN_ENTRIES = 4096
INITIAL_ROWS = 64


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


class GlobalIds:
    """New global ids, unique across restarts and service instances without any coordination.

    An id is (10 ms ticks since 2025) << 15 | a random 15-bit tag drawn once per gallery. Time
    makes a restarted process's ids differ from its predecessor's; the tag makes two instances
    running at once differ unless both drew the same tag (1 in 32,768) and gave an id in the same
    10 ms. Ids of one instance grow with time; more than 100 new ids a second borrow the next
    ticks. A Redis counter would be exact but only with a Redis, so it is not used.
    """

    def __init__(self, clock: Callable[[], float] = time.time, tag: int | None = None) -> None:
        self.clock = clock
        self.tag = secrets.randbelow(1 << TAG_BITS) if tag is None else tag
        if not 0 <= self.tag < 1 << TAG_BITS:
            raise ValueError(f"global id tag {self.tag} is outside 0..{(1 << TAG_BITS) - 1}")
        self._last_tick = -1

    def next(self) -> int:
        now_tick = int((self.clock() - ID_EPOCH_S) / ID_TICK_S)
        tick = max(now_tick, self._last_tick + 1) % (1 << TICK_BITS)
        self._last_tick = tick
        return (tick << TAG_BITS) | self.tag


class _Table:
    """Gallery entries as rows of parallel arrays; a free row is reused by the next new entry."""

    def __init__(self, embedding_size: int) -> None:
        self.embeddings = np.zeros((INITIAL_ROWS, embedding_size), np.float32)
        self.global_ids = np.zeros(INITIAL_ROWS, np.int64)
        self.cameras = np.zeros(INITIAL_ROWS, np.int64)  # codes from `camera_codes`
        self.last_seen = np.zeros(INITIAL_ROWS, np.float64)
        self.active = np.zeros(INITIAL_ROWS, bool)
        self.used = np.zeros(INITIAL_ROWS, bool)
        self.keys: list[tuple[str, int] | None] = [None] * INITIAL_ROWS
        self.rows: dict[tuple[str, int], int] = {}
        self.camera_codes: dict[str, int] = {}
        self.end = 0  # rows at and beyond this were never used

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, key: tuple[str, int], global_id: int, embedding: np.ndarray, ts: float) -> int:
        row = self._free_row()
        self.keys[row] = key
        self.rows[key] = row
        self.global_ids[row] = global_id
        self.cameras[row] = self.camera_codes.setdefault(key[0], len(self.camera_codes))
        self.update(row, embedding, ts)
        self.used[row] = True
        return row

    def update(self, row: int, embedding: np.ndarray, ts: float) -> None:
        self.embeddings[row] = embedding
        self.last_seen[row] = ts
        self.active[row] = True

    def remove(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            key = self.keys[row]
            if key is not None:
                del self.rows[key]
            self.keys[row] = None
        self.used[rows] = False
        self.active[rows] = False

    def _free_row(self) -> int:
        free = np.flatnonzero(~self.used[: self.end])
        if len(free):
            return int(free[0])
        if self.end == len(self.used):
            self._grow()
        self.end += 1
        return self.end - 1

    def _grow(self) -> None:
        size = 2 * len(self.used)
        for name in ("embeddings", "global_ids", "cameras", "last_seen", "active", "used"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self.keys += [None] * (size - len(self.keys))


class InMemoryGallery(IdentityGallery):
    """One process's gallery; a Redis-backed one would keep the same entries in the store.

    `assign` is serialised by a lock: with a large table the matrix product runs in a worker
    thread, and no other sighting may change the table meanwhile.
    """

    def __init__(
        self,
        settings: GalleryConfig,
        embedding_size: int | None = None,
        *,
        ids: GlobalIds | None = None,
        offload_min_entries: int = OFFLOAD_MIN_ENTRIES,
    ) -> None:
        self.settings = settings
        self.embedding_size = embedding_size
        self.model: str | None = None
        self.match_threshold = settings.threshold_for(None)
        self.ids = ids if ids is not None else GlobalIds()
        self.offload_min_entries = offload_min_entries
        self._table: _Table | None = None
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return 0 if self._table is None else len(self._table)

    async def bind(self, embedding_size: int, model: str) -> None:
        if self.embedding_size is not None and self.embedding_size != embedding_size:
            raise EmbeddingSizeMismatch(
                f"identity gallery holds {self.embedding_size}-d embeddings"
                f"{f' from {self.model}' if self.model else ''} but ReID model '{model}' produces "
                f"{embedding_size}-d ones: use the gallery's model or a new gallery"
            )
        self.embedding_size, self.model = embedding_size, model
        self.match_threshold = self.settings.threshold_for(model)

    async def assign(self, sighting: Sighting) -> GalleryMatch:
        if self.embedding_size is not None and sighting.embedding.shape != (self.embedding_size,):
            raise EmbeddingSizeMismatch(
                f"embedding of shape {sighting.embedding.shape}, gallery holds {self.embedding_size}-d"
            )
        async with self._lock:
            table = self._table_for(sighting.embedding.shape[0])
            self._forget_older_than(table, sighting.ts - self.settings.window_s)
            return await self._assign(table, sighting)

    async def track_ended(self, camera: str, track_id: int) -> None:
        row = None if self._table is None else self._table.rows.get((camera, track_id))
        if row is not None and self._table is not None:
            self._table.active[row] = False

    def _table_for(self, embedding_size: int) -> _Table:
        if self._table is None:
            self._table = _Table(embedding_size)
        return self._table

    async def _assign(self, table: _Table, sighting: Sighting) -> GalleryMatch:
        key = (sighting.camera, sighting.track_id)
        own = table.rows.get(key)
        candidate, similarity = await self._best_match(table, sighting, own)
        matched = candidate is not None and similarity >= self.match_threshold
        candidate_id = int(table.global_ids[candidate]) if candidate is not None else None
        if own is None:
            global_id = candidate_id if matched and candidate_id is not None else self.ids.next()
            own = table.add(key, global_id, sighting.embedding, sighting.ts)
        else:
            # A track keeps its id, except one nobody else holds yet: it joins a match found later
            # (its first views were too poor to recognise the person).
            joins = matched and candidate_id is not None and candidate_id != table.global_ids[own]
            if joins and candidate_id is not None and self._alone(table, own):
                table.global_ids[own] = candidate_id
            table.update(own, sighting.embedding, sighting.ts)
        global_id = int(table.global_ids[own])
        self._limit_size(table)
        same = matched and candidate_id == global_id
        return GalleryMatch(global_id, round(similarity, 4) if same else None)

    async def _best_match(
        self, table: _Table, sighting: Sighting, own: int | None
    ) -> tuple[int | None, float]:
        """Row of the most similar other track, leaving out ids that are on this camera right
        now: one person cannot be two tracks of one camera at once."""
        end = table.end
        if end == 0:
            return None, -1.0
        if end >= self.offload_min_entries:
            similarities = await asyncio.to_thread(np.matmul, table.embeddings[:end], sighting.embedding)
        else:
            similarities = table.embeddings[:end] @ sighting.embedding
        used = table.used[:end].copy()
        if own is not None:
            used[own] = False
        camera = table.camera_codes.get(sighting.camera, -1)
        here = used & table.active[:end] & (table.cameras[:end] == camera)
        eligible = used & ~np.isin(table.global_ids[:end], table.global_ids[:end][here])
        if not eligible.any():
            return None, -1.0
        best = int(np.argmax(np.where(eligible, similarities, -np.inf)))
        return best, float(similarities[best])

    def _alone(self, table: _Table, row: int) -> bool:
        """Whether no other entry holds this row's global id."""
        end = table.end
        holders = table.used[:end] & (table.global_ids[:end] == table.global_ids[row])
        return int(np.count_nonzero(holders)) == 1

    def _forget_older_than(self, table: _Table, oldest_ts: float) -> None:
        """Entries not sighted since `oldest_ts` go, whether their track ended or their camera
        stopped sending (its tracks never end then)."""
        end = table.end
        stale = np.flatnonzero(table.used[:end] & (table.last_seen[:end] < oldest_ts))
        if len(stale):
            table.remove(stale)

    def _limit_size(self, table: _Table) -> None:
        excess = len(table) - self.settings.max_entries
        if excess <= 0:
            return
        rows = np.flatnonzero(table.used[: table.end])
        oldest = np.argpartition(table.last_seen[rows], excess - 1)[:excess]
        table.remove(rows[oldest])


def build_gallery(settings: GalleryConfig) -> IdentityGallery:
    """The configured gallery backend."""
    return InMemoryGallery(settings)
