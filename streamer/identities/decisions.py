"""The operator's decisions on cross-camera identities, and what the gallery learned, kept.

`OperatorGallery` is the gallery the service runs: the stage assigns global ids through it (it is
an `IdentityGallery` passing every call to the configured gallery), the API corrects them
(`confirm`, `reject`, `merge`, `split`). The decisions are kept by the gallery, which honours
them in every later decision, and they teach its calibration (per camera pair thresholds, transit
times). `DecisionStore` keeps the calibration and the decisions in one JSON file, so that a restart
does not forget what the site's operator taught: saved after each decision and at `close`,
restored when the ReID model is bound at start (before the first frame).

The file is private (0600 in a folder created 0700: it holds track times and cameras), written
atomically (a killed service leaves the old file or the new one). A file that cannot be read
refuses the start, naming the path: ignoring it would overwrite the operator's decisions at the
next save. A file learned with another ReID model is not restored (its similarities mean nothing
for the new model) and is replaced at the next save; the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.config import StreamerConfig
from streamer.core.stats import IdentityStoreStats
from streamer.identities.gallery import (
    GalleryMatch,
    Identity,
    IdentityGallery,
    IdentityMerge,
    InMemoryGallery,
    Sighting,
    UnknownIdentity,
)

__all__ = [
    "CorruptDecisionStore",
    "DecisionStore",
    "NothingToChange",
    "OperatorGallery",
    "SavedDecisions",
    "UnknownIdentity",
    "calibration_store_path",
]

log = logging.getLogger(__name__)

FORMAT = "streamer identity decisions"
VERSION = 1
FILE_MODE = 0o600
FOLDER_MODE = 0o700


class CorruptDecisionStore(ValueError):
    """The store file exists but cannot be read; the message names it and what to do."""


class NothingToChange(ValueError):
    """An operator's decision that would change nothing (one identity merged with itself)."""


def calibration_store_path(config: StreamerConfig) -> Path | None:
    """`identities.calibration_store`, which the config loader made relative to the config file
    (without a config file, relative to the working directory); None: nothing kept."""
    path = config.identities.calibration_store
    return None if path is None else path.absolute()


@dataclass(frozen=True)
class SavedDecisions:
    """What one file holds."""

    model: str
    embedding_size: int
    calibration: dict[str, Any]
    confirmed: frozenset[int]
    kept_apart: frozenset[tuple[int, int]]  # (smaller, larger) global ids


