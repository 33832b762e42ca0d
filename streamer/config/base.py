"""The base of every configuration section, and the small pieces several sections share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo


class Section(BaseModel):
    """Unknown keys are errors and defaults are validated, in every section."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


MAX_DELAY_S = 86400.0  # a day: longer waits overflow the platform's timers, and help nobody


class BackoffConfig(Section):
    """Capped exponential backoff between attempts (cameras reconnecting, brokers connecting)."""

    initial_delay_s: float = Field(
        0.5, gt=0, le=MAX_DELAY_S, description="Delay before the first reconnect attempt."
    )
    max_delay_s: float = Field(
        30.0, gt=0, le=MAX_DELAY_S, description="Cap on the exponential reconnect delay."
    )
    multiplier: float = Field(
        2.0, ge=1, le=100, description="Growth of the delay after each failed attempt."
    )


class LocatedError(ValueError):
    """A validation error about one key below the model that raised it: `loc` is relative to it,
    so the loader names the exact key (the second of two duplicate names, say)."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def on_off(value: Any) -> Any:
    """YAML reads an unquoted `off`/`on` as a boolean; take it as meant."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


@dataclass(frozen=True)
class Registered:
    """The names the service has components for (`streamer.assembly`): validation given these
    refuses others with the file, line and key. A config built in code without them is checked
    when its components are built instead."""

    url_schemes: frozenset[str]
    detector_families: frozenset[str]


REGISTERED_CONTEXT = "registered"


def registered(info: ValidationInfo) -> Registered | None:
    """The `Registered` names a validation was given, if any."""
    value = (info.context or {}).get(REGISTERED_CONTEXT)
    return value if isinstance(value, Registered) else None
