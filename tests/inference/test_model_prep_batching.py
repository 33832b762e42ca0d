"""The prepared graphs batch: N images at once give what N single runs give, and a single run gives
what the published weights give on the model's own float input (pixel conventions verified)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from streamer.inference.catalog import CATALOG, CatalogEntry, entry, prepare
from streamer.inference.yolox import FIRST_CLASS_COLUMN

BATCH = 3
# Same images in, same numbers out: only summation order may differ inside ORT kernels.
ATOL_RELATIVE_TO_RANGE = 1e-4

CASES: list[tuple[str, CatalogEntry, str]] = [
    *((item.name, item, item.demo_weights) for item in CATALOG),
    # InsightFace's canonical SCRFD export: any input size, outputs without a batch dimension.
    ("face_detector:scrfd_2.5g", entry("face_detector"), "scrfd_2.5g_bnkps.onnx"),
]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _images(assets: Path, height: int, width: int) -> np.ndarray:
    """Real pictures at the model's input size: a face photo, its mirror, a street scene."""
    astronaut = cv2.imread(str(assets / "images" / "astronaut.png"))
    street = cv2.imread(str(assets / "videos/MOT17-mini/train/MOT17-09-FRCNN/img1/000001.jpg"))
    assert astronaut is not None and street is not None
    pictures = [astronaut, astronaut[:, ::-1], street]
    return np.stack([cv2.resize(p, (width, height)) for p in pictures]).astype(np.uint8)


def _float_input(images: np.ndarray, item: CatalogEntry) -> np.ndarray:
    """What the published model expects, computed independently of the prepared graph."""
    pixels = images.astype(np.float32)
    if item.pixels.channel_order == "rgb":
        pixels = pixels[..., ::-1]
    pixels = (pixels - np.array(item.pixels.mean, np.float32)) / np.array(item.pixels.std, np.float32)
    if item.pixels.layout == "nchw":
        pixels = pixels.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(pixels)


@pytest.mark.parametrize(("case", "item", "weights"), CASES, ids=[c[0] for c in CASES])
def test_prepared_graph_batches_and_matches_the_published_weights(
    case: str, item: CatalogEntry, weights: str, assets: Path, tmp_path: Path
) -> None:
    source = assets / "models" / weights
    prepared = _session(prepare(item, tmp_path, source=source))
    frames = prepared.get_inputs()[0]
    assert frames.name == "frames" and frames.type == "tensor(uint8)"
    height, width = int(frames.shape[1]), int(frames.shape[2])
    images = _images(assets, height, width)

    batched = prepared.run(None, {"frames": images})
    singles = [prepared.run(None, {"frames": images[i : i + 1]}) for i in range(BATCH)]
    original = _session(source)
    original_input = original.get_inputs()[0].name
    for index, output in enumerate(batched):
        assert output.shape[0] == BATCH, f"{case}: output {index} has no batch dimension"
        scale = float(np.abs(output).max()) or 1.0
        for image in range(BATCH):
            np.testing.assert_allclose(
                output[image],
                singles[image][index][0],
                atol=ATOL_RELATIVE_TO_RANGE * scale,
                err_msg=f"{case}: output {index} of image {image} depends on the rest of the batch",
            )
    for image in range(BATCH):
        reference = original.run(None, {original_input: _float_input(images[image : image + 1], item)})
        for index, expected in enumerate(reference):
            single = singles[image][index][0]
            if item.detector_classes:  # YOLOX: box, objectness and the classes kept, in order
                expected = expected.reshape(single.shape[0], -1)[:, : single.shape[-1]]
                assert single.shape[-1] == FIRST_CLASS_COLUMN + item.detector_classes
            assert expected.size == single.size, f"{case}: output {index} changed size"
            scale = float(np.abs(expected).max()) or 1.0
            np.testing.assert_allclose(
                single,
                expected.reshape(single.shape),  # the published graph has batch 1 or none
                atol=ATOL_RELATIVE_TO_RANGE * scale,
                err_msg=f"{case}: prepared output {index} differs from the published weights",
            )
