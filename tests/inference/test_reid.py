"""Person ReID through Triton on real MOT17 pedestrians: the nearest crop is the same person."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamer.inference.client import TritonModel
from streamer.inference.reid import PersonEmbedder, crop_person
from tests.inference.mot17 import Pedestrian, frame_numbers, pedestrians, sequences

MIN_VISIBILITY = 0.7
MIN_HEIGHT_PX = 100.0
MIN_QUERIES = 30  # the mini set yields 47 queries with their person in the gallery


def _queries_and_gallery() -> tuple[list[Pedestrian], list[Pedestrian]]:
    """Pedestrians of each sequence's first frame against those of its last frame (all sequences
    together, so the gallery also holds people from other scenes)."""
    queries, gallery = [], []
    for sequence in sequences():
        frames = frame_numbers(sequence)
        queries += pedestrians(sequence, frames[0], MIN_VISIBILITY, MIN_HEIGHT_PX)
        gallery += pedestrians(sequence, frames[-1], MIN_VISIBILITY, MIN_HEIGHT_PX)
    return queries, gallery


async def _embed_all(embedder: PersonEmbedder, people: list[Pedestrian]) -> np.ndarray:
    crops = [embedder.crop(p.image, p.box) for p in people]
    assert all(c is not None for c in crops)
    results = await asyncio.gather(*(embedder.embed(c) for c in crops if c is not None))
    return np.stack([embedding for embedding, _timing in results])


@pytest.mark.parametrize("model_name", ["person_reid", "person_reid_retail"])
async def test_nearest_crop_in_other_frames_is_the_same_pedestrian(
    served_models: dict[str, TritonModel], model_name: str
) -> None:
    model = served_models[model_name]
    assert model.spec is not None
    embedder = PersonEmbedder(model)
    embedder.configure(model.spec)
    queries, gallery = _queries_and_gallery()
    gallery_keys = [p.key for p in gallery]
    queries = [q for q in queries if q.key in gallery_keys]
    assert len(queries) >= MIN_QUERIES, f"only {len(queries)} MOT17 queries with a match"

    query_embeddings = await _embed_all(embedder, queries)
    gallery_embeddings = await _embed_all(embedder, gallery)
    np.testing.assert_allclose(np.linalg.norm(query_embeddings, axis=1), 1.0, atol=1e-5)

    nearest = (query_embeddings @ gallery_embeddings.T).argmax(axis=1)
    wrong = [
        f"{q.key} -> {gallery[n].key}" for q, n in zip(queries, nearest) if gallery[n].key != q.key
    ]
    assert not wrong, f"{model_name}: nearest neighbour is another person for {wrong}"


def test_crop_is_the_box_stretched_to_the_model_input() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[10:60, 50:70] = 255  # the "person"
    crop = crop_person(image, np.array([50, 10, 70, 60], np.float32), height=256, width=128)
    assert crop is not None and crop.shape == (256, 128, 3)
    assert crop.min() == 255, "the crop must hold exactly the box's pixels"
    assert crop_person(image, np.array([300, 10, 320, 60], np.float32), 256, 128) is None
