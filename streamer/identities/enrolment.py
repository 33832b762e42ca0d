"""Enrolled faces: a small .npz file of names and face embeddings, and matching against it.

The file holds arrays `names` (str), `embeddings` (N x D float32, unit length), `sources` (str:
the image each embedding came from) and `model` (the embedder that produced them). Writes go to a
temporary file renamed over the old one, so a running service never reads half a file; it reloads
the file when it changes, so enrolment does not need a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamer.config import FacesConfig
from streamer.identities.gallery import EmbeddingSizeMismatch
from streamer.inference.client import TritonModel
from streamer.inference.faces import FaceDetector, FaceEmbedder
from streamer.inference.scrfd import ScrfdSettings


class EnrolmentRefused(ValueError):
    """Images cannot be enrolled; one line per problem, naming the image and why."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass(frozen=True)
class FaceMatch:
    name: str
    similarity: float


class FaceStore:
    """Names -> face embeddings, kept in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names = np.zeros((0,), str)
        self.sources = np.zeros((0,), str)
        self.embeddings = np.zeros((0, 0), np.float32)
        self.model = ""
        self._loaded_mtime_ns: int | None = None
        self.load()

    @property
    def embedding_size(self) -> int | None:
        return int(self.embeddings.shape[1]) if len(self.names) else None

    def load(self) -> None:
        if not self.path.is_file():
            self._loaded_mtime_ns = None
            return
        mtime = self.path.stat().st_mtime_ns
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self.names = data["names"].astype(str)
                self.sources = data["sources"].astype(str)
                self.embeddings = data["embeddings"].astype(np.float32)
                self.model = str(data["model"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{self.path}: not a faces store ({exc})") from None
        self._loaded_mtime_ns = mtime

    def refresh_if_changed(self) -> None:
        """Pick up enrolments made while the service runs (one stat call)."""
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._loaded_mtime_ns:
            self.load()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        try:
            np.savez(
                temporary,
                names=self.names,
                sources=self.sources,
                embeddings=self.embeddings,
                model=np.array(self.model),
            )
            temporary.replace(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        self._loaded_mtime_ns = self.path.stat().st_mtime_ns

    def check_size(self, embedding_size: int, model: str) -> None:
        """Refuse a model whose embeddings cannot be compared with the enrolled ones."""
        if self.embedding_size is not None and self.embedding_size != embedding_size:
            raise EmbeddingSizeMismatch(
                f"{self.path}: enrolled faces are {self.embedding_size}-d embeddings from "
                f"'{self.model}', but model '{model}' produces {embedding_size}-d ones: enrol the "
                "faces again with this model (`streamer faces remove` / `enroll`) or use another "
                "identities.faces_store"
            )

    def add(self, name: str, embeddings: np.ndarray, sources: list[str], model: str) -> None:
        self.check_size(int(embeddings.shape[1]), model)
        current = self.embeddings if len(self.names) else np.zeros((0, embeddings.shape[1]), np.float32)
        self.embeddings = np.concatenate([current, embeddings.astype(np.float32)])
        self.names = np.concatenate([self.names, np.full(len(embeddings), name)])
        self.sources = np.concatenate([self.sources, np.asarray(sources, str)])
        self.model = model

    def remove(self, name: str) -> int:
        keep = self.names != name
        removed = int((~keep).sum())
        self.names, self.sources = self.names[keep], self.sources[keep]
        self.embeddings = self.embeddings[keep]
        return removed

    def counts(self) -> dict[str, int]:
        names, counts = np.unique(self.names, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def match(self, embedding: np.ndarray, threshold: float) -> FaceMatch | None:
        """The enrolled person most similar to `embedding` (best of their images), if above."""
        if not len(self.names) or embedding.shape != (self.embeddings.shape[1],):
            return None
        similarities = self.embeddings @ embedding
        best = int(np.argmax(similarities))
        similarity = float(similarities[best])
        if similarity < threshold:
            return None
        return FaceMatch(str(self.names[best]), round(similarity, 4))


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
    store.add(name, np.stack(embeddings), [str(p) for p in images], embedder.model.name)
    store.save()
