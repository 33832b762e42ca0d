"""Which MQTT commands may switch a camera: the cameras the operator listed, at a bounded rate.

A broker gives its subscribers no way to know who published, so the command names its sender in
the topic, `{prefix}/{camera}/enabled/set/{client id}`, and the broker's ACL makes that name true
(mosquitto: `pattern write streamer/+/enabled/set/%c`, and no write access to the bare
`.../enabled/set`). The client id is logged with every switch; a command on the bare topic
(Frigate's) is logged as from an unknown client.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

log = logging.getLogger(__name__)

ANY_CAMERA = "*"
WINDOW_S = 60.0
UNKNOWN_CLIENT = "unknown client (bare .../enabled/set topic)"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


class SwitchGate:
    """Admits a switch command or says why not: camera not listed, or too many switches lately."""

    def __init__(
        self,
        cameras: Collection[str],
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cameras = frozenset(cameras)
        self.per_minute = per_minute
        self.refused = 0
        self._clock = clock
        self._recent: deque[float] = deque()

    def controls(self, camera: str) -> bool:
        """Whether MQTT may switch this camera (publishing.mqtt.camera_control)."""
        return ANY_CAMERA in self.cameras or camera in self.cameras

    def admit(self, camera: str) -> Verdict:
        """Count a switch that would change a camera, if it is allowed now."""
        if not self.controls(camera):
            self.refused += 1
            return Verdict(False, "the camera is not in publishing.mqtt.camera_control")
        now = self._clock()
        while self._recent and now - self._recent[0] >= WINDOW_S:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            self.refused += 1
            return Verdict(False, (
                f"more than {self.per_minute} switches in a minute "
                "(publishing.mqtt.camera_control_per_minute)"
            ))
        self._recent.append(now)
        return Verdict(True)
