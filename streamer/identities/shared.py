"""A gallery shared by every instance through Redis: each keeps a replica, one log keeps them equal.

Matching runs at frame rate against this instance's replica (an `InMemoryGallery`), never against
the store: a frame never waits for Redis. Every change the replica makes to what it owns (its own
cameras' tracks, the merges it finds, its operator's decisions) is appended to one Redis stream,
which every instance reads (XREAD BLOCK of at most `poll_s`) and applies to its replica without
writing it again:

    {prefix}:gallery:log     stream, one JSON record per entry (field `r`), trimmed to twice the
                             gallery window (XADD MINID ~)
    {prefix}:gallery:epoch   a random token set by the first instance; when it is gone or has
                             changed, or the log ends before what this instance already read, the
                             store lost its data (a restart without persistence)

Records (`k`): `track` (a track's row: camera, track id, global id, embedding as float16 base64,
first and last seen, views, enrolled name, owning instance), `end`, `merge` (two global ids are
one person), `split`, `confirm` and `apart` (an operator's decisions). Camera names are site-wide;
a row belongs to the instance whose camera saw it, and only that instance writes it.

Two instances may give one person two ids at the same moment (each sighted the person before the
other's track arrived). A replica applying another instance's track runs the same association as
for its own; a link between two different global ids becomes a merge: the smaller id stays, on
every instance whatever the order (a union-find of aliases), and the merge is announced once, by
the instance whose merge record comes first in the log (published as an `identity_merge` event).
Calibration evidence is not copied: each replica learns it from the same tracks and decisions.

The store down: matching goes on in the replica (new global ids are provisional: they may merge
later), changes wait in a bounded queue (the oldest dropped, counted), it is counted and logged
once when lost and once when back. Back, the queue is written; after drops this instance's
replica is written again; when the store lost its log, every instance writes its whole replica
again so that the store is rebuilt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError

from streamer.config import GalleryConfig
from streamer.core.backoff import Backoff
from streamer.core.stats import IdentityStoreStats
from streamer.core.tasks import cancel_and_wait
from streamer.identities.gallery import (
    ALIASES_KEPT,
    MERGE_LINK,
    MERGE_NAME,
    OFFLOAD_MIN_ENTRIES,
    GlobalIds,
    IdentityMerge,
    InMemoryGallery,
    _Table,
)

log = logging.getLogger(__name__)

READ_BATCH = 500  # log entries applied per read
WRITE_BATCH = 256  # records per round trip
MIN_RETENTION_S = 60.0
LOG_DTYPE = np.dtype("<f2")  # embeddings in the log: half the size, ample for cosine similarity
TrackKey = tuple[str, int]


def default_instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StoreKeys:
    def __init__(self, prefix: str) -> None:
        self.log = f"{prefix}:gallery:log"
        self.epoch = f"{prefix}:gallery:epoch"


@dataclass(frozen=True)
class Outgoing:
    sequence: int
    text: str


def stream_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class _Merges:
    """Merges in the order the log holds them (a union-find, smallest id as root): the first
    record that joins two ids is the one announced."""

    def __init__(self) -> None:
        self._parent: OrderedDict[int, int] = OrderedDict()

    def find(self, global_id: int) -> int:
        seen = global_id
        while seen in self._parent:
            seen = self._parent[seen]
        return seen

    def join(self, a: int, b: int) -> tuple[int, int] | None:
        """(kept, merged) when the two were apart until now, else None."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return None
        kept, merged = min(root_a, root_b), max(root_a, root_b)
        self._parent[merged] = kept
        while len(self._parent) > ALIASES_KEPT:
            self._parent.popitem(last=False)
        return kept, merged


