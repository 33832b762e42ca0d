"""YOLOX person detection: preprocessing, decoding, batching, and the real model on real footage."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as grpcclient

from streamer.config import DetectorConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.core.imaging import Letterboxed, letterbox, letterbox_yuv420
from streamer.inference.client import SERVER_BACKLOG, ModelSpec, TensorSpec, TritonModel
from streamer.inference.detector import YoloxDetector
from streamer.inference.model_prep import InputSpec, prepare_model
from streamer.inference.server import EmbeddedTritonServer
from streamer.inference.yolox import YOLOX_PAD_VALUE, YoloxDecoder
from tests.conftest import require_asset

INPUT = 416


def first_frames(clip: Path, count: int) -> list[np.ndarray]:
    with av.open(str(clip)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                return frames
    return frames


def test_letterbox_keeps_aspect_and_pads_bottom_right() -> None:
    image = np.full((576, 768, 3), 7, np.uint8)
    boxed = letterbox(image, INPUT, INPUT, YOLOX_PAD_VALUE)
    assert boxed.ratio == pytest.approx(INPUT / 768)
    assert boxed.image.shape == (INPUT, INPUT, 3)
    assert (boxed.image[:312] == 7).all()
    assert (boxed.image[312:] == YOLOX_PAD_VALUE).all()


def test_decoder_places_a_box_from_its_grid_cell_and_stride() -> None:
    decoder = YoloxDecoder(INPUT, INPUT)
    output = np.zeros((len(decoder.grid), 85), np.float32)
    output[:, 4] = 0.0
    cell = 52 * 10 + 20  # stride 8 grid is 52x52: row 10, column 20
    output[cell, :4] = [0.5, 0.5, np.log(4.0), np.log(8.0)]  # 32x64 px box centred in the cell
    output[cell, 4], output[cell, 5] = 0.9, 0.8
    found = decoder.decode(
        output, ratio=0.5, class_ids=[0], score_threshold=0.1, nms_iou_threshold=0.45, max_detections=10
    )
    centre_x, centre_y = (20 + 0.5) * 8, (10 + 0.5) * 8
    expected = np.array([centre_x - 16, centre_y - 32, centre_x + 16, centre_y + 32]) / 0.5
    assert len(found) == 1
    np.testing.assert_allclose(found.xyxy[0], expected, rtol=1e-5)
    assert found.confidence[0] == pytest.approx(0.72)


def test_classes_the_served_model_does_not_output_are_refused_at_start() -> None:
    def served(columns: int) -> ModelSpec:
        frames = TensorSpec("frames", np.dtype(np.uint8), (INPUT, INPUT, 3))
        output = TensorSpec("output", np.dtype(np.float32), (3549, columns))
        return ModelSpec("person_detector", 16, (frames,), (output,))

    YoloxDetector(None, DetectorConfig(class_ids=[0])).configure(served(6))  # type: ignore[arg-type]
    YoloxDetector(None, DetectorConfig(class_ids=[0, 2])).configure(served(85))  # type: ignore[arg-type]
    YoloxDetector(None, DetectorConfig(class_ids=[0, 2])).configure(served(-1))  # type: ignore[arg-type]
    cars = YoloxDetector(None, DetectorConfig(class_ids=[0, 2]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"detector.class_ids: class 2 .* --classes 3"):
        cars.configure(served(6))


def test_prepared_graph_gives_identical_batched_and_per_image_output(tmp_path: Path) -> None:
    source = require_asset("models/yolox_nano.onnx")
    prepared = prepare_model(
        source, tmp_path / "model.onnx", InputSpec(INPUT, INPUT, "bgr"), output_columns=6
    )
    batched_session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    frames = np.stack(
        [letterbox(f, INPUT, INPUT, YOLOX_PAD_VALUE).image for f in first_frames(
            require_asset("videos/vtest_first10s_h264.mp4"), 4)]
    )
    batched = batched_session.run(None, {"frames": frames})[0]
    assert batched.shape == (4, 3549, 6)  # box, objectness and the person class kept
    for index, frame in enumerate(frames):
        nchw = frame.transpose(2, 0, 1)[None].astype(np.float32)
        single = original.run(None, {"images": nchw})[0][0]
        assert single.shape == (3549, 85)
        np.testing.assert_allclose(batched[index], single[:, :6], rtol=1e-4, atol=1e-4)


async def test_real_detector_through_triton_finds_the_pedestrians(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path
) -> None:
    client = grpcclient.InferenceServerClient(embedded_triton.grpc_url)
    model = TritonModel(
        client, "person_detector", requests_in_flight=4, queue_size=8,
        use_shared_memory=True, request_timeout_s=30,
    )
    detector = YoloxDetector(model, DetectorConfig())
    detector.configure(await model.start())
    try:
        images = first_frames(sample_clip, 8)
        frames = [Frame("cam", i, 0.0, 0.0, image) for i, image in enumerate(images)]
        import asyncio

        results = await asyncio.gather(*(detector.detect(f) for f in frames))
    finally:
        await model.stop()
        await client.close()
    for found in results:
        confident = found[found.confidence > 0.5]
        assert len(confident) >= 3  # vtest always shows several walkers
        assert (confident.xyxy[:, 2] <= 768 + 5).all() and (confident.xyxy[:, 3] <= 576 + 5).all()
        heights = confident.xyxy[:, 3] - confident.xyxy[:, 1]
        widths = confident.xyxy[:, 2] - confident.xyxy[:, 0]
        assert (heights > widths).mean() > 0.8  # people are taller than wide
    assert model.stats.requests == 8 and model.stats.failures == 0


def yuv_planes(clip: Path, count: int) -> list[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
    """The BGR image and the Y, U, V planes of the clip's first frames, as the camera gets them."""
    found = []
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            planes = tuple(
                np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy()
                for p in frame.planes
            )
            found.append((frame.to_ndarray(format="bgr24"), planes))
            if len(found) == count:
                break
    return found


