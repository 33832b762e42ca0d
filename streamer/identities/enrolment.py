"""Enrolment: the one face of each photo, detected, aligned and embedded like live faces, stored
under a name in the faces store (`face_store.py`).

The embeddings are computed before the store is locked, so a slow enrolment holds the lock only
for the moment it re-reads, adds and writes; a running service reloads the file when it changes,
so enrolment does not need a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np

from streamer.config import FacesConfig, StreamerConfig
from streamer.identities.face_store import CorruptFaceStore, FaceMatch, FaceStore
from streamer.inference.client import TritonModel
from streamer.inference.faces import FaceDetector, FaceEmbedder
from streamer.inference.scrfd import ScrfdSettings

__all__ = [
    "CorruptFaceStore",
    "EnrolmentRefused",
    "FaceMatch",
    "FaceStore",
    "embed_enrolment_image",
    "enrol",
    "face_models",
    "store_path",
]


def store_path(config: StreamerConfig) -> Path:
    """The faces store every command uses: `identities.faces_store`, which the config loader made
    relative to the config file; without a config file, relative to the working directory."""
    return config.identities.faces_store.absolute()


class EnrolmentRefused(ValueError):
    """Images cannot be enrolled; one line per problem, naming the image and why."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EnrolmentRefused(f"{path}: not a readable image")
    return image


async def embed_enrolment_image(
    path: Path, detector: FaceDetector, embedder: FaceEmbedder
) -> np.ndarray:
    """The embedding of the one face in the image; refused with no face or several."""
    image = read_image(path)
    faces = (await detector.detect(image)).faces
    if len(faces) == 0:
        raise EnrolmentRefused(f"{path}: no face found; use a photo with one clearly visible face")
    if len(faces) > 1:
        raise EnrolmentRefused(
            f"{path}: {len(faces)} faces found; crop the photo to the one person to enrol"
        )
    landmarks = faces.data["landmarks"][0]
    embedding, _timing = await embedder.embed(embedder.align(image, landmarks))
    return embedding


def face_models(
    models: dict[str, TritonModel], settings: FacesConfig
) -> tuple[FaceDetector, FaceEmbedder]:
    """Detector and embedder configured from the served models (the pipeline's settings)."""
    detector_model = models[settings.detector_model]
    embedder_model = models[settings.embedder_model]
    if detector_model.spec is None or embedder_model.spec is None:
        raise RuntimeError("face models are not started")
    detector = FaceDetector(
        detector_model,
        ScrfdSettings(settings.score_threshold, settings.nms_iou_threshold, settings.max_faces),
    )
    detector.configure(detector_model.spec)
    embedder = FaceEmbedder(embedder_model)
    embedder.configure(embedder_model.spec)
    return detector, embedder


async def enrol(
    store: FaceStore,
    name: str,
    images: list[Path],
    detector: FaceDetector,
    embedder: FaceEmbedder,
) -> None:
    """Embed the one face of every image and store them under `name`, or store nothing.

    Raises EnrolmentRefused listing every image with no face or several.
    """
    name = name.strip()
    if not name or "\n" in name:
        raise EnrolmentRefused("a name must be a non-empty single line")
    store.check_size(embedder.embedding_size, embedder.model.name)
    outcomes = await asyncio.gather(
        *(embed_enrolment_image(path, detector, embedder) for path in images),
        return_exceptions=True,
    )
    problems: list[str] = []
    embeddings: list[np.ndarray] = []
    for outcome in outcomes:
        if isinstance(outcome, EnrolmentRefused):
            problems += outcome.lines
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            embeddings.append(outcome)
    if problems:
        raise EnrolmentRefused(*problems)
    with store.editing():
        store.add(name, np.stack(embeddings), [str(p) for p in images], embedder.model.name)
