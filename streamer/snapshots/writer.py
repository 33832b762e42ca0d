"""The writer thread: draws, encodes and stores pictures and indexes events, off the event loop.

The event loop only hands jobs over (`submit`, never blocking): at most `queue_size` pictures wait;
beyond that an event goes without picture and the drop is counted. Events themselves wait in a
larger bound (`INDEX_BACKLOG` per picture slot) so the index keeps up when pictures are dropped.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from streamer.config import SnapshotsConfig
from streamer.snapshots.archive import Picture, SnapshotArchive
from streamer.snapshots.stats import SnapshotStats
from streamer.snapshots.trouble import REPORT_INTERVAL_S

log = logging.getLogger(__name__)

INDEX_BACKLOG = 16  # events waiting to be indexed, per picture slot
SPACE_PROBE_S = 1.0  # while pictures are paused for space, how often free space is looked at
SUBJECT_BGR = (0, 0, 255)
OTHER_BGR = (0, 210, 255)  # amber: visible on grey pavement and green grass
TEXT_BGR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True, slots=True)
class PictureJob:
    """What to draw: a crop, and a frame (scaled by `scale`) with the boxes of that moment."""

    snapshot_id: str
    camera: str
    created_ts: float
    crop: np.ndarray
    frame: np.ndarray
    scale: float  # frame pixels per source pixel (boxes are in source pixels)
    boxes: np.ndarray  # (N, 4) xyxy
    track_ids: np.ndarray  # (N,)
    subject: int  # the event's track, drawn in red
    caption: str


@dataclass(frozen=True, slots=True)
class Job:
    payload: dict[str, Any]  # the event's payload with its `id` (and `snapshot_id` when pictured)
    picture: PictureJob | None


_STOP = object()


def annotate(job: PictureJob, max_width: int) -> np.ndarray:
    """A copy of the frame, at most `max_width` wide, with every box, track ids and the caption."""
    height, width = job.frame.shape[:2]
    extra = min(1.0, max_width / width)
    canvas = (
        cv2.resize(job.frame, (round(width * extra), round(height * extra)), interpolation=cv2.INTER_AREA)
        if extra < 1.0
        else job.frame.copy()
    )
    scale = job.scale * extra
    thickness = max(1, round(canvas.shape[1] / 400))
    font_scale = max(0.4, canvas.shape[1] / 1600)
    for box, track_id in zip(job.boxes.tolist(), job.track_ids.tolist(), strict=True):
        x1, y1, x2, y2 = (round(v * scale) for v in box)
        subject = int(track_id) == job.subject
        colour = SUBJECT_BGR if subject else OTHER_BGR
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness * (2 if subject else 1))
        cv2.putText(canvas, f"#{int(track_id)}", (x1, max(12, y1 - 4)), FONT, font_scale, colour,
                    thickness, cv2.LINE_AA)
    (text_width, text_height), baseline = cv2.getTextSize(job.caption, FONT, font_scale, thickness)
    cv2.rectangle(canvas, (0, 0), (text_width + 8, text_height + baseline + 8), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, job.caption, (4, text_height + 4), FONT, font_scale, TEXT_BGR, thickness,
                cv2.LINE_AA)
    return canvas


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()


class SnapshotWriter:
    """Owns the writer thread: `start()` opens the archive, `submit()` never blocks, `stop()` drains."""

    def __init__(self, archive: SnapshotArchive, settings: SnapshotsConfig, stats: SnapshotStats):
        self.archive = archive
        self.settings = settings
        self.stats = stats
        self._pictures = threading.BoundedSemaphore(settings.queue_size)
        self._jobs: queue.Queue[Job | object] = queue.Queue(settings.queue_size * INDEX_BACKLOG)
        self._thread: threading.Thread | None = None

    def admits_picture(self) -> bool:
        """Whether a picture is worth making now (pictures are not paused for the disk)."""
        return self.archive.pause.admits()

    def start(self) -> None:
        """Open the archive (folder, index) and start the thread; blocking: call it off the loop."""
        self.archive.open()
        self.archive.prune()
        self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self._thread.start()

    def submit(self, payload: dict[str, Any], picture: PictureJob | None) -> bool:
        """Queue an event (and its picture); False when the picture was dropped (counted)."""
        pictured = picture is not None and self._pictures.acquire(blocking=False)
        if picture is not None and not pictured:
            self.stats.dropped_queue_full += 1
            picture = None
            payload = {key: value for key, value in payload.items() if key != "snapshot_id"}
        try:
            self._jobs.put_nowait(Job(payload, picture))
        except queue.Full:
            self.stats.add("index_dropped")
            if pictured:
                self._pictures.release()
                self.stats.dropped_queue_full += 1
            return False
        self.stats.queue_depth = self._jobs.qsize()
        return pictured

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (bounded by `timeout_s`), then close the index; blocking."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        deadline = time.monotonic() + timeout_s
        while thread.is_alive():
            try:
                self._jobs.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("snapshot writer still busy after %.0f s; leaving it", timeout_s)
            return
        self.archive.close()

    def _run(self) -> None:
        next_prune = time.monotonic() + self.settings.prune_interval_s
        next_probe = time.monotonic() + SPACE_PROBE_S
        failures_logged_at = -float("inf")
        while True:
            wake = min(next_prune, next_probe) if self.archive.paused else next_prune
            try:
                job = self._jobs.get(timeout=max(0.01, wake - time.monotonic()))
            except queue.Empty:
                job = None
            if job is _STOP:
                return
            try:
                if isinstance(job, Job):
                    self._handle(job)
                now = time.monotonic()
                if now >= next_prune:
                    next_prune = now + self.settings.prune_interval_s
                    self.archive.prune()
                elif self.archive.paused and now >= next_probe:
                    self.archive.check_floor()  # pictures resume as soon as space is back
                if now >= next_probe:
                    next_probe = now + SPACE_PROBE_S
            except (OSError, sqlite3.Error) as exc:  # retention or the floor probe: the disk
                self.archive.disk_failed(exc)
            except Exception:
                # A bug, or a disk error the archive did not expect: counted, and told once per
                # interval with its traceback, never once per event.
                self.stats.write_errors += 1
                if time.monotonic() - failures_logged_at >= REPORT_INTERVAL_S:
                    failures_logged_at = time.monotonic()
                    log.exception(
                        "snapshot writer: a job failed (%d failures so far; the next are "
                        "told at most every %.0f s)", self.stats.write_errors, REPORT_INTERVAL_S,
                    )
            self.stats.queue_depth = self._jobs.qsize()

    def _handle(self, job: Job) -> None:
        payload = job.payload
        if job.picture is not None:
            try:
                stored = self._store(job.picture)
            finally:
                self._pictures.release()
            if not stored:
                payload = {key: value for key, value in payload.items() if key != "snapshot_id"}
        self.archive.index([payload])

    def _store(self, job: PictureJob) -> bool:
        crop = encode_jpeg(job.crop, self.settings.jpeg_quality)
        frame = encode_jpeg(annotate(job, self.settings.frame_max_width), self.settings.jpeg_quality)
        return self.archive.store(Picture(job.snapshot_id, job.camera, job.created_ts, crop, frame))