def iou(a: np.ndarray, b: np.ndarray) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def test_letterbox_from_yuv_planes_matches_the_bgr_letterbox() -> None:
    image = np.zeros((576, 768, 3), np.uint8)
    planes = (np.full((576, 768), 120, np.uint8), np.full((288, 384), 128, np.uint8),
              np.full((288, 384), 128, np.uint8))
    boxed = letterbox_yuv420(planes, INPUT, INPUT, YOLOX_PAD_VALUE)
    reference = letterbox(image, INPUT, INPUT, YOLOX_PAD_VALUE)
    assert boxed is not None
    assert boxed.ratio == reference.ratio and boxed.image.shape == reference.image.shape
    assert (boxed.image[312:] == YOLOX_PAD_VALUE).all()
    grey = boxed.image[:312]
    assert abs(int(grey.mean()) - round((120 - 16) * 255 / 219)) <= 1  # limited-range luma
    assert letterbox_yuv420(planes, 415, 415, YOLOX_PAD_VALUE) is None  # odd size: the caller falls back


def test_detections_from_yuv_planes_equal_those_from_the_bgr_image(tmp_path: Path) -> None:
    """The camera's fast path (resize in YUV, convert the small picture) finds the same people,
    with boxes in the same frame pixels, as the full-size BGR letterbox."""
    prepared = prepare_model(
        require_asset("models/yolox_nano.onnx"), tmp_path / "model.onnx", InputSpec(INPUT, INPUT, "bgr")
    )
    session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
    decoder, settings = YoloxDecoder(INPUT, INPUT), DetectorConfig()

    def detect(boxed: Letterboxed) -> Detections:
        output = session.run(None, {"frames": boxed.image[None]})[0][0]
        found = decoder.decode(
            output, boxed.ratio, class_ids=settings.class_ids,
            score_threshold=settings.score_threshold,
            nms_iou_threshold=settings.nms_iou_threshold, max_detections=settings.max_detections,
        )
        return found[found.confidence > 0.5]

    matched = total = 0
    for image, planes in yuv_planes(require_asset("videos/vtest_first10s_h264.mp4"), 20):
        fast = letterbox_yuv420(planes, INPUT, INPUT, YOLOX_PAD_VALUE)  # type: ignore[arg-type]
        assert fast is not None
        reference, found = detect(letterbox(image, INPUT, INPUT, YOLOX_PAD_VALUE)), detect(fast)
        assert abs(len(found) - len(reference)) <= 1
        for box in reference.xyxy:
            total += 1
            matched += any(iou(box, other) >= 0.8 for other in found.xyxy)
    assert total >= 60 and matched / total >= 0.95


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shared-memory", "grpc"])
async def test_concurrent_requests_get_their_own_outputs(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, shared_memory: bool
) -> None:
    """Queued frames share requests (several per request, run one at a time by the embedded
    server of one-thread instances), and each frame still gets its own output, through shared
    memory and over gRPC alike."""
    await check_concurrent_outputs(embedded_triton.grpc_url, sample_clip, shared_memory)


