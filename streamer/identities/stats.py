"""What the identities stage has done so far, counted by the components that do it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IdentityStats:
    face_detections: int = 0
    face_embeddings: int = 0
    reid_embeddings: int = 0
    identity_events: int = 0
    failures: int = 0
