"""Where research-licensed weights and footage live: beside the project, never inside it."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV_VAR = "STREAMER_ASSETS"
ASSETS_FOLDER = "shared"


def assets_dir(override: str | Path | None = None, start: str | Path | None = None) -> Path:
    """The assets folder: `override` (the `assets_dir` setting), then $STREAMER_ASSETS, then the
    nearest folder named `shared` in `start` (the config file's folder; default the working
    directory) or above it, so a `shared/` beside a checkout serves every config inside it."""
    if override is not None:
        return Path(override).expanduser().resolve()
    from_env = os.environ.get(ASSETS_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser().resolve()
    base = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (base, *base.parents):
        if (folder / ASSETS_FOLDER).is_dir():
            return (folder / ASSETS_FOLDER).resolve()
    return base / ASSETS_FOLDER


def user_cache_dir() -> Path:
    """Per-user cache for fetched weights ($XDG_CACHE_HOME/streamer)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer"