async def test_a_server_that_batches_requests_gives_each_frame_its_own_output(
    model_repository: Path, sample_clip: Path
) -> None:
    """Instances of two threads keep Triton's dynamic batching: requests are concatenated into
    one ONNX Runtime run and split again."""
    server = EmbeddedTritonServer(model_repository, ["person_detector"], ort_threads=2)
    await server.start()
    try:
        await check_concurrent_outputs(server.grpc_url, sample_clip, shared_memory=True)
    finally:
        await server.stop()


async def check_concurrent_outputs(url: str, sample_clip: Path, shared_memory: bool) -> None:
    client = grpcclient.InferenceServerClient(url)
    model = TritonModel(
        client, "person_detector", requests_in_flight=2, queue_size=16,
        use_shared_memory=shared_memory, request_timeout_s=30, max_request_batch=4,
    )
    await model.start()
    import asyncio

    try:
        inputs = [
            letterbox(image, INPUT, INPUT, YOLOX_PAD_VALUE).image
            for image in first_frames(sample_clip, 60)[::6]
        ]
        alone = [(await model.infer({"frames": image}))[0]["output"] for image in inputs]
        alone_requests = model.stats.requests
        together = await asyncio.gather(
            *(model.infer({"frames": image}, key=f"cam{i % 3}") for i, image in enumerate(inputs))
        )
    finally:
        await model.stop()
        await client.close()
    for single, (outputs, _timing) in zip(alone, together):
        np.testing.assert_allclose(outputs["output"], single, rtol=1e-4, atol=1e-4)
    assert not np.allclose(alone[0], alone[-1]), "different frames, different outputs"
    assert alone_requests == len(inputs)
    together_requests = model.stats.requests - alone_requests
    assert together_requests <= len(inputs) // 2, "queued frames share requests"
    assert model.stats.items == 2 * len(inputs) and model.stats.failures == 0


async def test_requests_the_server_would_only_queue_wait_in_the_fair_queue(
    embedded_triton: EmbeddedTritonServer,
) -> None:
    """The embedded server of one-thread instances runs each request alone: the client keeps
    its two instances and SERVER_BACKLOG more busy, not the eight requests configured, so that
    the backlog is ordered by the fair queue rather than by arrival at the server."""
    client = grpcclient.InferenceServerClient(embedded_triton.grpc_url)
    model = TritonModel(
        client, "person_detector", requests_in_flight=8, queue_size=16,
        use_shared_memory=True, request_timeout_s=30,
    )
    await model.start()
    try:
        assert model.requests_in_flight == model.stats.requests_in_flight == 2 + SERVER_BACKLOG
        assert len(model.region_names()) == 2 * (2 + SERVER_BACKLOG)  # input, output per request
    finally:
        await model.stop()
        await client.close()
