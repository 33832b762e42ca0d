"""Finding faces in a frame and linking each to the person track whose head it is.

Per camera, faces are searched on the whole frame, or only in the head regions of confirmed
tracks (those searched longest ago first, a few per frame), whose results are merged and
de-duplicated by NMS. A found face links to at most one track; faces of confirmed tracks are the
ones worth an embedding.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from streamer.config import FaceMode, FacesConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.core.imaging import clip_box, nms
from streamer.identities.quality import NO_TRACK, link_faces
from streamer.identities.stats import IdentityStats
from streamer.identities.track_embeddings import TrackIdentity, track_ids
from streamer.inference.faces import FaceDetector
from streamer.inference.scrfd import empty_faces

FACE_TRACK_KEY = "track_id"  # faces' Detections.data: the linked track id, or None


@dataclass(frozen=True)
class LinkedFaces:
    """Faces with the FACE_TRACK_KEY column, and (face row, track id) of confirmed tracks' faces."""

    faces: Detections
    of_confirmed: list[tuple[int, int]]


class FaceFinder:
    """Face search policy per camera and face-to-track linking; `detector` is set at start."""

    def __init__(self, settings: FacesConfig, stats: IdentityStats) -> None:
        self.settings = settings
        self.stats = stats
        self.detector: FaceDetector | None = None

    def unknown_cameras(self, cameras: set[str]) -> set[str]:
        """Cameras given a face mode that are not configured."""
        return set(self.settings.camera_modes) - cameras

    def mode(self, camera: str) -> FaceMode:
        if not self.settings.enabled:
            return "off"
        return self.settings.camera_modes.get(camera, self.settings.mode)

    async def find(
        self,
        frame: Frame,
        tracks: Detections,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
    ) -> Detections | None:
        """The frame's faces, or None where the camera's faces are not searched."""
        mode = self.mode(frame.camera)
        if mode == "off" or self.detector is None:
            return None
        if mode == "frame":
            found = await self.detector.detect(frame.image)
            self.stats.face_detections += 1
            return found.faces
        return await self._search_regions(self.detector, frame, tracks, confirmed, identities)

    async def _search_regions(
        self,
        detector: FaceDetector,
        frame: Frame,
        tracks: Detections,
        confirmed: list[int],
        identities: dict[int, TrackIdentity],
    ) -> Detections:
        assert tracks.tracker_id is not None or not confirmed
        ids = track_ids(tracks)
        chosen = sorted(confirmed, key=lambda row: identities[int(ids[row])].last_region_search)
        searches = []
        for row in chosen[: self.settings.max_regions_per_frame]:
            identities[int(ids[row])].last_region_search = frame.index
            bounds = self._head_region(tracks.xyxy[row], frame.width, frame.height)
            if bounds is None:
                continue
            left, top, right, bottom = bounds
            searches.append(detector.detect(frame.image[top:bottom, left:right], (left, top)))
        found_parts = await asyncio.gather(*searches)
        self.stats.face_detections += len(found_parts)
        faces = Detections.merge([part.faces for part in found_parts], empty=empty_faces())
        kept = nms(
            faces.xyxy, faces.confidence, self.settings.nms_iou_threshold, self.settings.max_faces
        )
        return faces[kept]

    def _head_region(
        self, box: np.ndarray, width: int, height: int
    ) -> tuple[int, int, int, int] | None:
        x0, y0, x1, y1 = (float(v) for v in box)
        grow = self.settings.region_margin * (x1 - x0)
        region = np.array(
            [x0 - grow, y0 - grow, x1 + grow, y0 + self.settings.region_height_fraction * (y1 - y0)]
        )
        return clip_box(region, width, height)

    def link(self, faces: Detections, tracks: Detections, confirmed: list[int]) -> LinkedFaces:
        """Each face with the id of the track it belongs to (None if none)."""
        links = link_faces(faces, tracks, self.settings.head_fraction).tolist()
        ids = track_ids(tracks)
        linked_ids = np.array(
            [int(ids[row]) if row != NO_TRACK else None for row in links], dtype=object
        )
        confirmed_rows = set(confirmed)
        of_confirmed = [
            (face_row, int(ids[track_row]))
            for face_row, track_row in enumerate(links)
            if track_row != NO_TRACK and track_row in confirmed_rows
        ]
        linked = Detections(
            xyxy=faces.xyxy,
            confidence=faces.confidence,
            class_id=faces.class_id,
            data={**faces.data, FACE_TRACK_KEY: linked_ids},
        )
        return LinkedFaces(linked, of_confirmed)
