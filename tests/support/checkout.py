"""The source checkout the tests run from: its sample clip and the package's shipped configs."""

from __future__ import annotations

from pathlib import Path

from streamer.inference.repository import CONFIG_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CLIP = REPO_ROOT / "sample_videos" / "vtest_pedestrians.mp4"
SHIPPED_CONFIGS = REPO_ROOT / "streamer" / "inference" / "model_configs"


def shipped_config_file(model: str) -> Path:
    """The `config.pbtxt` the package ships for `model`, in this checkout."""
    return SHIPPED_CONFIGS / model / CONFIG_FILE