class SharedGallery(InMemoryGallery):
    """An `InMemoryGallery` replica kept in step with every instance's through a Redis log."""

    def __init__(
        self,
        settings: GalleryConfig,
        embedding_size: int | None = None,
        *,
        ids: GlobalIds | None = None,
        instance: str | None = None,
        offload_min_entries: int = OFFLOAD_MIN_ENTRIES,
    ) -> None:
        super().__init__(settings, embedding_size, ids=ids, offload_min_entries=offload_min_entries)
        self.store = settings.redis
        self.instance = instance or settings.instance or default_instance_name()
        self.run = secrets.token_hex(8)  # this process's records and rows
        self.keys = StoreKeys(self.store.key_prefix)
        self.endpoint = f"{self.store.host}:{self.store.port}/{self.store.db}"
        self.stats = IdentityStoreStats("redis", self.endpoint, self.instance)
        self._password = self.store.password.get_secret_value() if self.store.password else None
        self._retention_s = max(2 * settings.window_s, MIN_RETENTION_S)
        self._outgoing: deque[Outgoing] = deque()
        self._sequence = itertools.count()
        self._snapshot_due = False  # changes were dropped: write what this instance owns again
        self._wake = asyncio.Event()
        self._attempted = asyncio.Event()  # the first connection attempt is over (synced or not)
        self._supervisor: asyncio.Task[None] | None = None
        self._epoch: Any = None  # the store's epoch token when last connected
        self._last_id = "0-0"
        self._replay_until: tuple[int, int] | None = None
        self._live = False  # read the log up to where it ended when this instance first connected
        self._fresh = True  # the replica held nothing when it joined: the log's links are made
        self._instances: dict[str, str] = {self.run: self.instance}  # run -> instance name
        self._logged = _Merges()
        self._reasons: OrderedDict[int, str] = OrderedDict()  # merged id -> why, for snapshots
        self._pins: OrderedDict[TrackKey, int] = OrderedDict()  # split tracks -> their new id
        self._warned: set[str] = set()

    @property
    def store_stats(self) -> IdentityStoreStats:
        return self.stats

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start syncing; wait at most `connect_timeout_s` for the other instances' identities
        (a store that is down is retried in the background: frames never wait for it)."""
        if self._supervisor is not None:
            return
        for record in self._decisions():  # restored from this instance's calibration store
            self._emit(record, bounded=False)
        self._supervisor = asyncio.create_task(self._supervise(), name="identity-store")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.store.connect_timeout_s):
                await self._attempted.wait()

    async def close(self) -> None:
        """Write what is queued for at most `stop_timeout_s`, then stop syncing."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        deadline = time.monotonic() + self.store.stop_timeout_s
        while self._outgoing and self.stats.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await cancel_and_wait(supervisor)
        if self._outgoing:
            log.warning(
                "identity store %s: stopped with %d changes not written (store down or slow)",
                self.endpoint, len(self._outgoing),
            )

    async def probe(self) -> str:
        """`streamer check`: connect once and read the log's length; raises ConnectionError
        with one line saying what is wrong."""
        client = self._new_client()
        try:
            async with asyncio.timeout(self.store.connect_timeout_s * 2):
                await client.ping()
                length = await client.xlen(self.keys.log)
        except Exception as exc:
            raise ConnectionError(self._describe(exc)) from None
        finally:
            await _close(client, self.store.connect_timeout_s)
        return f"shared gallery: {length} changes in {self.keys.log}"

    def _new_client(self) -> redis.Redis:
        store = self.store
        tls = store.tls
        return redis.Redis(
            host=store.host,
            port=store.port,
            db=store.db,
            username=store.username,
            password=self._password,
            socket_connect_timeout=store.connect_timeout_s,
            socket_timeout=store.connect_timeout_s + store.poll_s,  # outlives a blocking read
            retry=Retry(NoBackoff(), 0),  # reconnecting is the supervisor's job, with backoff
            ssl=tls.enabled,
            ssl_ca_certs=str(tls.ca_file) if tls.ca_file else None,
            ssl_certfile=str(tls.cert_file) if tls.cert_file else None,
            ssl_keyfile=str(tls.key_file) if tls.key_file else None,
            ssl_check_hostname=tls.verify_hostname,
            decode_responses=True,
            client_name="streamer-gallery",
        )

    async def _supervise(self) -> None:
        backoff = Backoff(self.store.reconnect)
        while True:
            client = self._new_client()
            try:
                async with asyncio.timeout(self.store.connect_timeout_s * 2):
                    await client.ping()
                    await self._reconcile(client)
                self._mark_up()
                backoff.reset()
                await self._run_connected(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark_down(exc)
            finally:
                await _close(client, self.store.connect_timeout_s)
            self._attempted.set()
            await asyncio.sleep(backoff.next_delay())

    async def _run_connected(self, client: redis.Redis) -> None:
        """Read the log and write the queue at once (two connections) until one of them fails."""
        tasks = {
            asyncio.create_task(self._read(client), name="identity-store-read"),
            asyncio.create_task(self._write(client), name="identity-store-write"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises what broke the connection
        finally:
            for task in tasks:
                await cancel_and_wait(task)

    def _mark_up(self) -> None:
        stats = self.stats
        if stats.down_since_monotonic is not None:
            log.warning(
                "identity store %s back after %.1f s: %d changes to write; global ids given "
                "meanwhile may merge with other instances'", self.endpoint,
                time.monotonic() - stats.down_since_monotonic, len(self._outgoing),
            )
        else:
            log.info("identity store %s: connected as instance %s", self.endpoint, self.instance)
        stats.connected, stats.down_since_monotonic, stats.last_error = True, None, None

    def _mark_down(self, exc: BaseException) -> None:
        stats = self.stats
        reason = self._describe(exc)
        stats.last_error = reason
        if stats.down_since_monotonic is None:  # once per outage
            stats.outages += 1
            stats.down_since_monotonic = time.monotonic()
            log.warning(
                "identity store %s %s: %s; matching goes on in this instance (its new global ids "
                "are provisional), up to %d changes wait for the store", self.endpoint,
                "lost" if stats.connected else "unreachable", reason, self.store.queue_size,
            )
        stats.connected = False

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, AuthenticationError | AuthorizationError | NoPermissionError):
            return "credentials refused"
        if isinstance(exc, TimeoutError):
            return "no answer in time"
        text = str(exc) or type(exc).__name__
        if "Error 111 " in text or isinstance(exc, ConnectionRefusedError):
            text = "connection refused"
        if self._password:
            text = text.replace(self._password, "***")
        return text

    # -- reconciling after a (re)connection -------------------------------------------------

    async def _reconcile(self, client: redis.Redis) -> None:
        """Find whether the store kept the log; queue what it needs from this replica."""
        epoch = await client.get(self.keys.epoch)
        if epoch is None:
            await client.set(self.keys.epoch, secrets.token_hex(8), nx=True)
            epoch = await client.get(self.keys.epoch)
        tail: Any = await client.xrevrange(self.keys.log, count=1)
        last = stream_id(str(tail[0][0])) if tail else (0, 0)
        lost = self._epoch is not None and (epoch != self._epoch or last < stream_id(self._last_id))
        first = self._epoch is None
        self._epoch = epoch
        if lost:
            log.warning(
                "identity store %s lost its log (restarted without persistence?): writing this "
                "instance's replica again (%d tracks)", self.endpoint, len(self),
            )
            self._queue_snapshot(everything=True)
            self._last_id = "0-0"
        elif self._snapshot_due:
            self._queue_snapshot(everything=False)
        if first:
            self._replay_until = last
            self._fresh = len(self) == 0
            if last == (0, 0):  # an empty log: nothing to catch up with
                self._go_live()

    def _queue_snapshot(self, everything: bool) -> None:
        """The replica as records: this instance's tracks (`everything`: every track), the merges
        and the operators' decisions. They replace whatever was queued."""
        self._outgoing.clear()
        self._snapshot_due = False
        self.stats.snapshots += 1
        table = self._table
        records: list[dict[str, Any]] = []
        if table is not None:
            for row in table.rows.values():
                if everything or table.origins[row] is None:
                    records.append(self._track_record(table, row))
        for merged in list(self.aliases):
            records.append({"k": "merge", "a": self.resolve(merged), "b": merged,
                            "why": self._reasons.get(merged, MERGE_LINK)})
        for record in records + self._decisions():
            self._emit(record, bounded=False)

    def _decisions(self) -> list[dict[str, Any]]:
        """The operators' decisions held: confirmed identities, identities kept apart."""
        records: list[dict[str, Any]] = [
            {"k": "confirm", "gid": global_id} for global_id in sorted(self.confirmed)
        ]
        records += [
            {"k": "apart", "a": a, "b": b}
            for a, others in sorted(self.cannot_link.items()) for b in sorted(others) if a < b
        ]
        return records

    # -- writing ----------------------------------------------------------------------------

    def _emit(self, record: dict[str, Any], bounded: bool = True) -> None:
        """Queue a record for the log; never waits (a full queue drops its oldest)."""
        record["by"] = self.run
        record["at"] = round(time.time(), 3)
        if bounded and len(self._outgoing) >= self.store.queue_size:
            self._outgoing.popleft()
            self.stats.dropped += 1
            self._snapshot_due = True
        self._outgoing.append(Outgoing(next(self._sequence), json.dumps(record, separators=(",", ":"))))
        self.stats.queued = len(self._outgoing)
        self._wake.set()

    async def _write(self, client: redis.Redis) -> None:
        while True:
            while self._outgoing:
                batch = list(itertools.islice(self._outgoing, WRITE_BATCH))
                oldest_kept = f"{int((time.time() - self._retention_s) * 1000)}-0"
                async with client.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.xadd(self.keys.log, {"r": item.text}, minid=oldest_kept, approximate=True)
                    await pipe.execute()
                written = batch[-1].sequence
                while self._outgoing and self._outgoing[0].sequence <= written:
                    self._outgoing.popleft()
                self.stats.sent += len(batch)
                self.stats.queued = len(self._outgoing)
            self._wake.clear()
            await self._wake.wait()

    def _track_record(self, table: _Table, row: int) -> dict[str, Any]:
        key = table.keys[row]
        assert key is not None
        owner = table.origins[row] or self.run
        embedding = np.ascontiguousarray(table.embeddings[row], LOG_DTYPE)
        return {
            "k": "track",
            "cam": key[0],
            "tid": key[1],
            "gid": int(table.global_ids[row]),
            "emb": base64.b64encode(embedding.tobytes()).decode("ascii"),
            "first": float(table.first_seen[row]),
            "last": float(table.last_seen[row]),
            "views": int(table.views[row]),
            "name": table.names[row],
            "active": bool(table.active[row]),
            "own": owner,
            "inst": self._instances.get(owner, owner),
        }

    # -- what the replica tells the log (InMemoryGallery's hooks) ---------------------------

    def _row_changed(self, table: _Table, row: int) -> None:
        self._emit(self._track_record(table, row))

    def _track_ended(self, camera: str, track_id: int, last_seen: float) -> None:
        self._emit({"k": "end", "cam": camera, "tid": track_id, "own": self.run, "last": last_seen})

    def _ids_joined(self, merge: IdentityMerge) -> None:
        """Announced once the log says this instance's record of it came first."""
        self.stats.merges += 1
        self._reasons[merge.absorbed] = merge.reason
        while len(self._reasons) > ALIASES_KEPT:
            self._reasons.popitem(last=False)
        self._emit({"k": "merge", "a": merge.survivor, "b": merge.absorbed, "why": merge.reason})

    def _decided(self, kind: str, global_id: int, new_id: int | None = None,
                 tracks: list[tuple[str, int]] | None = None) -> None:
        if kind == "split":
            self._emit({"k": "split", "gid": global_id, "new": new_id,
                        "tracks": [list(key) for key in tracks or []]})
        else:
            self._emit({"k": "confirm", "gid": global_id})

    def _instance_of(self, table: _Table, row: int) -> str | None:
        origin = table.origins[row]
        return self.instance if origin is None else self._instances.get(origin, origin)

    # -- reading ----------------------------------------------------------------------------

    async def _read(self, client: redis.Redis) -> None:
        block_ms = max(1, round(self.store.poll_s * 1000))
        while True:
            response: Any = await client.xread(
                {self.keys.log: self._last_id}, count=READ_BATCH, block=block_ms
            )
            if not response:
                self._go_live()
                continue
            for _stream, entries in response:
                for entry_id, fields in entries:
                    await self._apply_entry(fields.get("r"))
                    self._last_id = entry_id
                    if self._replay_until is not None and stream_id(entry_id) >= self._replay_until:
                        self._go_live()
                await asyncio.sleep(0)  # the cameras share this loop

    def _go_live(self) -> None:
        self._live = True
        self._attempted.set()

    async def _apply_entry(self, text: str | None) -> None:
        try:
            record = json.loads(text or "")
            kind = record["k"]
            mine = record.get("by") == self.run
            if kind == "merge":
                self._order_merge(int(record["a"]), int(record["b"]), str(record.get("why")), mine)
            if mine:
                return
            async with self._lock:
                await self._apply(kind, record)
            self.stats.applied += 1
        except (ValueError, KeyError, TypeError) as exc:
            self._warn_once("record", f"identity store {self.endpoint}: unreadable log entries "
                                      f"skipped ({type(exc).__name__}: {exc})")
        except Exception:  # a defect must not stop the replica at this entry for ever
            if "defect" not in self._warned:
                self._warned.add("defect")
                log.exception("identity store %s: a log entry could not be applied", self.endpoint)

    def _order_merge(self, a: int, b: int, reason: str, mine: bool) -> None:
        joined = self._logged.join(a, b)
        if joined is not None and mine:
            kept, merged = joined
            self._merges.append(
                IdentityMerge(kept, merged, reason, self._cameras_of(self.resolve(kept)))
            )

    async def _apply(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "track":
            await self._apply_track(record)
        elif kind == "end":
            self._apply_end(record)
        elif kind == "merge":
            reason = str(record.get("why") or MERGE_LINK)
            kept = self._join(int(record["a"]), int(record["b"]), reason, announce=False)
            for merged in (int(record["a"]), int(record["b"])):
                if kept is not None and merged != kept:
                    self._reasons[merged] = reason
        elif kind == "split":
            self._apply_split(record)
        elif kind == "confirm":
            self._apply_confirm(int(record["gid"]))
        elif kind == "apart":
            self._keep_apart(self.resolve(int(record["a"])), self.resolve(int(record["b"])))

    async def _apply_track(self, record: dict[str, Any]) -> None:
        """Another instance's track: into the replica, and linked as this instance would."""
        owner = str(record["own"])
        if owner == self.run:
            return  # this process's own track, written again by another instance
        key = (str(record["cam"]), int(record["tid"]))
        self._instances[owner] = str(record.get("inst") or owner)
        embedding = np.frombuffer(base64.b64decode(record["emb"]), LOG_DTYPE).astype(np.float32)
        if self.embedding_size is not None and embedding.shape != (self.embedding_size,):
            self._warn_once("size", f"identity store {self.endpoint}: tracks with {embedding.shape[0]}"
                                    f"-d embeddings skipped (this instance's ReID model gives "
                                    f"{self.embedding_size}-d): every instance needs the same model")
            return
        table = self._table_for(embedding.shape[0])
        first, last = float(record["first"]), float(record["last"])
        global_id = self.resolve(int(record["gid"]))
        pinned = self._pins.get(key)
        if pinned is not None:  # an operator split it: the owner's older records do not undo it
            if global_id == self.resolve(pinned):
                del self._pins[key]
            else:
                global_id = self.resolve(pinned)
        row = table.rows.get(key)
        if row is not None and table.origins[row] != owner:
            if table.origins[row] is None:
                self._warn_once(f"camera:{key[0]}", f"identity store {self.endpoint}: camera "
                                f"'{key[0]}' is also served by instance {self._instances[owner]}: "
                                "camera names must be unique across instances; its tracks ignored")
                return
            if first <= table.first_seen[row]:
                return  # an older run's track, written again late
            table.remove(np.array([row]))
            row = None
        calibrating = self.settings.calibration.enabled
        if row is None:
            if calibrating:
                self.calibration.learn_track(key[0], embedding)
            row = table.add(key, global_id, embedding, last, origin=owner)
            table.first_seen[row] = first
        elif last > table.last_seen[row] or (
            last == table.last_seen[row] and global_id != table.global_ids[row]
        ):
            table.update(row, embedding, last)
            table.global_ids[row] = global_id
        else:
            return  # nothing new, or older than what the replica holds
        table.views[row] = int(record.get("views", 1))
        table.names[row] = record.get("name")
        table.active[row] = bool(record.get("active", True))
        if self._live or not self._fresh:
            await self._link(table, row)
        self._limit_size(table)

    async def _link(self, table: _Table, row: int) -> None:
        """Run this replica's association for another instance's track: a link to a different
        global id is a merge (the owner found none: it had not seen that person's track yet)."""
        view = await self._view(table, row)
        calibrating = self.settings.calibration.enabled
        if calibrating:
            self._learn_negatives(table, row, view)
        name = table.names[row]
        if name is not None:  # one enrolled name is one person, whoever named which track first
            for other in np.flatnonzero(table.used[: table.end]).tolist():
                if table.names[other] == name and table.global_ids[other] != table.global_ids[row]:
                    self._join(int(table.global_ids[row]), int(table.global_ids[other]), MERGE_NAME)
            return
        ready = table.views[row] >= self.settings.calibration.min_views_to_link or not calibrating
        if not (ready and self._alone(table, row)):
            return  # a track keeps its id once others share it, as in InMemoryGallery
        candidate, similarity, threshold = self._decide(table, row, view)
        if candidate is None or table.global_ids[candidate] == table.global_ids[row]:
            return
        if self._join(int(table.global_ids[row]), int(table.global_ids[candidate]), MERGE_LINK) is None:
            return
        if calibrating:
            self._learn_transit(table, candidate, row, similarity - threshold)

    def _apply_end(self, record: dict[str, Any]) -> None:
        table = self._table
        row = None if table is None else table.rows.get((str(record["cam"]), int(record["tid"])))
        if table is not None and row is not None and table.origins[row] == record.get("own"):
            table.active[row] = False

    def _apply_split(self, record: dict[str, Any]) -> None:
        table = self._table
        global_id, new_id = self.resolve(int(record["gid"])), int(record["new"])
        tracks = [(str(camera), int(track_id)) for camera, track_id in record["tracks"]]
        for key in tracks:
            self._pins[key] = new_id
            self._pins.move_to_end(key)
        while len(self._pins) > self.settings.max_entries:
            self._pins.popitem(last=False)
        moved = [] if table is None else [table.rows[key] for key in tracks if key in table.rows]
        if table is not None:
            self._move_apart(table, global_id, moved, new_id)
            for row in moved:
                if table.origins[row] is None:  # this instance's own track: say so in its record
                    self._pins.pop(table.keys[row] or ("", 0), None)
                    self._row_changed(table, row)
        else:
            self._keep_apart(global_id, new_id)

    def _apply_confirm(self, global_id: int) -> None:
        global_id = self.resolve(global_id)
        table = self._table
        if table is None:
            return
        rows = np.flatnonzero(table.used[: table.end] & (table.global_ids[: table.end] == global_id))
        if len(rows):
            self.confirmed.add(global_id)
            self._teach_same_person(table, rows.tolist())

    def _keep_apart(self, a: int, b: int) -> None:
        if a != b:
            self.cannot_link.setdefault(a, set()).add(b)
            self.cannot_link.setdefault(b, set()).add(a)

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("%s", message)


async def _close(client: redis.Redis, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await client.aclose()
    except Exception:
        await client.connection_pool.disconnect(inuse_connections=True)
