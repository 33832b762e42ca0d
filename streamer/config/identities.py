"""The `faces`, `reid` and `identities` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from streamer.config.base import Section

FaceMode = Literal["frame", "regions", "off"]
# Default `gallery.match_threshold` per catalogue ReID model: measured on MOT17-mini ground-truth
# crops by `python -m studies.reid_threshold`, the lowest similarity with 99.9% pair
# precision at which its two-camera gallery gives no two people one id (mixing two people is
# worse than giving one person two ids).
REID_MATCH_THRESHOLDS: dict[str, float] = {"person_reid": 0.86, "person_reid_retail": 0.93}
DEFAULT_REID_MATCH_THRESHOLD = 0.86  # another model: OSNet's, the catalogue default


class FacesConfig(Section):
    enabled: bool = Field(False, description="Detect faces, embed them per track, match enrolled.")
    detector_model: str = Field("face_detector", description="SCRFD model in the repository.")
    embedder_model: str = Field("face_embedder", description="ArcFace-family model in the repository.")
    mode: FaceMode = Field(
        "frame",
        description="'frame' runs the detector on whole frames; 'regions' on the upper part of "
        "each confirmed person box (small faces in wide views); 'off' disables it.",
    )
    camera_modes: dict[str, FaceMode] = Field(
        default_factory=dict, description="Per-camera override of `mode`, by camera name."
    )
    every_n_frames: int = Field(
        1, ge=1, description="Run face detection on every n-th frame of a camera."
    )
    score_threshold: float = Field(0.5, ge=0, le=1, description="Lowest face score kept.")
    nms_iou_threshold: float = Field(0.4, gt=0, le=1, description="IoU above which NMS merges.")
    max_faces: int = Field(50, ge=1, description="Upper bound of faces kept per frame or region.")
    region_height_fraction: float = Field(
        0.5, gt=0, le=1, description="'regions': top fraction of the person box searched."
    )
    region_margin: float = Field(
        0.1, ge=0, le=1, description="'regions': box growth on each side, fraction of its width."
    )
    max_regions_per_frame: int = Field(
        4, ge=1, description="'regions': persons searched per frame, least recently searched first."
    )
    head_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A face belongs to a person whose box contains its centre within this top "
        "fraction of the box.",
    )
    min_face_px: float = Field(
        24.0, ge=0, description="Faces whose shorter side is smaller are shown but not embedded."
    )
    good_face_px: float = Field(
        96.0, gt=0, description="Face size at which a bigger face no longer improves quality."
    )
    sharp_laplacian_variance: float = Field(
        150.0,
        gt=0,
        description="Variance of the Laplacian of the aligned crop regarded as fully sharp.",
    )
    min_quality: float = Field(
        0.25, ge=0, le=1, description="Views below this quality (0..1) are not embedded."
    )
    match_threshold: float = Field(
        0.4,
        ge=-1,
        le=1,
        description="Cosine similarity to an enrolled face above which the track takes its name "
        "(demo MobileFaceNet: same person ~0.72, different ~0.03, max seen 0.32).",
    )


class ReidConfig(Section):
    enabled: bool = Field(False, description="Embed tracked people for cross-camera identities.")
    model: str = Field(
        "person_reid",
        description="ReID model in the repository: 'person_reid' (OSNet) or 'person_reid_retail' "
        "(Intel 0288, Apache-2.0).",
    )
    min_height_px: float = Field(64.0, ge=0, description="Smaller person boxes are not embedded.")
    good_height_px: float = Field(
        192.0, gt=0, description="Box height at which a taller box no longer improves quality."
    )
    edge_margin_px: float = Field(
        2.0, ge=0, description="A box this close to the frame border is cut off: lower quality."
    )
    min_quality: float = Field(
        0.25, ge=0, le=1, description="Views below this quality (0..1) are not embedded."
    )


class GalleryConfig(Section):
    backend: Literal["memory"] = Field(
        "memory", description="Where the cross-camera gallery lives (in-process for now)."
    )
    match_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="ReID cosine similarity from which a track joins an existing global id. "
        "None = the ReID model's measured default: "
        + ", ".join(f"{m} {t}" for m, t in REID_MATCH_THRESHOLDS.items())
        + f", {DEFAULT_REID_MATCH_THRESHOLD} for another model (`python -m "
        "studies.reid_threshold` on MOT17 ground-truth crops: the lowest value with "
        "99.9% pair precision that gives no two people one id; OSNet x0.25 at 0.7 had 82.5% "
        "precision). Re-measure with production weights.",
    )
    window_s: float = Field(
        600.0,
        gt=0,
        description="A track is matched against people seen this recently; entries not sighted "
        "for this long are forgotten, also those of a camera that stopped.",
    )
    max_entries: int = Field(10_000, ge=1, description="Oldest entries are dropped beyond this.")

    def threshold_for(self, model: str | None) -> float:
        """The configured threshold, else the measured default of the ReID model."""
        if self.match_threshold is not None:
            return self.match_threshold
        return REID_MATCH_THRESHOLDS.get(model or "", DEFAULT_REID_MATCH_THRESHOLD)


class IdentitiesConfig(Section):
    confirm_frames: int = Field(
        3, ge=1, description="A track is embedded once it has been seen in this many frames."
    )
    better_view_margin: float = Field(
        0.25, ge=0, description="Embed again when a view's quality beats the best by this fraction."
    )
    refresh_interval_s: float = Field(
        10.0, gt=0, description="Embed again after this long even without a better view."
    )
    min_embedding_change: float = Field(
        0.02,
        ge=0,
        le=2,
        description="Cosine distance the track embedding must move for a new identity event.",
    )
    faces_store: Path = Field(
        Path("data/faces.npz"),
        description="Enrolled faces (biometric data; `streamer faces enroll`), written 0600 in a "
        "folder created 0700; beside the config file by default (`streamer faces` without "
        "`--config`: in the working directory). The service logs the store it reads at start.",
    )
    gallery: GalleryConfig = Field(
        default_factory=GalleryConfig, description="Cross-camera identities from ReID embeddings."
    )
