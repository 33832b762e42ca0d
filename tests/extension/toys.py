"""A toy of each extension, written exactly as docs/architecture.md's recipes say.

* a model: `mean_colour` (uint8 32x32 crops -> mean B, G, R), a folder in a model repository;
* a source type: `opencv://PATH` plays a file through OpenCV instead of PyAV;
* a detector family: `whole_frame` (one box over the frame, scored by its brightness on Triton);
* a stage: `colours` (each track's mean colour, from the toy model, as track data);
* an event type: `colour_changed`, with its own JSON Schema, published by every sink;
* a sink: keeps every frame result and event it is handed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from streamer.config import CameraConfig, StreamerConfig
from streamer.core.detections import Detections
from streamer.core.events import BaseEvent, CameraStatusEvent, Event, new_id
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import Detector, FrameSource, FrameStage, Sink, SourceHooks, TrackBook
from streamer.core.stats import CameraState, StatsKind
from streamer.inference.client import TritonModel

TOY_MODEL = "mean_colour"
CROP = 32
COLOUR_STEP = 8  # a track's colour must move this much (any channel) for a new event


# -- a model -----------------------------------------------------------------------------------

TOY_MODEL_CONFIG = f"""name: "{TOY_MODEL}"
backend: "onnxruntime"
max_batch_size: 16
input [ {{ name: "crops" data_type: TYPE_UINT8 dims: [ {CROP}, {CROP}, 3 ] }} ]
output [ {{ name: "colour" data_type: TYPE_FP32 dims: [ 3 ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 }} ]
"""


def add_toy_model(repository: Path) -> None:
    """The recipe's two files: `config.pbtxt` and `1/model.onnx` under the model's folder."""
    crops = helper.make_tensor_value_info("crops", TensorProto.UINT8, ["batch", CROP, CROP, 3])
    colour = helper.make_tensor_value_info("colour", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["crops"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["pixels"], ["colour"], axes=[1, 2], keepdims=0),
        ],
        TOY_MODEL,
        [crops],
        [colour],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder = repository / TOY_MODEL
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(TOY_MODEL_CONFIG)
    onnx.save(model, folder / "1" / "model.onnx")


async def mean_colour(model: TritonModel, image: np.ndarray, camera: str = "") -> np.ndarray:
    crop = cv2.resize(image, (CROP, CROP), interpolation=cv2.INTER_AREA)
    outputs, _timing = await model.infer({"crops": crop}, camera)
    return np.asarray(outputs["colour"], np.float32).reshape(3)


# -- a source type -----------------------------------------------------------------------------


class OpenCvSource(FrameSource[CameraConfig]):
    """`opencv:///path/clip.mp4`: frames read by OpenCV in the camera's own thread, in a loop."""

    @classmethod
    def build(cls, camera: CameraConfig, hooks: SourceHooks) -> OpenCvSource:
        return cls(camera, hooks)

    @classmethod
    def probe(cls, camera: CameraConfig) -> str:
        capture = cv2.VideoCapture(cls.path(camera))
        try:
            ok, image = capture.read()
            if not ok:
                raise FileNotFoundError(f"OpenCV cannot read {cls.path(camera)}")
            return f"{image.shape[1]}x{image.shape[0]} via OpenCV"
        finally:
            capture.release()

    @staticmethod
    def path(camera: CameraConfig) -> str:
        return camera.url.split("://", 1)[1]

    def __init__(self, camera: CameraConfig, hooks: SourceHooks) -> None:
        self.name = camera.name
        self.camera = camera
        self.hooks = hooks
        self.stats = hooks.stats
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, args=(loop,), daemon=True)
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        capture = cv2.VideoCapture(self.path(self.camera))
        index = 0
        self._report(CameraState.STREAMING)
        while not self._stop.is_set():
            ok, image = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            index += 1
            frame = Frame(self.name, index, time.time(), time.monotonic(), image=image)
            if self.hooks.prepare is not None:
                self.hooks.prepare(frame)
            self.stats.decoded += 1
            self.stats.last_decoded_monotonic = self.stats.last_handed_monotonic = time.monotonic()
            put = asyncio.run_coroutine_threadsafe(self._frames.put(frame), loop)
            while not self._stop.is_set():
                try:
                    put.result(timeout=0.1)
                    break
                except TimeoutError:
                    continue
            else:
                put.cancel()
        capture.release()

    def _report(self, state: CameraState) -> None:
        self.stats.source_state = state
        if self.hooks.on_status is not None:
            self.hooks.on_status(self.name, state, None)

    async def next_frame(self) -> Frame | None:
        return await self._frames.get()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        self._report(CameraState.STOPPED)
        while not self._frames.empty():
            self._frames.get_nowait()
        self._frames.put_nowait(None)


