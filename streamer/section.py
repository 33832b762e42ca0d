"""The base of every configuration section: unknown keys are errors, defaults are validated.

Its own module so that stage folders (publishing, metrics, identities) can define their sections
without importing `streamer.config`, which imports them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
