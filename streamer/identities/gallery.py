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
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamer.config import GalleryConfig
from streamer.identities.calibration import Calibration, pair_of

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
# Two tracks seen this close together in time were visible at the same moment.
CONCURRENT_S = 1.0


class EmbeddingSizeMismatch(ValueError):
    """A model's embeddings cannot be compared with the stored ones; refused at start."""


@dataclass(frozen=True)
class Sighting:
    """A track's current ReID embedding (unit length)."""

    camera: str
    track_id: int
    embedding: np.ndarray
    ts: float
    views: int = 1  # views of the track folded into the embedding so far


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

    async def name_track(self, camera: str, track_id: int, name: str) -> int | None:
        """The track's face matched the enrolled `name`; its global id, None if not held."""
        return None

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
    """Gallery entries (tracks) as rows of parallel arrays; a free row is reused by the next one.

    `embeddings` are the tracks' raw embeddings; `calibrated` the same without their camera's
    bias, recomputed when that camera's mean moved (`centre_version`)."""

    ARRAYS = ("embeddings", "calibrated", "global_ids", "cameras", "first_seen", "last_seen",
              "active", "used", "versions")

    def __init__(self, embedding_size: int) -> None:
        self.embeddings = np.zeros((INITIAL_ROWS, embedding_size), np.float32)
        self.calibrated = np.zeros((INITIAL_ROWS, embedding_size), np.float32)
        self.global_ids = np.zeros(INITIAL_ROWS, np.int64)
        self.cameras = np.zeros(INITIAL_ROWS, np.int64)  # codes from `camera_codes`
        self.first_seen = np.zeros(INITIAL_ROWS, np.float64)
        self.last_seen = np.zeros(INITIAL_ROWS, np.float64)
        self.active = np.zeros(INITIAL_ROWS, bool)
        self.used = np.zeros(INITIAL_ROWS, bool)
        self.versions = np.full(INITIAL_ROWS, -1, np.int64)  # camera centre version of `calibrated`
        self.keys: list[tuple[str, int] | None] = [None] * INITIAL_ROWS
        self.names: list[str | None] = [None] * INITIAL_ROWS  # enrolled name from the track's face
        self.rows: dict[tuple[str, int], int] = {}
        self.camera_codes: dict[str, int] = {}
        self.camera_names: list[str] = []
        self.end = 0  # rows at and beyond this were never used

    def __len__(self) -> int:
        return len(self.rows)

    def code(self, camera: str) -> int:
        if camera not in self.camera_codes:
            self.camera_codes[camera] = len(self.camera_names)
            self.camera_names.append(camera)
        return self.camera_codes[camera]

    def add(self, key: tuple[str, int], global_id: int, embedding: np.ndarray, ts: float) -> int:
        row = self._free_row()
        self.keys[row] = key
        self.rows[key] = row
        self.global_ids[row] = global_id
        self.cameras[row] = self.code(key[0])
        self.first_seen[row] = ts
        self.update(row, embedding, ts)
        self.used[row] = True
        return row

    def update(self, row: int, embedding: np.ndarray, ts: float) -> None:
        self.embeddings[row] = embedding
        self.versions[row] = -1
        self.last_seen[row] = ts
        self.active[row] = True

    def remove(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            key = self.keys[row]
            if key is not None:
                del self.rows[key]
            self.keys[row] = None
            self.names[row] = None
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
        for name in self.ARRAYS:
            old = getattr(self, name)
            new = np.full((size, *old.shape[1:]), -1 if name == "versions" else 0, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self.keys += [None] * (size - len(self.keys))
        self.names += [None] * (size - len(self.names))


@dataclass(frozen=True)
class Member:
    """One track of an identity, as the console and the operator's decisions see it."""

    camera: str
    track_id: int
    first_seen: float
    last_seen: float
    active: bool


@dataclass(frozen=True)
class Identity:
    global_id: int
    members: tuple[Member, ...]
    confirmed: bool


class UnknownIdentity(KeyError):
    """An operator named a global id or a track the gallery does not hold (any more)."""

    def __str__(self) -> str:
        return str(self.args[0])


class InMemoryGallery(IdentityGallery):
    """One process's gallery, as rows of one matrix so that matching a sighting is one product.

    A track links to a person (joins a global id) when, in the calibrated space
    (`calibration.py`), that person's most similar track is above the camera pair's threshold,
    beats the next person by `margin`, and prefers this track to any other track of this camera
    (`mutual`). Tracks seen at once on one camera, or on two cameras whose views do not overlap,
    are never one person, and teach the pair's threshold; the operator's confirmations, rejections,
    merges and splits are kept and honoured by every later decision.

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
        calibration: Calibration | None = None,
    ) -> None:
        self.settings = settings
        self.embedding_size = embedding_size
        self.model: str | None = None
        self.match_threshold = settings.threshold_for(None)
        self.calibration = calibration or Calibration(
            settings.calibration, settings.calibrated_threshold_for(None)
        )
        self.ids = ids if ids is not None else GlobalIds()
        self.offload_min_entries = offload_min_entries
        self.overlapping = {
            pair_of(a, b) for group in settings.overlapping_cameras for a in group for b in group
        }
        self.confirmed: set[int] = set()  # global ids an operator confirmed
        self.cannot_link: dict[int, set[int]] = {}  # global ids an operator kept apart
        self._centre_versions: dict[str, int] = {}
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
        self.calibration.default_threshold = self.settings.calibrated_threshold_for(model)

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

    # -- matching ---------------------------------------------------------------------------

    async def _assign(self, table: _Table, sighting: Sighting) -> GalleryMatch:
        key = (sighting.camera, sighting.track_id)
        own = table.rows.get(key)
        calibrating = self.settings.calibration.enabled
        if own is None and calibrating:
            self.calibration.learn_track(sighting.camera, sighting.embedding)
        if own is None:
            own = table.add(key, -1, sighting.embedding, sighting.ts)
        else:
            table.update(own, sighting.embedding, sighting.ts)
        view = await self._view(table, own)
        if calibrating:
            self._learn_negatives(table, own, view)
        if sighting.views >= self.settings.calibration.min_views_to_link or not calibrating:
            candidate, similarity, threshold = self._decide(table, own, view)
        else:  # one poor first view decides nothing: the track waits for its next views
            candidate, similarity, threshold = None, -1.0, 0.0
        current = int(table.global_ids[own])
        matched = candidate is not None
        candidate_id = int(table.global_ids[candidate]) if candidate is not None else None
        if current < 0:
            table.global_ids[own] = candidate_id if candidate_id is not None else self.ids.next()
            if candidate is not None and calibrating:
                self._learn_transit(table, candidate, own, similarity - threshold)
        elif matched and candidate_id != current and self._alone(table, own) and table.names[own] is None:
            # A track keeps its id, except one nobody else holds yet: it joins a match found later
            # (its first views were too poor to recognise the person).
            table.global_ids[own] = candidate_id
        global_id = int(table.global_ids[own])
        self._limit_size(table)
        same = matched and candidate_id == global_id
        return GalleryMatch(global_id, round(similarity, 4) if same else None)

    async def _view(self, table: _Table, own: int) -> _View:
        """Similarities of every row to the row `own`, each in the space its camera pair uses."""
        end = table.end
        self._refresh_calibrated(table)
        camera = table.camera_names[table.cameras[own]]
        raw, calibrated = table.embeddings[:end], table.calibrated[:end]
        if end >= self.offload_min_entries:
            raw_similarity, calibrated_similarity = await asyncio.to_thread(
                _similarities, raw, calibrated, own
            )
        else:
            raw_similarity, calibrated_similarity = _similarities(raw, calibrated, own)
        centred = np.array(
            [self.settings.calibration.enabled and self.calibration.centred(name)
             for name in table.camera_names], bool,
        )
        both = centred[table.cameras[:end]] & centred[table.cameras[own]]
        similarity = np.where(both, calibrated_similarity, raw_similarity)
        thresholds = np.array(
            [self.calibration.threshold(camera, name).value if centred[code] and centred[table.cameras[own]]
             else self.match_threshold + self.calibration.offset
             for code, name in enumerate(table.camera_names)],
            np.float64,
        )
        overlapping = np.array(
            [pair_of(camera, name) in self.overlapping for name in table.camera_names], bool
        )
        return _View(similarity, thresholds[table.cameras[:end]], overlapping[table.cameras[:end]], both)

    def _refresh_calibrated(self, table: _Table) -> None:
        """Rows whose camera's mean moved since their calibrated embedding was made."""
        end = table.end
        for name, code in table.camera_codes.items():
            version = int(self.calibration.centres[name].tracks) if name in self.calibration.centres else 0
            stale = np.flatnonzero(table.used[:end] & (table.cameras[:end] == code)
                                   & (table.versions[:end] != version))
            if not len(stale):
                continue
            if self.settings.calibration.enabled and self.calibration.centred(name):
                centred = table.embeddings[stale] - self.calibration.centres[name].mean
                norms = np.linalg.norm(centred, axis=1, keepdims=True)
                table.calibrated[stale] = centred / np.maximum(norms, 1e-12)
            else:
                table.calibrated[stale] = table.embeddings[stale]
            table.versions[stale] = version

    def _concurrent(self, table: _Table, own: int, view: _View) -> np.ndarray:
        """Rows that are another person for sure: their track was seen during this one's, on this
        camera or on a camera whose view does not overlap this one."""
        end = table.end
        started, now = table.first_seen[own], table.last_seen[own]
        during = (
            table.used[:end]
            & (table.first_seen[:end] - CONCURRENT_S <= now)
            & (table.last_seen[:end] + CONCURRENT_S >= started)
        )
        during[own] = False
        same_camera = table.cameras[:end] == table.cameras[own]
        return during & (same_camera | ~view.overlapping)

    def _learn_negatives(self, table: _Table, own: int, view: _View) -> None:
        """Each track seen at once with this one is somebody else: a free negative of its pair."""
        others = np.flatnonzero(self._concurrent(table, own, view) & view.calibrated)
        own_key = table.keys[own]
        assert own_key is not None
        for row in others.tolist():
            other_key = table.keys[row]
            if other_key is not None and table.global_ids[row] != table.global_ids[own]:
                self.calibration.add_negative(own_key, other_key, float(view.similarity[row]))

    def _decide(self, table: _Table, own: int, view: _View) -> tuple[int | None, float, float]:
        """The row of the person this track links to (None: nobody), its similarity and threshold."""
        end = table.end
        ids = table.global_ids[:end]
        eligible = table.used[:end].copy()
        eligible[own] = False
        eligible &= ~(ids < 0)
        # One person cannot be two tracks of one camera at once, nor on two cameras at once.
        here = table.used[:end] & table.active[:end] & (table.cameras[:end] == table.cameras[own])
        here[own] = False
        eligible &= ~np.isin(ids, ids[here])
        eligible &= ~self._concurrent(table, own, view)
        own_name = table.names[own]
        if own_name is not None:  # a face said who this is: never linked to somebody else's name
            named_otherwise = [r for r in np.flatnonzero(eligible).tolist()
                               if table.names[r] not in (None, own_name)]
            eligible[named_otherwise] = False
        own_id = int(table.global_ids[own])
        kept_apart = self.cannot_link.get(own_id, set())
        if kept_apart:
            eligible &= ~np.isin(ids, list(kept_apart))
        if not eligible.any():
            return None, -1.0, 0.0
        similarity = view.similarity
        required = view.thresholds + self._transit_penalties(table, own, eligible)
        margin = self.settings.margin if self.settings.calibration.enabled else 0.0
        above = eligible & (similarity >= required)
        if not above.any():
            return None, -1.0, 0.0
        best = int(np.argmax(np.where(above, similarity, -np.inf)))
        best_id = ids[best]
        rivals = eligible & (ids != best_id)
        if margin > 0 and rivals.any() and similarity[best] - similarity[rivals].max() < margin:
            return None, -1.0, 0.0
        if self.settings.mutual and not self._mutual(table, own, best, view):
            return None, -1.0, 0.0
        return best, float(similarity[best]), float(required[best])

    def _mutual(self, table: _Table, own: int, best: int, view: _View) -> bool:
        """Whether the matched track prefers this track to every other track of this camera."""
        end = table.end
        rows = table.used[:end] & (table.cameras[:end] == table.cameras[own])
        rows[own] = False
        rows &= table.global_ids[:end] != table.global_ids[best]
        if not rows.any():
            return True
        space = table.calibrated if view.calibrated[best] else table.embeddings
        others = space[:end][rows] @ space[best]
        return bool(others.max() <= view.similarity[best])

    def _transit_penalties(self, table: _Table, own: int, eligible: np.ndarray) -> np.ndarray:
        penalties = np.zeros(table.end, np.float64)
        if not self.settings.calibration.enabled:
            return penalties
        camera = table.camera_names[table.cameras[own]]
        arrived = table.first_seen[own]
        penalty = self.settings.calibration.implausible_transit_penalty
        for row in np.flatnonzero(eligible & (table.cameras[: table.end] != table.cameras[own])).tolist():
            origin = table.camera_names[table.cameras[row]]
            if not self.calibration.transit_plausible(origin, camera, arrived - table.last_seen[row]):
                penalties[row] = penalty
        return penalties

    def _learn_transit(self, table: _Table, matched: int, own: int, above_threshold: float) -> None:
        """A confident first link of a new track teaches how long people take between cameras."""
        if above_threshold < self.settings.calibration.confident_margin:
            return
        origin = table.camera_names[table.cameras[matched]]
        destination = table.camera_names[table.cameras[own]]
        self.calibration.add_transit(origin, destination, table.first_seen[own] - table.last_seen[matched])

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

    # -- faces ------------------------------------------------------------------------------

    async def name_track(self, camera: str, track_id: int, name: str) -> int | None:
        """A track's face matched an enrolled person: the identity follows the name across
        cameras, whatever the bodies say, and tracks of one name confirm their links.

        Returns the track's global id (None when the gallery holds no such track)."""
        async with self._lock:
            table = self._table
            row = None if table is None else table.rows.get((camera, track_id))
            if table is None or row is None:
                return None
            table.names[row] = name
            current = int(table.global_ids[row])
            members = self._rows_of(current)[1]
            named = [r for r in np.flatnonzero(table.used[: table.end]).tolist()
                     if table.names[r] == name and int(table.global_ids[r]) != current]
            strangers = [r for r in members if table.names[r] not in (None, name)]
            if named:
                target = int(table.global_ids[named[0]])
                moving = [row] if strangers else members  # body links without a name follow
                table.global_ids[moving] = target
                if not strangers:
                    self._rename_constraints(current, target)
                self._teach_same_person(table, [*named, *moving])
            elif strangers:  # somebody else's name is in this identity: the track leaves it
                table.global_ids[row] = self.ids.next()
            else:
                same_name = [r for r in members if table.names[r] == name]
                if len(same_name) >= 2:
                    self._teach_same_person(table, same_name)
            return int(table.global_ids[row])

    # -- the operator's decisions -----------------------------------------------------------

    def identities(self) -> list[Identity]:
        """Every global id the gallery holds, with its tracks (oldest first)."""
        table = self._table
        if table is None:
            return []
        members: dict[int, list[Member]] = {}
        for key, row in table.rows.items():
            members.setdefault(int(table.global_ids[row]), []).append(
                Member(key[0], key[1], float(table.first_seen[row]), float(table.last_seen[row]),
                       bool(table.active[row]))
            )
        return [
            Identity(global_id, tuple(sorted(found, key=lambda m: m.first_seen)),
                     global_id in self.confirmed)
            for global_id, found in sorted(members.items())
        ]

    async def confirm(self, global_id: int) -> Identity:
        """Every link of this identity is right: kept, and taught to the calibration."""
        async with self._lock:
            table, rows = self._rows_of(global_id)
            self.confirmed.add(global_id)
            self._teach_same_person(table, rows)
            return self._identity(global_id)

    async def reject(self, global_id: int, camera: str, track_id: int) -> Identity:
        """This track is not this person: it gets an id of its own, kept apart from this one."""
        return (await self.split(global_id, [(camera, track_id)]))[1]

    async def merge(self, global_ids: list[int]) -> Identity:
        """These identities are one person: the oldest id stays, the calibration learns it."""
        async with self._lock:
            table = self._table
            kept = min(global_ids)
            rows: list[int] = []
            for global_id in global_ids:
                rows += self._rows_of(global_id)[1]
            if table is None:
                raise UnknownIdentity("the gallery holds nobody yet")
            for other in global_ids:
                if other != kept and other in self.cannot_link.get(kept, set()):
                    raise ValueError(f"identities {kept} and {other} were kept apart by an operator")
            table.global_ids[rows] = kept
            for other in set(global_ids) - {kept}:
                self._rename_constraints(other, kept)
            self.confirmed.add(kept)
            self._teach_same_person(table, rows)
            return self._identity(kept)

    async def split(self, global_id: int, tracks: list[tuple[str, int]]) -> tuple[Identity, Identity]:
        """These tracks are somebody else: a new id for them, kept apart from `global_id`."""
        async with self._lock:
            table, rows = self._rows_of(global_id)
            moved = [table.rows[key] for key in tracks if key in table.rows]
            missing = [key for key in tracks if table.rows.get(key) not in rows]
            if missing or not moved:
                raise UnknownIdentity(
                    f"identity {global_id} holds no track {', '.join(f'{c}#{t}' for c, t in missing)}"
                )
            if len(moved) == len(rows):
                raise ValueError(f"splitting every track of identity {global_id} changes nothing")
            new_id = self.ids.next()
            table.global_ids[moved] = new_id
            self.cannot_link.setdefault(global_id, set()).add(new_id)
            self.cannot_link.setdefault(new_id, set()).add(global_id)
            stayed = [row for row in rows if row not in moved]
            for a in moved:
                for b in stayed:
                    key_a, key_b = table.keys[a], table.keys[b]
                    if key_a is not None and key_b is not None and self._comparable(table, a, b):
                        self.calibration.add_negative(key_a, key_b, self._pair_similarity(table, a, b))
            return self._identity(global_id), self._identity(new_id)

    def _rows_of(self, global_id: int) -> tuple[_Table, list[int]]:
        table = self._table
        rows = [] if table is None else np.flatnonzero(
            table.used[: table.end] & (table.global_ids[: table.end] == global_id)
        ).tolist()
        if table is None or not rows:
            raise UnknownIdentity(f"no identity {global_id} (unknown, or aged out of the gallery)")
        return table, rows

    def _identity(self, global_id: int) -> Identity:
        return next(i for i in self.identities() if i.global_id == global_id)

    def _rename_constraints(self, old: int, new: int) -> None:
        for apart in self.cannot_link.pop(old, set()):
            self.cannot_link.setdefault(new, set()).add(apart)
            others = self.cannot_link.setdefault(apart, set())
            others.discard(old)
            others.add(new)
        if old in self.confirmed:
            self.confirmed.discard(old)

    def _comparable(self, table: _Table, a: int, b: int) -> bool:
        names = table.camera_names
        return self.calibration.centred(names[table.cameras[a]]) and self.calibration.centred(
            names[table.cameras[b]]
        )

    def _pair_similarity(self, table: _Table, a: int, b: int) -> float:
        self._refresh_calibrated(table)
        return float(table.calibrated[a] @ table.calibrated[b])

    def _teach_same_person(self, table: _Table, rows: list[int]) -> None:
        """Positives for every pair of the rows on comparable cameras, and their transits."""
        ordered = sorted(rows, key=lambda row: table.first_seen[row])
        for index, a in enumerate(ordered):
            for b in ordered[index + 1:]:
                key_a, key_b = table.keys[a], table.keys[b]
                if key_a is not None and key_b is not None and self._comparable(table, a, b):
                    self.calibration.add_positive(key_a, key_b, self._pair_similarity(table, a, b))
        names = table.camera_names
        for previous, following in itertools.pairwise(ordered):
            self.calibration.add_transit(
                names[table.cameras[previous]], names[table.cameras[following]],
                table.first_seen[following] - table.last_seen[previous],
            )


@dataclass(frozen=True)
class _View:
    """One sighting's similarities to every row, in the space of each row's camera pair."""

    similarity: np.ndarray
    thresholds: np.ndarray
    overlapping: np.ndarray  # the row's camera may see the same person at the same moment
    calibrated: np.ndarray  # both cameras centred: similarity and threshold are calibrated


def _similarities(raw: np.ndarray, calibrated: np.ndarray, own: int) -> tuple[np.ndarray, np.ndarray]:
    return raw @ raw[own], calibrated @ calibrated[own]


def build_gallery(settings: GalleryConfig) -> IdentityGallery:
    """The configured gallery backend."""
    return InMemoryGallery(settings)
