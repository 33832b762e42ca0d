"""The `detector` section: the person detector and its postprocessing."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from streamer.config.base import Section, registered


class DetectorConfig(Section):
    family: str = Field(
        "yolox",
        description="The detector's model family: how its input is made and its output decoded "
        "(yolox: YOLOX and ByteTrack's detectors).",
    )
    model: str = Field("person_detector", description="Model name in the model repository.")
    score_threshold: float = Field(
        0.1, ge=0, le=1, description="Lowest score kept; ByteTrack uses low-score boxes too."
    )
    nms_iou_threshold: float = Field(0.45, gt=0, le=1, description="IoU above which NMS merges.")
    class_ids: list[int] = Field(
        default_factory=lambda: [0],
        description="Classes kept (0=person); each must be below the classes the prepared model "
        "keeps (1 by default: `streamer models prepare person_detector --classes N`).",
    )
    max_detections: int = Field(300, ge=1, description="Upper bound of boxes kept per frame.")

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str, info: ValidationInfo) -> str:
        known = registered(info)
        if known is not None and family not in known.detector_families:
            raise ValueError(
                f"unknown detector family '{family}' (known: {', '.join(sorted(known.detector_families))})"
            )
        return family
