"""Faces on real pictures through Triton: SCRFD decoding, ArcFace alignment, face embeddings.

The only real face photo here is the astronaut (skimage's `astronaut`, NASA, public domain).
"Other faces" are the real but small faces SCRFD finds on MOT17 pedestrians, plus non-face
regions of the same frames aligned as if they were faces.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from streamer.core.imaging import letterbox
from streamer.inference.catalog import entry, prepare
from streamer.inference.client import TritonModel
from streamer.inference.faces import (
    ARCFACE_SIZE,
    ARCFACE_TEMPLATE,
    FaceDetector,
    FaceEmbedder,
    align_face,
    similarity_transform,
)
from streamer.inference.scrfd import LANDMARKS_KEY, SCRFD_PAD_VALUE, ScrfdDecoder, ScrfdSettings
from tests.inference.mot17 import frame_numbers, pedestrians, sequences
from tests.inference.pictures import ASTRONAUT_FEATURES, LANDMARK_TOLERANCE_PX

ALIGNMENT_TOLERANCE_PX = 3.0
OTHER_FACE_MIN_SCORE = 0.6
MIN_OTHER_FACES = 3  # 4 are found at score >= 0.6
NON_FACE_WINDOWS = 12


@pytest.fixture(scope="module")
def astronaut(assets: Path) -> np.ndarray:
    image = cv2.imread(str(assets / "images" / "astronaut.png"))
    assert image is not None
    return image


def _detector(served_models: dict[str, TritonModel]) -> FaceDetector:
    model = served_models["face_detector"]
    assert model.spec is not None
    detector = FaceDetector(model, ScrfdSettings())
    detector.configure(model.spec)
    return detector


def _embedder(served_models: dict[str, TritonModel]) -> FaceEmbedder:
    model = served_models["face_embedder"]
    assert model.spec is not None
    embedder = FaceEmbedder(model)
    embedder.configure(model.spec)
    return embedder


def _assert_astronaut_landmarks(landmarks: np.ndarray) -> None:
    distances = np.linalg.norm(landmarks.reshape(5, 2) - ASTRONAUT_FEATURES, axis=1)
    assert distances.max() <= LANDMARK_TOLERANCE_PX, f"landmarks off by {distances.round(1)} px"


async def test_astronaut_photo_has_one_face_with_landmarks_on_its_features(
    served_models: dict[str, TritonModel], astronaut: np.ndarray
) -> None:
    faces = (await _detector(served_models).detect(astronaut)).faces
    assert len(faces) == 1
    x0, y0, x1, y1 = faces.xyxy[0]
    landmarks = faces.data[LANDMARKS_KEY][0].reshape(5, 2)
    assert (landmarks[:, 0] > x0).all() and (landmarks[:, 0] < x1).all()
    assert (landmarks[:, 1] > y0).all() and (landmarks[:, 1] < y1).all()
    _assert_astronaut_landmarks(landmarks)


async def test_region_offset_puts_faces_back_in_frame_pixels(
    served_models: dict[str, TritonModel], astronaut: np.ndarray
) -> None:
    region = astronaut[40:300, 120:380]
    faces = (await _detector(served_models).detect(region, offset=(120, 40))).faces
    assert len(faces) == 1
    _assert_astronaut_landmarks(faces.data[LANDMARKS_KEY][0])


@pytest.mark.parametrize("size", [(640, 640), (480, 736)], ids=["640x640", "480x736"])
def test_scrfd_2_5g_without_batch_dimension_decodes_the_same_face(
    assets: Path, astronaut: np.ndarray, size: tuple[int, int]
) -> None:
    """The InsightFace export takes any multiple of 32 and returns [A, k] without a batch."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(assets / "models" / "scrfd_2.5g_bnkps.onnx"), options, providers=["CPUExecutionProvider"]
    )
    height, width = size
    boxed = letterbox(astronaut, height, width, SCRFD_PAD_VALUE)
    rgb = boxed.image[..., ::-1].astype(np.float32)
    blob = ((rgb - 127.5) / 128.0).transpose(2, 0, 1)[None]
    outputs = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(blob)})
    assert all(o.ndim == 2 for o in outputs), "this export has no batch dimension"
    faces = ScrfdDecoder(height, width).decode(outputs, boxed.ratio, ScrfdSettings())
    assert len(faces) == 1
    _assert_astronaut_landmarks(faces.data[LANDMARKS_KEY][0])


def test_served_scrfd_2_5g_batches_and_decodes_per_image(
    assets: Path, astronaut: np.ndarray, tmp_path: Path
) -> None:
    """Prepared for serving (640x640, batch restored), each image of a batch decodes alone."""
    source = assets / "models" / "scrfd_2.5g_bnkps.onnx"
    path = prepare(entry("face_detector"), tmp_path, source=source)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    boxed = letterbox(astronaut, 640, 640, SCRFD_PAD_VALUE)
    empty = np.zeros_like(boxed.image)
    outputs = session.run(None, {"frames": np.stack([empty, boxed.image])})
    decoder = ScrfdDecoder(640, 640)
    assert len(decoder.decode([o[0] for o in outputs], boxed.ratio, ScrfdSettings())) == 0
    faces = decoder.decode([o[1] for o in outputs], boxed.ratio, ScrfdSettings())
    assert len(faces) == 1
    _assert_astronaut_landmarks(faces.data[LANDMARKS_KEY][0])


