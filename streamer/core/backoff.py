"""Capped exponential backoff, the one implementation every retry loop uses (cameras, brokers, Triton)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class BackoffSettings(Protocol):
    """What a backoff needs; `streamer.config.BackoffConfig` and its subclasses provide it."""

    @property
    def initial_delay_s(self) -> float: ...

    @property
    def max_delay_s(self) -> float: ...

    @property
    def multiplier(self) -> float: ...


@dataclass
class Backoff:
    """Capped exponential delay between attempts; `reset()` after a success."""

    settings: BackoffSettings
    attempts: int = 0
    _delay: float = 0.0

    def next_delay(self) -> float:
        if self.attempts == 0:
            self._delay = self.settings.initial_delay_s
        else:
            self._delay = self._delay * self.settings.multiplier
        self.attempts += 1
        self._delay = min(self._delay, self.settings.max_delay_s)
        return self._delay

    def reset(self) -> None:
        self.attempts = 0