class DecisionStore:
    """One JSON file: `read()` (None when there is none yet) and `write()`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))

    def read(self) -> SavedDecisions | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._corrupt(exc.strerror or str(exc)) from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a '{FORMAT}' file")
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, this service reads {VERSION}")
            calibration = data["calibration"]
            if not isinstance(calibration, dict):
                raise ValueError("calibration is not an object")
            return SavedDecisions(
                model=str(data["model"]),
                embedding_size=int(data["embedding_size"]),
                calibration=calibration,
                confirmed=frozenset(int(i) for i in data["confirmed"]),
                kept_apart=frozenset(_pair(int(a), int(b)) for a, b in data["kept_apart"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise self._corrupt(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None

    def _corrupt(self, reason: str) -> CorruptDecisionStore:
        return CorruptDecisionStore(
            f"{self.path}: not a readable identity calibration store ({reason}); restore it from a "
            "backup, or move it away to start a new calibration (identities.calibration_store)"
        )

    def write(self, saved: SavedDecisions) -> None:
        """Atomically, 0600, in a folder created 0700."""
        body = json.dumps({
            "format": FORMAT,
            "version": VERSION,
            "saved_at": round(time.time(), 3),
            "model": saved.model,
            "embedding_size": saved.embedding_size,
            "confirmed": sorted(saved.confirmed),
            "kept_apart": sorted([a, b] for a, b in saved.kept_apart),
            "calibration": saved.calibration,
        }, separators=(",", ":"))
        folder = self.path.parent
        if not folder.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=FOLDER_MODE)
                os.chmod(folder, FOLDER_MODE)  # mkdir's mode is narrowed by the umask, never widened
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()  # left by a killed writer of the same pid
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


class OperatorGallery(IdentityGallery):
    """The configured gallery, with the operator's decisions made through it and kept in `store`
    (None: kept until the service stops)."""

    def __init__(self, gallery: InMemoryGallery, store: DecisionStore | None = None) -> None:
        self.gallery = gallery
        self.store = store
        self.saved = True  # the last save (or none needed) succeeded
        self._restored = False  # a store that could not be read is never overwritten
        self._save_lock = asyncio.Lock()

    # -- the stage's side: every call goes to the gallery -------------------------------------

    async def bind(self, embedding_size: int, model: str) -> None:
        await self.gallery.bind(embedding_size, model)
        self.restore(embedding_size, model)

    async def assign(self, sighting: Sighting) -> GalleryMatch:
        return await self.gallery.assign(sighting)

    async def track_ended(self, camera: str, track_id: int) -> None:
        await self.gallery.track_ended(camera, track_id)

    async def name_track(self, camera: str, track_id: int, name: str) -> int | None:
        return await self.gallery.name_track(camera, track_id, name)

    def global_id_of(self, camera: str, track_id: int) -> int | None:
        return self.gallery.global_id_of(camera, track_id)

    def take_merges(self) -> list[IdentityMerge]:
        return self.gallery.take_merges()

    @property
    def store_stats(self) -> IdentityStoreStats | None:
        return self.gallery.store_stats

    async def start(self) -> None:
        """After `bind` (the saved decisions restored): a shared gallery starts syncing."""
        await self.gallery.start()

    async def close(self) -> None:
        """Save what was learned since the last decision, then close the gallery."""
        await self.save()
        await self.gallery.close()

    # -- keeping ------------------------------------------------------------------------------

    def restore(self, embedding_size: int, model: str) -> None:
        """Take the saved calibration and decisions; CorruptDecisionStore if the file is unreadable."""
        if self.store is None:
            return
        saved = self.store.read()
        if saved is None:
            log.info("identity calibration store %s does not exist yet: learning from scratch",
                     self.store.path)
            self._restored = True
            return
        if (saved.model, saved.embedding_size) != (model, embedding_size):
            log.warning(
                "identity calibration store %s was learned with ReID model '%s' (%d-d), the "
                "service runs '%s' (%d-d): not restored; it is replaced at the next save",
                self.store.path, saved.model, saved.embedding_size, model, embedding_size,
            )
            self._restored = True
            return
        try:
            self.gallery.calibration.restore(saved.calibration, embedding_size)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise self.store._corrupt(f"calibration: {type(exc).__name__}: {exc}") from None
        self.gallery.confirmed |= saved.confirmed
        for a, b in saved.kept_apart:
            self.gallery.cannot_link.setdefault(a, set()).add(b)
            self.gallery.cannot_link.setdefault(b, set()).add(a)
        log.info(
            "identity calibration store %s: %d camera pairs, %d confirmed identities, %d kept apart",
            self.store.path, len(saved.calibration.get("pairs", {})), len(saved.confirmed),
            len(saved.kept_apart),
        )
        self._restored = True

    def decisions(self) -> SavedDecisions | None:
        """What would be saved now (None before the ReID model is bound)."""
        gallery = self.gallery
        if gallery.embedding_size is None or gallery.model is None:
            return None
        return SavedDecisions(
            model=gallery.model,
            embedding_size=gallery.embedding_size,
            calibration=gallery.calibration.to_dict(),
            confirmed=frozenset(gallery.confirmed),
            kept_apart=frozenset(
                _pair(a, b) for a, others in gallery.cannot_link.items() for b in others
            ),
        )

    async def save(self) -> bool:
        """Write the store (off the event loop); False, logged, when it could not be written: the
        decisions stand until the service stops, and the next save tries again."""
        if self.store is None or not self._restored:
            return True
        async with self._save_lock:
            decisions = self.decisions()  # taken on the loop: the gallery does not move meanwhile
            if decisions is None:
                return True
            try:
                await asyncio.to_thread(self.store.write, decisions)
            except OSError as exc:
                if self.saved:
                    log.error("identity decisions not saved to %s: %s; they last until the "
                              "service stops unless a later save succeeds",
                              self.store.path, exc.strerror or exc)
                self.saved = False
                return False
            if not self.saved:
                log.info("identity decisions saved to %s again", self.store.path)
            self.saved = True
            return True

    # -- the operator's side ------------------------------------------------------------------

    def identities(self, camera: str | None = None) -> list[Identity]:
        """Every identity held (those with a track on `camera`), newest first."""
        found = [
            identity for identity in self.gallery.identities()
            if identity.global_id >= 0  # a track being matched right now has no id yet
            and (camera is None or any(member.camera == camera for member in identity.members))
        ]
        return sorted(found, key=lambda identity: identity.global_id, reverse=True)

    def pairs(self) -> list[dict[str, Any]]:
        """Per camera pair: its threshold, where it came from, negatives, confirmed links, transits."""
        return self.gallery.calibration.summary()

    async def confirm(self, global_id: int) -> Identity:
        identity = await self.gallery.confirm(global_id)
        await self.save()
        return identity

    async def reject(self, global_id: int, camera: str, track_id: int) -> tuple[Identity, Identity]:
        """The track is somebody else: (the identity without it, the track's new identity)."""
        return await self.split(global_id, [(camera, track_id)])

    async def merge(self, global_ids: list[int]) -> Identity:
        distinct = list(dict.fromkeys(global_ids))
        if len(distinct) < 2:
            raise NothingToChange(f"merging identity {distinct[0] if distinct else '(none)'} with "
                                  "itself changes nothing: name two identities or more")
        identity = await self.gallery.merge(distinct)
        await self.save()
        return identity

    async def split(
        self, global_id: int, tracks: list[tuple[str, int]]
    ) -> tuple[Identity, Identity]:
        kept, split = await self.gallery.split(global_id, list(dict.fromkeys(tracks)))
        await self.save()
        return kept, split
