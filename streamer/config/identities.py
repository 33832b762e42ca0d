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
# Default threshold in the calibrated space (camera bias removed) for a camera pair with too few
# negatives yet, per catalogue ReID model: measured with `streamer identities evaluate` on the
# calibration half (16 people, seed 0) of a real two-camera set (PKU-Reid), never on the people
# reported (docs/identities.md).
CALIBRATED_THRESHOLDS: dict[str, float] = {"person_reid": 0.45, "person_reid_retail": 0.6}
DEFAULT_CALIBRATED_THRESHOLD = 0.45
# One camera's different people look more alike than two cameras' (same viewpoint, light and
# background): on the calibration halves above, up to 0.71 against 0.47 across the two cameras.
SAME_CAMERA_THRESHOLD = 0.8


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


class CalibrationConfig(Section):
    """How the gallery learns a site's cameras (see docs/identities.md)."""

    enabled: bool = Field(
        True,
        description="Remove each camera's bias and decide per camera pair from the site's own "
        "tracks; false compares raw embeddings against `match_threshold` only.",
    )
    min_camera_tracks: int = Field(
        10, ge=1, description="Tracks a camera must have seen before its bias is removed."
    )
    default_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Calibrated similarity from which two tracks of a camera pair with too few "
        "negatives may be one person. None = the ReID model's measured default: "
        + ", ".join(f"{m} {t}" for m, t in CALIBRATED_THRESHOLDS.items())
        + f", {DEFAULT_CALIBRATED_THRESHOLD} for another model.",
    )
    min_views_to_link: int = Field(
        1,
        ge=1,
        description="Views a track's embedding must fold in before it links to anybody; until "
        "then it holds an id of its own (tracks are embedded again on a clearly better view or "
        "every `refresh_interval_s`, so more than 1 delays links).",
    )
    same_camera_threshold: float = Field(
        SAME_CAMERA_THRESHOLD,
        ge=-1,
        le=1,
        description="Calibrated similarity from which a track may be a person seen before on the "
        "same camera, while that camera has too few negatives of its own.",
    )
    min_negatives: int = Field(
        30,
        ge=1,
        description="Pairs of tracks seen at once (different people) a camera pair needs before "
        "its threshold comes from them.",
    )
    negative_quantile: float = Field(
        0.99, gt=0, le=1, description="A pair's threshold sits at this quantile of its negatives..."
    )
    negative_sigmas: float = Field(
        3.0,
        ge=0,
        le=10,
        description="...or at their mean plus this many standard deviations, if higher (the "
        "tail of a few negatives is uncertain)...",
    )
    margin_over_negatives: float = Field(0.03, ge=0, le=1, description="...plus this.")
    min_threshold: float = Field(0.2, ge=-1, le=1, description="A calibrated threshold is never below this.")
    max_threshold: float = Field(0.8, ge=-1, le=1, description="...nor above this.")
    max_pairs: int = Field(
        2000, ge=10, description="Negatives and positives kept per camera pair (the newest)."
    )
    min_transits: int = Field(
        5, ge=1, description="Transit times a camera pair needs before they constrain links."
    )
    transit_slack_low: float = Field(
        0.5, ge=0, le=1, description="A transit faster than this share of the fastest seen is implausible."
    )
    transit_slack_high: float = Field(
        2.0, ge=1, description="A transit slower than this multiple of the slowest seen..."
    )
    transit_slack_s: float = Field(10.0, ge=0, description="...plus this many seconds is implausible.")
    implausible_transit_penalty: float = Field(
        0.1,
        ge=0,
        le=2,
        description="An implausible transit needs this much more similarity to link.",
    )
    confident_margin: float = Field(
        0.15,
        ge=0,
        le=2,
        description="A link this far above its pair's threshold teaches the pair's transit time.",
    )


class GalleryConfig(Section):
    backend: Literal["memory"] = Field(
        "memory", description="Where the cross-camera gallery lives (in-process for now)."
    )
    margin: float = Field(
        0.05,
        ge=0,
        le=2,
        description="A track links to the most similar person only when that person is this "
        "much more similar than the next one (a near tie is left unlinked).",
    )
    mutual: bool = Field(
        True,
        description="A track links to a person only when it is also that person's most similar "
        "track on the track's camera (mutual best match).",
    )
    overlapping_cameras: list[list[str]] = Field(
        default_factory=list,
        description="Groups of cameras whose views overlap (one person may be on both at once): "
        "their simultaneous tracks are not taken as two people.",
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig,
        description="Per-site calibration: camera bias, per-pair thresholds, transit times.",
    )
    match_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Raw ReID cosine similarity from which a track joins an existing global id, "
        "for cameras not calibrated yet (or all, with calibration off). "
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
        """The configured raw threshold, else the measured default of the ReID model."""
        if self.match_threshold is not None:
            return self.match_threshold
        return REID_MATCH_THRESHOLDS.get(model or "", DEFAULT_REID_MATCH_THRESHOLD)

    def calibrated_threshold_for(self, model: str | None) -> float:
        """The configured calibrated default threshold, else the ReID model's measured one."""
        if self.calibration.default_threshold is not None:
            return self.calibration.default_threshold
        return CALIBRATED_THRESHOLDS.get(model or "", DEFAULT_CALIBRATED_THRESHOLD)


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
