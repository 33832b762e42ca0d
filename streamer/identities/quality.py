"""How good a view is for an embedding, and which person a face belongs to.

Qualities are products of 0..1 factors, so one bad aspect (tiny, blurred, turned away, cut off by
the frame border, overlapped by another person) is enough to make a view poor.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamer.config import FacesConfig, ReidConfig
from streamer.core.detections import Detections
from streamer.inference.scrfd import LANDMARK_POINTS

LEFT_EYE, RIGHT_EYE, NOSE = 0, 1, 2
MOUTH_LEFT, MOUTH_RIGHT = 3, 4
NO_TRACK = -1
NOSE_DRIFT_LIMIT = 0.5  # nose this far (x eye distance) from the face's midline: a profile view
CUT_OFF_FACTOR = 0.5  # quality kept by a person box that touches the frame border
EPSILON = 1e-6


def sharpness(image: np.ndarray, reference_variance: float) -> float:
    """Variance of the Laplacian relative to a sharp reference, capped at 1 (blur lowers it)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    variance = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return min(1.0, variance / reference_variance)


def frontality(landmarks: np.ndarray) -> float:
    """1 for a frontal face, towards 0 as it turns: the nose drifts from the eyes' and mouth's
    midline, and one eye-to-nose distance shrinks against the other."""
    points = np.asarray(landmarks, np.float32).reshape(LANDMARK_POINTS, 2)
    eye_distance = float(np.linalg.norm(points[RIGHT_EYE] - points[LEFT_EYE]))
    if eye_distance <= 0:
        return 0.0
    midline_x = (points[[LEFT_EYE, RIGHT_EYE, MOUTH_LEFT, MOUTH_RIGHT], 0]).mean()
    drift = abs(float(points[NOSE, 0]) - float(midline_x)) / eye_distance
    left = float(np.linalg.norm(points[NOSE] - points[LEFT_EYE]))
    right = float(np.linalg.norm(points[NOSE] - points[RIGHT_EYE]))
    balance = min(left, right) / max(left, right, EPSILON)
    return float(np.clip(1.0 - drift / NOSE_DRIFT_LIMIT, 0.0, 1.0) * balance)


def face_quality(
    score: float, box: np.ndarray, landmarks: np.ndarray, aligned: np.ndarray, settings: FacesConfig
) -> float:
    """Detector score x size x frontality x sharpness of the aligned crop."""
    side = float(min(box[2] - box[0], box[3] - box[1]))
    if side < settings.min_face_px:
        return 0.0
    size = min(1.0, side / settings.good_face_px)
    return (
        float(score)
        * size
        * frontality(landmarks)
        * sharpness(aligned, settings.sharp_laplacian_variance)
    )


def overlap_fraction(box: np.ndarray, others: np.ndarray) -> float:
    """Largest share of `box`'s area covered by any one of `others`."""
    if len(others) == 0:
        return 0.0
    left = np.maximum(box[0], others[:, 0])
    top = np.maximum(box[1], others[:, 1])
    right = np.minimum(box[2], others[:, 2])
    bottom = np.minimum(box[3], others[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), EPSILON)
    return float(inter.max() / area)


def person_quality(
    tracks: Detections, row: int, width: int, height: int, settings: ReidConfig
) -> float:
    """Detector score x size x not cut off by the border x not overlapped by another person."""
    box = tracks.xyxy[row]
    box_height = float(box[3] - box[1])
    if box_height < settings.min_height_px:
        return 0.0
    size = min(1.0, box_height / settings.good_height_px)
    margin = settings.edge_margin_px
    inside = (
        box[0] >= margin and box[1] >= margin and box[2] <= width - margin and box[3] <= height - margin
    )
    others = np.delete(tracks.xyxy, row, axis=0)
    unoccluded = 1.0 - overlap_fraction(box, others)
    return float(tracks.confidence[row]) * size * (1.0 if inside else CUT_OFF_FACTOR) * unoccluded


def person_qualities(tracks: Detections, width: int, height: int, settings: ReidConfig) -> np.ndarray:
    """`person_quality` of every row at once (the snapshot stage scores every track every frame)."""
    boxes = tracks.xyxy.astype(np.float64)
    if len(boxes) == 0:
        return np.zeros(0)
    heights = boxes[:, 3] - boxes[:, 1]
    size = np.minimum(1.0, heights / settings.good_height_px)
    margin = settings.edge_margin_px
    inside = (
        (boxes[:, 0] >= margin)
        & (boxes[:, 1] >= margin)
        & (boxes[:, 2] <= width - margin)
        & (boxes[:, 3] <= height - margin)
    )
    left = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    top = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    right = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    bottom = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    np.fill_diagonal(inter, 0.0)
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * heights, EPSILON)
    unoccluded = 1.0 - inter.max(axis=1) / areas
    quality = (
        tracks.confidence.astype(np.float64) * size * np.where(inside, 1.0, CUT_OFF_FACTOR) * unoccluded
    )
    return np.where(heights < settings.min_height_px, 0.0, quality)


def link_faces(faces: Detections, tracks: Detections, head_fraction: float) -> np.ndarray:
    """For each face, the row of the track it belongs to, or NO_TRACK; at most one face per track.

    A face belongs to a person whose box holds the face centre in its top `head_fraction`; among
    several, the one whose head position (top centre) is nearest, relative to box width, wins.
    """
    links = np.full(len(faces), NO_TRACK, np.int64)
    if len(faces) == 0 or len(tracks) == 0:
        return links
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    boxes = tracks.xyxy
    widths = np.maximum(boxes[:, 2] - boxes[:, 0], EPSILON)
    heights = boxes[:, 3] - boxes[:, 1]
    cx, cy = centres[:, None, 0], centres[:, None, 1]
    inside = (
        (cx >= boxes[None, :, 0])
        & (cx <= boxes[None, :, 2])
        & (cy >= boxes[None, :, 1])
        & (cy <= boxes[None, :, 1] + head_fraction * heights[None, :])
    )
    head_x = (boxes[:, 0] + boxes[:, 2]) / 2
    cost = np.hypot(cx - head_x[None, :], cy - boxes[None, :, 1]) / widths[None, :]
    cost = np.where(inside, cost, np.inf)
    # Greedy by cost: clear pairs first, then what is left; each face and track used once.
    for flat in np.argsort(cost, axis=None):
        face, track = np.unravel_index(flat, cost.shape)
        if not np.isfinite(cost[face, track]):
            break
        if links[face] == NO_TRACK and track not in links:
            links[face] = track
    return links
