"""Box overlap costs and gated one-to-one assignment."""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


def iou_matrix(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """Pairwise IoU (N, M) of corner boxes (N, 4) and (M, 4); empty boxes overlap nothing."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0.0, None).prod(axis=2)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clip(0.0, None).prod(axis=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clip(0.0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def iou_distance(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """1 - IoU: the association cost."""
    return 1.0 - iou_matrix(boxes_a, boxes_b)


def fuse_score(cost: FloatArray, scores: FloatArray) -> FloatArray:
    """Scale IoU similarity by detection score, so low-confidence columns cost more."""
    return 1.0 - (1.0 - cost) * scores[None, :]


@dataclass(frozen=True)
class Assignment:
    """Result of gated assignment: matched (row, column) pairs and what stayed unmatched."""

    rows: IndexArray
    columns: IndexArray
    unmatched_rows: IndexArray
    unmatched_columns: IndexArray


def linear_assignment(cost: FloatArray, max_cost: float) -> Assignment:
    """Minimum-cost one-to-one matching that never pairs anything costing more than max_cost."""
    n_rows, n_columns = cost.shape
    if n_rows == 0 or n_columns == 0:
        empty = np.empty(0, dtype=np.int64)
        return Assignment(empty, empty, np.arange(n_rows), np.arange(n_columns))
    _, column_of_row, row_of_column = lap.lapjv(
        np.ascontiguousarray(cost, dtype=np.float64), extend_cost=True, cost_limit=max_cost
    )
    rows = np.flatnonzero(column_of_row >= 0)
    return Assignment(
        rows=rows,
        columns=column_of_row[rows].astype(np.int64),
        unmatched_rows=np.flatnonzero(column_of_row < 0),
        unmatched_columns=np.flatnonzero(row_of_column < 0),
    )