def test_alignment_undoes_a_similarity_transform_exactly() -> None:
    angle, scale, shift = 0.3, 2.5, np.array([100.0, 40.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ rotation.T + shift
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    moved = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(moved, ARCFACE_TEMPLATE, atol=1e-3)


def test_astronaut_aligned_crop_is_112_with_eyes_on_the_template(astronaut: np.ndarray) -> None:
    aligned = align_face(astronaut, ASTRONAUT_FEATURES)
    assert aligned.shape == (ARCFACE_SIZE, ARCFACE_SIZE, 3) and aligned.dtype == np.uint8
    matrix = similarity_transform(ASTRONAUT_FEATURES, ARCFACE_TEMPLATE)
    moved = ASTRONAUT_FEATURES @ matrix[:, :2].T + matrix[:, 2]
    residual = np.linalg.norm(moved - ARCFACE_TEMPLATE, axis=1)
    # Least squares over five points: the eyes land on the template; a smile widens the mouth.
    assert residual[:2].max() <= ALIGNMENT_TOLERANCE_PX, f"eyes off by {residual[:2]} px"
    assert residual.max() <= 2 * LANDMARK_TOLERANCE_PX, f"residuals {residual.round(1)} px"
    # A similarity transform: equal scale on both axes, no shear.
    scale_x, scale_y = np.linalg.norm(matrix[:, 0]), np.linalg.norm(matrix[:, 1])
    assert scale_x == pytest.approx(scale_y, rel=1e-5)
    assert float(matrix[:, 0] @ matrix[:, 1]) == pytest.approx(0.0, abs=1e-5)
    # The crop shows the face: skin tones in the middle, not the zero border.
    assert aligned[40:90, 30:80].mean() > 100


def _variants(photo: np.ndarray) -> dict[str, np.ndarray]:
    """The same face photographed differently."""
    flipped = np.ascontiguousarray(photo[:, ::-1])
    shifted = np.full((600, 700, 3), 90, np.uint8)
    small = cv2.resize(photo, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    shifted[71 : 71 + small.shape[0], 143 : 143 + small.shape[1]] = small
    ok, encoded = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 35])
    assert ok
    recompressed = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return {"flipped": flipped, "shifted+scaled": shifted, "jpeg q35": recompressed}


async def _other_faces(detector: FaceDetector, embedder: FaceEmbedder) -> list[np.ndarray]:
    """Aligned crops of real faces of MOT17 pedestrians (found in the top half of their box)."""
    aligned = []
    for sequence in sequences():
        frame = frame_numbers(sequence)[0]
        for person in pedestrians(sequence, frame, min_visibility=0.8, min_height=150):
            x0, y0, x1, y1 = person.box.astype(int)
            region = person.image[y0 : (y0 + y1) // 2, x0:x1]
            faces = (await detector.detect(region, offset=(x0, y0))).faces
            for row in np.flatnonzero(faces.confidence >= OTHER_FACE_MIN_SCORE):
                aligned.append(embedder.align(person.image, faces.data[LANDMARKS_KEY][row]))
    return aligned


def _non_faces(assets: Path) -> list[np.ndarray]:
    """Street-scene windows aligned as if they held a face (template landmarks, scaled)."""
    street = cv2.imread(str(assets / "videos/MOT17-mini/train/MOT17-04-FRCNN/img1/000001.jpg"))
    assert street is not None
    rng = np.random.default_rng(7)
    crops = []
    for _ in range(NON_FACE_WINDOWS):
        scale = rng.uniform(0.5, 2.0)
        origin = rng.uniform([0, 0], [street.shape[1] - 250, street.shape[0] - 250])
        crops.append(align_face(street, ARCFACE_TEMPLATE * scale + origin))
    return crops


async def test_same_face_is_closer_to_itself_than_to_other_faces(
    served_models: dict[str, TritonModel], astronaut: np.ndarray, assets: Path
) -> None:
    detector, embedder = _detector(served_models), _embedder(served_models)
    assert embedder.embedding_size == 128

    async def embed_photo(photo: np.ndarray) -> np.ndarray:
        faces = (await detector.detect(photo)).faces
        assert len(faces) == 1
        embedding, _ = await embedder.embed(embedder.align(photo, faces.data[LANDMARKS_KEY][0]))
        return embedding

    reference = await embed_photo(astronaut)
    assert np.linalg.norm(reference) == pytest.approx(1.0, abs=1e-5)
    variants = _variants(astronaut)
    same = dict(zip(variants, await asyncio.gather(*(embed_photo(v) for v in variants.values()))))
    others = await _other_faces(detector, embedder)
    assert len(others) >= MIN_OTHER_FACES, f"only {len(others)} real faces found in MOT17-mini"
    unrelated = others + _non_faces(assets)
    different = np.stack(
        [e for e, _ in await asyncio.gather(*(embedder.embed(crop) for crop in unrelated))]
    )
    closest_other = float((different @ reference).max())
    for name, embedding in same.items():
        similarity = float(embedding @ reference)
        assert similarity > closest_other, (
            f"{name}: similarity {similarity:.2f} to the original is not above the closest other "
            f"face or non-face ({closest_other:.2f})"
        )