# -- a detector family -------------------------------------------------------------------------


class WholeFrameDetector(Detector):
    """One box over the whole frame, scored 0.5-1 by the frame's brightness (the toy model on
    Triton), so that the tracker keeps it."""

    @classmethod
    def from_models(cls, config: StreamerConfig, models: Mapping[str, Any]) -> WholeFrameDetector:
        return cls(models[config.detector.model])

    def __init__(self, model: TritonModel) -> None:
        self.model = model

    def set_camera_weight(self, camera: str, weight: float) -> None:
        self.model.weights[camera] = weight

    def prepare(self, frame: Frame) -> None:
        frame.prepared["whole_frame"] = cv2.resize(frame.image, (CROP, CROP), interpolation=cv2.INTER_AREA)

    async def detect(self, frame: Frame) -> Detections:
        outputs, _timing = await self.model.infer({"crops": frame.prepared["whole_frame"]}, frame.camera)
        brightness = float(np.mean(outputs["colour"])) / 255.0
        box = np.array([[0, 0, frame.width - 1, frame.height - 1]], np.float32)
        return Detections(
            xyxy=box, confidence=np.array([0.5 + brightness / 2], np.float32), class_id=np.array([0])
        )


# -- an event type -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColourChanged(BaseEvent):
    """A track's mean colour changed (or was first seen)."""

    type: ClassVar[str] = "colour_changed"
    type_names: ClassVar[tuple[str, ...]] = (type,)
    schema: ClassVar[str] = str(Path(__file__).with_name("colour_changed.json"))
    camera: str
    track_id: int
    frame_index: int
    capture_ts: float
    colour: tuple[int, int, int]
    id: str = field(default_factory=new_id)

    def payload(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "camera": self.camera,
            "track_id": self.track_id,
            "frame_index": self.frame_index,
            "capture_ts": self.capture_ts,
            "colour": list(self.colour),
        }

    def summary(self) -> str:
        return f"track #{self.track_id} turned {self.colour}"


# -- a stage -----------------------------------------------------------------------------------


@dataclass
class ColourCounts:
    """The toy stage's stats, exported as `streamer_stage_*{stage="colours"}`."""

    coloured: int = 0


class ColourStage(FrameStage[CameraConfig]):
    """Each confirmed track's mean colour, as track data `colour` (B, G, R)."""

    name = "colours"
    needs_image = True  # crops come out of the full-size picture

    def __init__(self, config: StreamerConfig) -> None:
        self.models = [TOY_MODEL]
        self.stats = ColourCounts()
        self.model: TritonModel | None = None
        self.cameras_configured: list[str] = []
        self.last_colour: dict[tuple[str, int], np.ndarray] = {}

    def registered_stats(self) -> dict[StatsKind, object]:
        return {StatsKind.STAGE: self.stats}

    def configure_camera(self, camera: CameraConfig) -> None:
        self.cameras_configured.append(camera.name)

    async def start(self, models: Mapping[str, Any]) -> None:
        self.model = models[TOY_MODEL]

    async def process(self, frame: Frame, result: FrameResult, tracks: TrackBook) -> None:
        assert self.model is not None
        if result.tracks.tracker_id is None:
            return
        for box, track_id in zip(result.tracks.xyxy, result.tracks.tracker_id.tolist()):
            x1, y1, x2, y2 = (int(v) for v in box)
            crop = frame.image[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
            colour = np.rint(await mean_colour(self.model, crop, frame.camera)).astype(int)
            update = tracks.annotate(frame, track_id, colour=colour.tolist())
            if update is not None:
                result.events.append(update)
                self.stats.coloured += 1
            before = self.last_colour.get((frame.camera, track_id))
            if before is None or np.abs(colour - before).max() >= COLOUR_STEP:
                self.last_colour[(frame.camera, track_id)] = colour
                result.events.append(ColourChanged(  # type: ignore[arg-type]  # not a built-in
                    frame.camera, track_id, frame.index, frame.capture_ts,
                    (int(colour[0]), int(colour[1]), int(colour[2])),
                ))


# -- a sink ------------------------------------------------------------------------------------


class ListSink(Sink):
    """Keeps what it is handed; `publish*` return at once, as the contract asks."""

    name = "list"

    def __init__(self) -> None:
        self.results: list[FrameResult] = []
        self.events: list[Event] = []
        self.statuses: list[CameraStatusEvent] = []
        self.stopped = False

    def publish_frame(self, result: FrameResult) -> None:
        self.results.append(result)

    def publish_events(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def publish_status(self, status: CameraStatusEvent) -> None:
        self.statuses.append(status)

    async def stop(self) -> None:
        self.stopped = True
