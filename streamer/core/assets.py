"""Where research-licensed weights and footage live: beside the project, never inside it."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV_VAR = "STREAMER_ASSETS"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def assets_dir(override: str | Path | None = None) -> Path:
    """Resolve the assets folder: explicit setting, then $STREAMER_ASSETS, then ../shared."""
    if override is not None:
        return Path(override).expanduser().resolve()
    from_env = os.environ.get(ASSETS_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared").resolve()


def user_cache_dir() -> Path:
    """Per-user cache for fetched weights ($XDG_CACHE_HOME/streamer)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer"
