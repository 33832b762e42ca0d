"""The identities stage, after tracking: faces linked to tracks, embeddings per track, identities.

Per frame of a camera: find faces (whole frame or person regions) and link each to the person
track containing it; then embed only what is due (a track just confirmed, a clearly better view,
or the refresh interval passed), every crop of the frame at once, so the requests of all cameras
meet in Triton's dynamic batcher. Track embeddings are matched against enrolled faces (name) and
the cross-camera gallery (global id); changes become `identity` events and track annotations.

The work is split: `FaceFinder` (faces.py) searches and links faces, `EmbeddingScheduler`
(scheduling.py) decides what is due and makes the requests, `IdentityResolver` (resolver.py)
matches embeddings and builds events; this stage holds each camera's track state and runs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path

from streamer.config import CameraConfig, StreamerConfig
from streamer.core.events import Event, IdentityMergeEvent, TrackEvent
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import FrameStage, TrackBook
from streamer.core.stats import PartHealth, PartState, StatsKind
from streamer.identities.backends import build_gallery
from streamer.identities.enrolment import FaceStore, store_path
from streamer.identities.faces import FACE_TRACK_KEY, FaceFinder
from streamer.identities.gallery import IdentityGallery
from streamer.identities.resolver import IdentityResolver, with_identity_columns
from streamer.identities.scheduling import Embedded, EmbeddingScheduler
from streamer.identities.stats import IdentityStats
from streamer.identities.track_embeddings import TrackIdentity, track_ids
from streamer.inference.client import InferenceError, TritonModel
from streamer.inference.faces import FaceDetector, FaceEmbedder
from streamer.inference.reid import PersonEmbedder
from streamer.inference.scrfd import ScrfdSettings

__all__ = [
    "FACE_TRACK_KEY",
    "IdentityStage",
    "IdentityStats",
    "resolve_store_path",
]

log = logging.getLogger(__name__)


def resolve_store_path(config: StreamerConfig) -> Path:
    """The faces store this configuration uses (the same rule as `streamer faces`)."""
    return store_path(config)


def log_store(store: FaceStore) -> None:
    """Say which store the service reads: enrolling into another file is the usual mistake."""
    if not store.path.exists():
        log.info("faces store %s does not exist yet: nobody is enrolled", store.path)
        return
    log.info("faces store %s: %d people, %d images", store.path, store.people, len(store.names))


class IdentityStage(FrameStage[CameraConfig]):
    """Faces, ReID and identities; `start` refuses incompatible models."""

    name = "identities"
    needs_image = True  # faces and people are cut out of the full-size picture

    def __init__(
        self,
        config: StreamerConfig,
        *,
        gallery: IdentityGallery | None = None,
        face_store: FaceStore | None = None,
    ) -> None:
        self.config = config
        self.faces = config.faces
        self.reid = config.reid
        self.settings = config.identities
        self.stats = IdentityStats()
        self.health = PartHealth()  # the faces store
        self.finder = FaceFinder(self.faces, self.stats)
        self.scheduler = EmbeddingScheduler(self.faces, self.reid, self.settings, self.stats)
        # A gallery given is shared with other components and closed by its owner (the service);
        # one built here is this stage's to close.
        self._owns_gallery = gallery is None
        self.resolver = IdentityResolver(
            self.faces,
            self.settings,
            gallery if gallery is not None else build_gallery(self.settings.gallery),
            face_store,
            self.stats,
        )
        self.models = self._needed_models()
        self._tracks: dict[str, dict[int, TrackIdentity]] = {}
        self._frames_seen: dict[str, int] = {}

    def registered_stats(self) -> dict[StatsKind, object]:
        registered: dict[StatsKind, object] = {StatsKind.STAGE: self.stats, StatsKind.PART: self.health}
        if self.reid.enabled and self.gallery.store_stats is not None:
            registered[StatsKind.IDENTITY_STORE] = self.gallery.store_stats
        return registered

    @property
    def gallery(self) -> IdentityGallery:
        return self.resolver.gallery

    @property
    def face_store(self) -> FaceStore | None:
        return self.resolver.face_store

    @property
    def face_detector(self) -> FaceDetector | None:
        return self.finder.detector

    @property
    def face_embedder(self) -> FaceEmbedder | None:
        return self.scheduler.face_embedder

    @property
    def person_embedder(self) -> PersonEmbedder | None:
        return self.scheduler.person_embedder

    def _needed_models(self) -> list[str]:
        models: list[str] = []
        if self.faces.enabled:
            models += [self.faces.detector_model, self.faces.embedder_model]
        if self.reid.enabled:
            models.append(self.reid.model)
        return models

    async def start(self, models: Mapping[str, TritonModel]) -> None:
        """Take input sizes and embedding sizes from the served models; refuse mismatches."""
        unknown = self.finder.unknown_cameras({c.name for c in self.config.cameras})
        if unknown:
            raise ValueError(f"faces.camera_modes: unknown cameras {', '.join(sorted(unknown))}")
        if self.faces.enabled:
            self._start_faces(models)
        if self.reid.enabled:
            await self._start_reid(models)

    def _start_faces(self, models: Mapping[str, TritonModel]) -> None:
        if self.resolver.face_store is None:
            # Optional for the service: an unreadable store is reported and faces go unnamed
            # until a readable file replaces it; the cameras never stop for it.
            self.resolver.face_store = FaceStore(resolve_store_path(self.config), unreadable_ok=True)
        store = self.resolver.face_store
        if store.problem is not None:
            self.health.set(PartState.UNAVAILABLE, f"faces store: {store.problem}")
            log.error("%s; faces are found but not named until it is readable", store.problem)
        else:
            log_store(store)
        detector = models[self.faces.detector_model]
        embedder = models[self.faces.embedder_model]
        assert detector.spec is not None and embedder.spec is not None, "models not started"
        face_detector = FaceDetector(
            detector,
            ScrfdSettings(
                self.faces.score_threshold, self.faces.nms_iou_threshold, self.faces.max_faces
            ),
        )
        self.finder.detector = face_detector
        face_detector.configure(detector.spec)
        face_embedder = FaceEmbedder(embedder)
        self.scheduler.face_embedder = face_embedder
        face_embedder.configure(embedder.spec)
        self.resolver.face_store.check_size(face_embedder.embedding_size, embedder.name)

    async def _start_reid(self, models: Mapping[str, TritonModel]) -> None:
        model = models[self.reid.model]
        assert model.spec is not None, "models not started"
        person_embedder = PersonEmbedder(model)
        self.scheduler.person_embedder = person_embedder
        person_embedder.configure(model.spec)
        await self.gallery.bind(person_embedder.embedding_size, model.name)
        await self.gallery.start()

    async def stop(self) -> None:
        """Close the gallery this stage built (a shared store's syncing stops)."""
        if self.reid.enabled and self._owns_gallery:
            await self.gallery.close()

    def forget_camera(self, camera: str) -> None:
        self._tracks.pop(camera, None)
        self._frames_seen.pop(camera, None)

    async def process(self, frame: Frame, result: FrameResult, tracker: TrackBook) -> None:
        store = self.resolver.face_store
        if self.health.state != PartState.OK and store is not None and store.problem is None:
            self.health.set(PartState.OK)
            log.info("faces store %s is readable again: %d people", store.path, store.people)
        identities = self._tracks.setdefault(frame.camera, {})
        await self._forget_ended(frame.camera, result.events, identities)
        ids = track_ids(result.tracks)
        for track_id in ids.tolist():
            identities.setdefault(track_id, TrackIdentity())
        confirmed = self.scheduler.confirmed(ids, tracker)
        seen = self._frames_seen.get(frame.camera, 0)
        self._frames_seen[frame.camera] = seen + 1
        search_faces = seen % self.faces.every_n_frames == 0
        updated = await self._embed(frame, result, confirmed, identities, search_faces)
        # ReID first: a face event of the same frame then carries the track's global id.
        for embedded in updated:
            await self._apply(frame, result, tracker, identities, embedded)
        if self.person_embedder is not None:
            self._announce_merges(frame, result)
            self._follow_gallery(frame, result, tracker, identities)
        result.tracks = with_identity_columns(result.tracks, identities)

    def _announce_merges(self, frame: Frame, result: FrameResult) -> None:
        """Global ids found to be one person, published with this frame (by one camera of the
        instance that saw the person, when there is one)."""
        for merge in self.gallery.take_merges():
            camera = next((c for c in merge.cameras if c in self._tracks), frame.camera)
            result.events.append(
                IdentityMergeEvent(
                    camera=camera,
                    frame_index=frame.index,
                    capture_ts=frame.capture_ts,
                    global_id=merge.survivor,
                    merged_id=merge.absorbed,
                    reason=merge.reason,
                    cameras=merge.cameras,
                )
            )

    def _follow_gallery(
        self, frame: Frame, result: FrameResult, tracker: TrackBook,
        identities: dict[int, TrackIdentity],
    ) -> None:
        """Tracks whose global id changed since it was assigned (merged with another instance's
        person, an operator's decision) carry the new one from this frame on."""
        for track_id, identity in identities.items():
            if identity.global_id is None:
                continue
            now = self.gallery.global_id_of(frame.camera, track_id)
            if now is None or now == identity.global_id:
                continue
            identity.global_id = now
            update = tracker.annotate(
                frame, track_id, name=identity.name, similarity=identity.similarity, global_id=now
            )
            if update is not None:
                result.events.append(update)

    async def _forget_ended(
        self, camera: str, events: list[Event], identities: dict[int, TrackIdentity]
    ) -> None:
        for event in events:
            if isinstance(event, TrackEvent) and event.ended:
                track_id = event.track_id
                identities.pop(track_id, None)
                if self.person_embedder is not None:
                    await self.resolver.track_ended(camera, track_id)

    async def _embed(
        self,
        frame: Frame,
        result: FrameResult,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
        search_faces: bool,
    ) -> list[Embedded]:
        """The frame's new embeddings, ReID ones first; failed requests are counted and skipped."""
        reid_jobs = self.scheduler.reid_jobs(frame, result.tracks, confirmed, identities)
        # ReID requests are in flight while faces are searched: they do not depend on faces.
        reid_running = asyncio.gather(*reid_jobs, return_exceptions=True)
        face_jobs: list[Awaitable[Embedded]] = []
        try:
            if search_faces:
                face_jobs = await self._face_jobs(frame, result, confirmed, identities)
            face_outcomes = await asyncio.gather(*face_jobs, return_exceptions=True)
        finally:
            reid_outcomes = await reid_running
        return self._succeeded(frame.camera, [*reid_outcomes, *face_outcomes])

    async def _face_jobs(
        self,
        frame: Frame,
        result: FrameResult,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
    ) -> list[Awaitable[Embedded]]:
        """Find and link the frame's faces into `result.faces`; the due face embeddings."""
        faces = await self.finder.find(frame, result.tracks, confirmed, identities)
        if faces is None:
            return []
        linked = self.finder.link(faces, result.tracks, confirmed)
        jobs = self.scheduler.face_jobs(frame, linked, identities)
        result.faces = linked.faces
        return jobs

    def _succeeded(
        self, camera: str, outcomes: Sequence[Embedded | BaseException]
    ) -> list[Embedded]:
        updated: list[Embedded] = []
        for outcome in outcomes:
            if isinstance(outcome, InferenceError):
                self.stats.failures += 1
                log.debug("camera %s: embedding skipped: %s", camera, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                updated.append(outcome)
        return updated

    async def _apply(
        self,
        frame: Frame,
        result: FrameResult,
        tracker: TrackBook,
        identities: dict[int, TrackIdentity],
        embedded: Embedded,
    ) -> None:
        """Resolve a new embedding of a live track; report the event and annotate the track."""
        identity = identities.get(embedded.track_id)
        if identity is None:
            return
        event = await self.resolver.resolve(frame, identity, embedded)
        if event is not None:
            result.events.append(event)
        update = tracker.annotate(
            frame,
            embedded.track_id,
            name=identity.name,
            similarity=identity.similarity,
            global_id=identity.global_id,
        )
        if update is not None:
            result.events.append(update)
