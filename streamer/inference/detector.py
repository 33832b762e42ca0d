"""The YOLOX detector family: letterbox (in the camera's thread), Triton, YOLOX decoding."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from streamer.config import DetectorConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.core.imaging import Letterboxed, letterbox, letterbox_yuv420
from streamer.core.interfaces import Detector
from streamer.inference.client import ModelSpec, TritonModel
from streamer.inference.yolox import FIRST_CLASS_COLUMN, YOLOX_PAD_VALUE, YoloxDecoder

PREPARED_KEY = "person_detector"


class YoloxDetector(Detector):
    """`detect(frame) -> Detections`, boxes in frame pixels."""

    @classmethod
    def from_models(cls, models: Mapping[str, Any], settings: DetectorConfig) -> YoloxDetector:
        """The detector on its served model, configured from the model's tensors."""
        model: TritonModel = models[settings.model]
        if model.spec is None:
            raise ValueError(f"model '{settings.model}' is not served")
        detector = cls(model, settings)
        detector.configure(model.spec)
        return detector

    def __init__(self, model: TritonModel, settings: DetectorConfig) -> None:
        self.model = model
        self.settings = settings
        self._input = ""
        self._output = ""
        self._height = self._width = 0
        self._decoder: YoloxDecoder | None = None

    def configure(self, spec: ModelSpec) -> None:
        """Take input size and tensor names from the served model, so any YOLOX size works."""
        tensor = spec.input()
        if len(tensor.shape) != 3 or tensor.shape[2] != 3 or tensor.dtype.itemsize != 1:
            raise ValueError(
                f"model '{spec.name}': input '{tensor.name}' must be uint8 HxWx3 frames, got "
                f"{tensor.dtype} {tensor.shape}; prepare it with `streamer models prepare`"
            )
        self._input, self._output = tensor.name, spec.outputs[0].name
        served = spec.outputs[0].shape[-1] - FIRST_CLASS_COLUMN  # negative: variable, unchecked
        missing = [c for c in self.settings.class_ids if c >= served] if served >= 0 else []
        if missing:
            needed = max(missing) + 1
            anchors = spec.outputs[0].shape[0]
            raise ValueError(
                f"detector.class_ids: class {missing[0]} is not served: model {spec.name} "
                f"outputs {served} class{'es' if served != 1 else ''}; prepare it with "
                f"`streamer models prepare {spec.name} --classes {needed}` and set its output "
                f"dims in config.pbtxt to [ {anchors}, {FIRST_CLASS_COLUMN + needed} ]"
            )
        self._height, self._width = tensor.shape[0], tensor.shape[1]
        self._decoder = YoloxDecoder(self._height, self._width)

    def set_camera_weight(self, camera: str, weight: float) -> None:
        self.model.weights[camera] = weight

    def prepare(self, frame: Frame) -> None:
        """Runs in the camera's decoding thread, off the event loop.

        From the decoded YUV planes when the source has them and the full-size image is not
        made anyway (resize first, convert the small picture); else from the BGR image. The box
        ratio is the same either way, so boxes map back to frame pixels alike.
        """
        started = time.perf_counter()
        boxed = None
        if frame.yuv420 is not None and not frame.has_image:
            boxed = letterbox_yuv420(frame.yuv420, self._height, self._width, YOLOX_PAD_VALUE)
        if boxed is None:
            boxed = letterbox(frame.image, self._height, self._width, YOLOX_PAD_VALUE)
        frame.prepared[PREPARED_KEY] = boxed
        frame.timings.add("preprocess", time.perf_counter() - started)

    async def detect(self, frame: Frame) -> Detections:
        assert self._decoder is not None, "configure() first"
        boxed = frame.prepared.get(PREPARED_KEY)
        if not isinstance(boxed, Letterboxed):
            self.prepare(frame)
            boxed = frame.prepared[PREPARED_KEY]
        outputs, timing = await self.model.infer({self._input: boxed.image}, frame.camera)
        frame.timings.add("queue", timing.queued_s)
        frame.timings.add("inference", timing.request_s)
        started, started_cpu = time.perf_counter(), time.thread_time()
        detections = self._decoder.decode(
            outputs[self._output],
            boxed.ratio,
            class_ids=self.settings.class_ids,
            score_threshold=self.settings.score_threshold,
            nms_iou_threshold=self.settings.nms_iou_threshold,
            max_detections=self.settings.max_detections,
        )
        frame.timings.add("postprocess", time.perf_counter() - started)
        frame.timings.add_cpu("postprocess", time.thread_time() - started_cpu)
        return detections
