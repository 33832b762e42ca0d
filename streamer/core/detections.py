"""Struct-of-arrays detections passed between stages (the supervision layout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Detections:
    """N boxes in frame pixels with per-box arrays; `data` carries stage-specific extras."""

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    tracker_id: IntArray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must be (N, 4), got {self.xyxy.shape}")
        for name, arr in (("confidence", self.confidence), ("class_id", self.class_id)):
            if len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows, expected {n}")
        if self.tracker_id is not None and len(self.tracker_id) != n:
            raise ValueError(f"tracker_id has {len(self.tracker_id)} rows, expected {n}")
        for key, arr in self.data.items():
            if len(arr) != n:
                raise ValueError(f"data[{key!r}] has {len(arr)} rows, expected {n}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int64),
        )

    @classmethod
    def merge(cls, parts: list[Detections], empty: Detections | None = None) -> Detections:
        """One set from several (e.g. faces found in several regions of a frame).

        Every non-empty part must carry the same `data` keys and tracker ids or none; with no
        non-empty part the result is `empty` (which keeps the caller's data columns).
        """
        parts = [p for p in parts if len(p)]
        if not parts:
            return empty if empty is not None else cls.empty()
        ids = [p.tracker_id for p in parts]
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            tracker_id=None if any(i is None for i in ids) else np.concatenate(ids),  # type: ignore[arg-type]
            data={k: np.concatenate([p.data[k] for p in parts]) for k in parts[0].data},
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select rows by boolean mask, integer array or slice; keeps every per-box array aligned."""
        if isinstance(index, int):
            index = [index]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            data={k: v[index] for k, v in self.data.items()},
        )
