"""The in-process peer: what a user could write instead of the pipeline, without Triton.

One PyAV decoding thread per camera (the clip looped) that letterboxes its frames and queues them;
two ONNX Runtime sessions of one thread each, each in its own thread, pulling from that one queue
(whatever is queued, up to `max_batch`, in one run, as Triton's dynamic batcher does; the bench runs
it with `MAX_BATCH` and with 1, and divides by the better); the camera
thread decodes its next frame while its last one is being detected, then decodes the detector's
output and runs the camera's ByteTrack (`CameraTracker`), in frame order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from streamer.benchmarks.ceiling import session
from streamer.benchmarks.cpu import process_cpu_s
from streamer.config import DetectorConfig, TrackerConfig
from streamer.core.frames import Frame
from streamer.core.imaging import letterbox
from streamer.inference.yolox import YOLOX_PAD_VALUE, YoloxDecoder
from streamer.tracking.camera_tracker import CameraTracker

MAX_BATCH = 8
WORKERS = 2
WARMUP_S = 2.0
POLL_S = 0.1


@dataclass
class PeerRun:
    cameras: int
    seconds: float
    frames: int
    fps: float
    cpu_ms_per_frame: float
    mean_batch: float
    max_batch: int = MAX_BATCH


@dataclass
class _Job:
    image: np.ndarray  # letterboxed, HxWx3 uint8
    output: np.ndarray | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _looped_frames(clip: Path, stop: threading.Event) -> Iterator[np.ndarray]:
    while not stop.is_set():
        with av.open(str(clip)) as container:
            for decoded in container.decode(video=0):
                if stop.is_set():
                    return
                yield decoded.to_ndarray(format="bgr24")


class Peer:
    def __init__(
        self, model_path: Path, clip: Path, cameras: int, size: int, max_batch: int = MAX_BATCH
    ) -> None:
        self.clip, self.cameras, self.size, self.max_batch = clip, cameras, size, max_batch
        self.sessions = [session(model_path, 1) for _ in range(WORKERS)]
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.stop = threading.Event()
        self.processed = [0] * cameras
        self.executions = [0] * WORKERS  # per worker: no shared counter between threads
        self.batched_frames = [0] * WORKERS
        self.errors: list[BaseException] = []

    def _infer(self, index: int) -> None:
        runner = self.sessions[index]
        try:
            while not self.stop.is_set():
                try:
                    jobs = [self.jobs.get(timeout=POLL_S)]
                except queue.Empty:
                    continue
                while len(jobs) < self.max_batch:
                    try:
                        jobs.append(self.jobs.get_nowait())
                    except queue.Empty:
                        break
                batch = np.stack([job.image for job in jobs])
                outputs = runner.run(None, {"frames": batch})[0]
                self.executions[index] += 1
                self.batched_frames[index] += len(jobs)
                for job, output in zip(jobs, outputs):
                    job.output = output
                    job.done.set()
        except BaseException as exc:  # reported by run(); a dead worker would hang the cameras
            self.errors.append(exc)
            self.stop.set()

    def _camera(self, camera: int) -> None:
        name = f"cam{camera}"
        tracker = CameraTracker(name, TrackerConfig(), 10.0)
        decoder = YoloxDecoder(self.size, self.size)
        settings = DetectorConfig()
        pending: tuple[Frame, float, _Job] | None = None
        index = 0
        try:
            for image in _looped_frames(self.clip, self.stop):
                boxed = letterbox(image, self.size, self.size, YOLOX_PAD_VALUE)
                frame = Frame(name, index, time.time(), time.monotonic(), image)
                job = _Job(boxed.image)
                index += 1
                if pending is not None and not self._conclude(tracker, decoder, settings, *pending):
                    return
                self.jobs.put(job)
                pending = (frame, boxed.ratio, job)
                if self.stop.is_set():
                    return
        except BaseException as exc:
            self.errors.append(exc)
            self.stop.set()

    def _conclude(
        self,
        tracker: CameraTracker,
        decoder: YoloxDecoder,
        settings: DetectorConfig,
        frame: Frame,
        ratio: float,
        job: _Job,
    ) -> bool:
        while not job.done.wait(POLL_S):
            if self.stop.is_set():
                return False
        assert job.output is not None
        detections = decoder.decode(
            job.output, ratio, class_ids=settings.class_ids,
            score_threshold=settings.score_threshold,
            nms_iou_threshold=settings.nms_iou_threshold,
            max_detections=settings.max_detections,
        )
        tracker.update(frame, detections)
        self.processed[int(frame.camera[3:])] += 1
        return True

    def run(self, seconds: float) -> PeerRun:
        threads = [
            threading.Thread(target=self._infer, args=(i,), daemon=True) for i in range(WORKERS)
        ] + [
            threading.Thread(target=self._camera, args=(c,), daemon=True)
            for c in range(self.cameras)
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(WARMUP_S)
            frames_before, cpu_before = sum(self.processed), process_cpu_s()
            executions_before, batched_before = sum(self.executions), sum(self.batched_frames)
            started = time.perf_counter()
            time.sleep(seconds)
            elapsed = time.perf_counter() - started
            frames = sum(self.processed) - frames_before
            cpu = process_cpu_s() - cpu_before
            executions = sum(self.executions) - executions_before
            batched = sum(self.batched_frames) - batched_before
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
        if self.errors:
            raise RuntimeError(f"in-process peer failed: {self.errors[0]!r}") from self.errors[0]
        return PeerRun(
            cameras=self.cameras,
            seconds=round(elapsed, 1),
            frames=frames,
            fps=round(frames / elapsed, 1),
            cpu_ms_per_frame=round(1000.0 * cpu / frames, 2) if frames else 0.0,
            mean_batch=round(batched / executions, 2) if executions else 0.0,
            max_batch=self.max_batch,
        )


def peer_run(
    model_path: Path, clip: Path, cameras: int, size: int, seconds: float,
    max_batch: int = MAX_BATCH,
) -> PeerRun:
    return Peer(model_path, clip, cameras, size, max_batch).run(seconds)
