"""The identities stage, after tracking: faces linked to tracks, embeddings per track, identities.

Per frame of a camera: find faces (whole frame or person regions) and link each to the person
track containing it; then embed only what is due (a track just confirmed, a clearly better view,
or the refresh interval passed), every crop of the frame at once, so the requests of all cameras
meet in Triton's dynamic batcher. Track embeddings are matched against enrolled faces (name) and
the cross-camera gallery (global id); changes become `identity` events and track annotations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamer.config import FaceMode, StreamerConfig
from streamer.core.assets import PROJECT_ROOT
from streamer.core.detections import Detections
from streamer.core.frames import Frame, FrameResult
from streamer.core.imaging import clip_box, nms
from streamer.core.stages import TrackBook
from streamer.identities.enrolment import FaceStore
from streamer.identities.gallery import IdentityGallery, Sighting, build_gallery
from streamer.identities.quality import NO_TRACK, face_quality, link_faces, person_quality
from streamer.identities.track_embeddings import TrackEmbedding, TrackIdentity
from streamer.inference.client import InferenceError, TritonModel
from streamer.inference.faces import FaceDetector, FaceEmbedder
from streamer.inference.reid import PersonEmbedder
from streamer.inference.scrfd import LANDMARKS_KEY, ScrfdSettings, empty_faces

log = logging.getLogger(__name__)

EmbeddingKind = Literal["face", "reid"]
IDENTITY_EVENT = "identity"
FACE_TRACK_KEY = "track_id"  # faces' Detections.data: the linked track id, or None
QUALITY_DECIMALS = 3


def resolve_store_path(config: StreamerConfig) -> Path:
    path = config.identities.faces_store
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass
class IdentityCounters:
    face_detections: int = 0
    face_embeddings: int = 0
    reid_embeddings: int = 0
    identity_events: int = 0
    failures: int = 0


@dataclass(frozen=True)
class _Embedded:
    track_id: int
    kind: EmbeddingKind
    embedding: np.ndarray
    quality: float


class IdentityStage:
    """FrameStage for faces, ReID and identities; `start` refuses incompatible models."""

    name = "identities"

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
        self.gallery = gallery if gallery is not None else build_gallery(self.settings.gallery)
        self.face_store = face_store
        self.face_detector: FaceDetector | None = None
        self.face_embedder: FaceEmbedder | None = None
        self.person_embedder: PersonEmbedder | None = None
        self.counters = IdentityCounters()
        self.models = self._needed_models()
        self._tracks: dict[str, dict[int, TrackIdentity]] = {}
        self._frames_seen: dict[str, int] = {}

    def _needed_models(self) -> list[str]:
        models: list[str] = []
        if self.faces.enabled:
            models += [self.faces.detector_model, self.faces.embedder_model]
        if self.reid.enabled:
            models.append(self.reid.model)
        return models

    async def start(self, models: dict[str, TritonModel]) -> None:
        """Take input sizes and embedding sizes from the served models; refuse mismatches."""
        unknown = set(self.faces.camera_modes) - {c.name for c in self.config.cameras}
        if unknown:
            raise ValueError(f"faces.camera_modes: unknown cameras {', '.join(sorted(unknown))}")
        if self.faces.enabled:
            if self.face_store is None:
                self.face_store = FaceStore(resolve_store_path(self.config))
            detector = models[self.faces.detector_model]
            embedder = models[self.faces.embedder_model]
            assert detector.spec is not None and embedder.spec is not None, "models not started"
            self.face_detector = FaceDetector(
                detector,
                ScrfdSettings(
                    self.faces.score_threshold, self.faces.nms_iou_threshold, self.faces.max_faces
                ),
            )
            self.face_detector.configure(detector.spec)
            self.face_embedder = FaceEmbedder(embedder)
            self.face_embedder.configure(embedder.spec)
            assert self.face_store is not None
            self.face_store.check_size(self.face_embedder.embedding_size, embedder.name)
        if self.reid.enabled:
            model = models[self.reid.model]
            assert model.spec is not None, "models not started"
            self.person_embedder = PersonEmbedder(model)
            self.person_embedder.configure(model.spec)
            await self.gallery.bind(self.person_embedder.embedding_size, model.name)

    def forget_camera(self, camera: str) -> None:
        self._tracks.pop(camera, None)
        self._frames_seen.pop(camera, None)

    def face_mode(self, camera: str) -> FaceMode:
        if not self.faces.enabled:
            return "off"
        return self.faces.camera_modes.get(camera, self.faces.mode)

    async def process(self, frame: Frame, result: FrameResult, tracker: TrackBook) -> None:
        identities = self._tracks.setdefault(frame.camera, {})
        await self._forget_ended(frame.camera, result.events, identities)
        tracks = result.tracks
        ids = tracks.tracker_id if tracks.tracker_id is not None else np.zeros(0, np.int64)
        confirmed: list[int] = []
        for row, track_id in enumerate(ids.tolist()):
            identities.setdefault(track_id, TrackIdentity())
            if tracker.frames_seen(track_id) >= self.settings.confirm_frames:
                confirmed.append(row)
        seen = self._frames_seen.get(frame.camera, 0)
        self._frames_seen[frame.camera] = seen + 1
        reid_jobs: list[Awaitable[_Embedded | None]] = []
        if self.person_embedder is not None:
            self._schedule_reid(frame, tracks, confirmed, identities, reid_jobs)
        # ReID requests are in flight while faces are searched: they do not depend on faces.
        reid_running = asyncio.gather(*reid_jobs, return_exceptions=True)
        face_jobs: list[Awaitable[_Embedded | None]] = []
        try:
            if seen % self.faces.every_n_frames == 0:
                faces = await self._find_faces(frame, tracks, confirmed, identities)
                if faces is not None:
                    result.faces = self._link_and_schedule(
                        frame, faces, tracks, confirmed, identities, face_jobs
                    )
            face_outcomes = await asyncio.gather(*face_jobs, return_exceptions=True)
        finally:
            reid_outcomes = await reid_running
        updated: list[_Embedded] = []
        for outcome in [*reid_outcomes, *face_outcomes]:
            if isinstance(outcome, InferenceError):
                self.counters.failures += 1
                log.debug("camera %s: embedding skipped: %s", frame.camera, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome is not None:
                updated.append(outcome)
        # ReID first: a face event of the same frame then carries the track's global id.
        for embedded in updated:
            await self._apply(frame, result, tracker, identities, embedded)
        result.tracks = self._with_identity_columns(tracks, identities)

    async def _forget_ended(
        self, camera: str, events: list[dict[str, Any]], identities: dict[int, TrackIdentity]
    ) -> None:
        for event in events:
            if event.get("type") == "end" and event.get("track_id") is not None:
                track_id = int(event["track_id"])
                identities.pop(track_id, None)
                if self.person_embedder is not None:
                    await self.gallery.track_ended(camera, track_id)

    async def _find_faces(
        self,
        frame: Frame,
        tracks: Detections,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
    ) -> Detections | None:
        mode = self.face_mode(frame.camera)
        if mode == "off" or self.face_detector is None:
            return None
        if mode == "frame":
            found = await self.face_detector.detect(frame.image)
            self.counters.face_detections += 1
            return found.faces
        assert tracks.tracker_id is not None or not confirmed
        ids = tracks.tracker_id if tracks.tracker_id is not None else np.zeros(0, np.int64)
        chosen = sorted(confirmed, key=lambda row: identities[int(ids[row])].last_region_search)
        searches = []
        for row in chosen[: self.faces.max_regions_per_frame]:
            identities[int(ids[row])].last_region_search = frame.index
            bounds = self._head_region(tracks.xyxy[row], frame.width, frame.height)
            if bounds is None:
                continue
            left, top, right, bottom = bounds
            searches.append(
                self.face_detector.detect(frame.image[top:bottom, left:right], (left, top))
            )
        found_parts = await asyncio.gather(*searches)
        self.counters.face_detections += len(found_parts)
        faces = Detections.merge([part.faces for part in found_parts], empty=empty_faces())
        kept = nms(faces.xyxy, faces.confidence, self.faces.nms_iou_threshold, self.faces.max_faces)
        return faces[kept]

    def _head_region(
        self, box: np.ndarray, width: int, height: int
    ) -> tuple[int, int, int, int] | None:
        x0, y0, x1, y1 = (float(v) for v in box)
        grow = self.faces.region_margin * (x1 - x0)
        region = np.array(
            [x0 - grow, y0 - grow, x1 + grow, y0 + self.faces.region_height_fraction * (y1 - y0)]
        )
        return clip_box(region, width, height)

    def _link_and_schedule(
        self,
        frame: Frame,
        faces: Detections,
        tracks: Detections,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
        jobs: list[Awaitable[_Embedded | None]],
    ) -> Detections:
        """Faces with their track link; due face embeddings of confirmed tracks go to `jobs`."""
        links = link_faces(faces, tracks, self.faces.head_fraction)
        ids = tracks.tracker_id if tracks.tracker_id is not None else np.zeros(0, np.int64)
        linked_ids = np.array(
            [int(ids[row]) if row != NO_TRACK else None for row in links.tolist()], dtype=object
        )
        embedder = self.face_embedder
        if embedder is not None:
            confirmed_rows = set(confirmed)
            for face_row, track_row in enumerate(links.tolist()):
                if track_row == NO_TRACK or track_row not in confirmed_rows:
                    continue
                landmarks = faces.data[LANDMARKS_KEY][face_row]
                aligned = embedder.align(frame.image, landmarks)
                quality = face_quality(
                    float(faces.confidence[face_row]),
                    faces.xyxy[face_row],
                    landmarks,
                    aligned,
                    self.faces,
                )
                track_id = int(ids[track_row])
                history = identities[track_id].face
                if history.due(quality, self.faces.min_quality, frame.capture_ts, self.settings):
                    jobs.append(self._embed(track_id, "face", embedder, aligned, quality))
        return Detections(
            xyxy=faces.xyxy,
            confidence=faces.confidence,
            class_id=faces.class_id,
            data={**faces.data, FACE_TRACK_KEY: linked_ids},
        )

    def _schedule_reid(
        self,
        frame: Frame,
        tracks: Detections,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
        jobs: list[Awaitable[_Embedded | None]],
    ) -> None:
        embedder = self.person_embedder
        assert embedder is not None and (tracks.tracker_id is not None or not confirmed)
        for row in confirmed:
            track_id = int(tracks.tracker_id[row])  # type: ignore[index]
            quality = person_quality(tracks, row, frame.width, frame.height, self.reid)
            history = identities[track_id].reid
            if not history.due(quality, self.reid.min_quality, frame.capture_ts, self.settings):
                continue
            crop = embedder.crop(frame.image, tracks.xyxy[row])
            if crop is not None:
                jobs.append(self._embed(track_id, "reid", embedder, crop, quality))

    async def _embed(
        self,
        track_id: int,
        kind: EmbeddingKind,
        embedder: FaceEmbedder | PersonEmbedder,
        crop: np.ndarray,
        quality: float,
    ) -> _Embedded:
        embedding, _timing = await embedder.embed(crop)
        if kind == "face":
            self.counters.face_embeddings += 1
        else:
            self.counters.reid_embeddings += 1
        return _Embedded(track_id, kind, embedding, quality)

    async def _apply(
        self,
        frame: Frame,
        result: FrameResult,
        tracker: TrackBook,
        identities: dict[int, TrackIdentity],
        embedded: _Embedded,
    ) -> None:
        """Fold a new embedding into its track, match it, and report what changed."""
        identity = identities.get(embedded.track_id)
        if identity is None:
            return
        history: TrackEmbedding = identity.face if embedded.kind == "face" else identity.reid
        embedding = history.add(embedded.embedding, embedded.quality, frame.capture_ts)
        identity_changed = False
        if embedded.kind == "face":
            assert self.face_store is not None
            self.face_store.refresh_if_changed()
            match = self.face_store.match(embedding, self.faces.match_threshold)
            name = match.name if match else None
            similarity = match.similarity if match else None
            identity_changed = name != identity.name
            identity.name, identity.similarity = name, similarity
        else:
            found = await self.gallery.assign(
                Sighting(frame.camera, embedded.track_id, embedding, frame.capture_ts)
            )
            identity_changed = found.global_id != identity.global_id
            identity.global_id = found.global_id
        if identity_changed or history.changed_enough(self.settings.min_embedding_change):
            history.published = embedding
            result.events.append(self._identity_event(frame, embedded, identity, history))
            self.counters.identity_events += 1
        update = tracker.annotate(
            frame,
            embedded.track_id,
            name=identity.name,
            similarity=identity.similarity,
            global_id=identity.global_id,
        )
        if update is not None:
            result.events.append(update)

    def _identity_event(
        self,
        frame: Frame,
        embedded: _Embedded,
        identity: TrackIdentity,
        history: TrackEmbedding,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": IDENTITY_EVENT,
            "camera": frame.camera,
            "track_id": embedded.track_id,
            "frame_index": frame.index,
            "capture_ts": frame.capture_ts,
            "kind": embedded.kind,
            "embedding": history.published,
            "quality": round(history.best_quality, QUALITY_DECIMALS),
            "samples": history.samples,
            "global_id": identity.global_id,
        }
        if embedded.kind == "face" and identity.name is not None:
            event["name"] = identity.name
            event["similarity"] = identity.similarity
        return event

    @staticmethod
    def _with_identity_columns(
        tracks: Detections, identities: dict[int, TrackIdentity]
    ) -> Detections:
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

