"""Embeddings per track, not per frame; faces belong to the person whose head they are."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.config import IdentitiesConfig
from streamer.core.detections import Detections
from streamer.identities.quality import NO_TRACK, frontality, link_faces
from streamer.identities.track_embeddings import TrackEmbedding
from streamer.inference.faces import ARCFACE_TEMPLATE

SETTINGS = IdentitiesConfig(better_view_margin=0.25, refresh_interval_s=10.0)
MIN_QUALITY = 0.25


def _boxes(rows: list[list[float]]) -> Detections:
    return Detections(
        xyxy=np.array(rows, np.float32).reshape(-1, 4),
        confidence=np.full(len(rows), 0.9, np.float32),
        class_id=np.zeros(len(rows), np.int64),
    )


PERSON_A = [100, 100, 200, 400]  # head around (150, 100..160)
PERSON_B = [180, 120, 280, 420]  # overlaps A's right side


@pytest.mark.parametrize(
    ("faces", "people", "expected"),
    [
        ([[135, 105, 165, 140]], [PERSON_A], [0]),
        ([[135, 300, 165, 335]], [PERSON_A], [NO_TRACK]),  # low in the box: not this head
        ([[400, 105, 430, 140]], [PERSON_A], [NO_TRACK]),  # outside every person
        ([[175, 125, 205, 160]], [PERSON_A, PERSON_B], [1]),  # inside both: B's head is nearer
        ([[135, 105, 165, 140], [150, 150, 170, 175]], [PERSON_A], [0, NO_TRACK]),  # one per track
        ([], [PERSON_A], []),
    ],
    ids=["head", "belly", "outside", "overlap", "two-faces", "none"],
)
def test_face_links_to_the_person_whose_head_it_is(
    faces: list[list[float]], people: list[list[float]], expected: list[int]
) -> None:
    links = link_faces(_boxes(faces), _boxes(people), head_fraction=0.5)
    assert links.tolist() == expected


@pytest.mark.parametrize(
    ("nose_shift", "at_least", "at_most"),
    [(0.0, 0.9, 1.0), (8.0, 0.3, 0.85), (18.0, 0.0, 0.15)],
    ids=["frontal", "turned", "profile"],
)
def test_frontality_falls_as_the_nose_leaves_the_midline(
    nose_shift: float, at_least: float, at_most: float
) -> None:
    landmarks = ARCFACE_TEMPLATE.copy()
    landmarks[2, 0] += nose_shift
    assert at_least <= frontality(landmarks) <= at_most


def test_embedding_is_requested_on_confirmation_better_view_or_refresh_only() -> None:
    history = TrackEmbedding()
    unit = np.eye(1, 8, dtype=np.float32)[0]
    assert not history.due(0.1, MIN_QUALITY, now=0.0, settings=SETTINGS), "too poor a view"
    assert history.due(0.4, MIN_QUALITY, now=0.0, settings=SETTINGS), "first good view"
    history.add(unit, 0.4, now=0.0)
    assert not history.due(0.45, MIN_QUALITY, now=1.0, settings=SETTINGS), "only slightly better"
    assert history.due(0.55, MIN_QUALITY, now=1.0, settings=SETTINGS), "clearly better view"
    assert history.due(0.3, MIN_QUALITY, now=10.5, settings=SETTINGS), "refresh interval passed"
    assert not history.due(0.2, MIN_QUALITY, now=99.0, settings=SETTINGS), "never below minimum"


def test_track_embedding_is_the_quality_weighted_mean() -> None:
    history = TrackEmbedding()
    first, second = np.array([1, 0], np.float32), np.array([0, 1], np.float32)
    history.add(first, 0.9, now=0.0)
    mean = history.add(second, 0.1, now=1.0)
    assert np.linalg.norm(mean) == pytest.approx(1.0)
    assert mean[0] > mean[1] > 0, "the better view dominates, the poorer one still counts"
    assert history.changed_enough(0.02)
    history.published = mean
    assert not history.changed_enough(0.02)
