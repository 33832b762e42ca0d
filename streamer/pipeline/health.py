"""Each camera's one honest state, derived from what its source reports, frames and processing.

The source knows connecting, streaming, backoff, failed, finished and stopped. Only the pipeline
can tell that a `streaming` camera has stalled (no frame decoded for `stall_after_s`) or is
degraded (frames are handed over but no result came out for `stall_after_s`, or the inference
server is down). A watchdog re-evaluates every camera periodically and at each source change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from streamer.core.redaction import scrub
from streamer.core.stats import CameraState, CameraStats, ServerStats

log = logging.getLogger(__name__)

QUIET_STATES = {CameraState.CONNECTING, CameraState.STREAMING, CameraState.FINISHED, CameraState.STOPPED}
StateCallback = Callable[[CameraStats], None]


def derive_state(
    stats: CameraStats, server: ServerStats | None, stall_after_s: float, now: float
) -> tuple[CameraState, str | None]:
    """The camera's state and a one-line reason for any state that is not fine."""
    source = stats.source_state
    if source in (CameraState.BACKOFF, CameraState.FAILED):
        return source, stats.last_error
    if source != CameraState.STREAMING:
        return source, None
    since_frame = now - max(stats.last_decoded_monotonic or 0.0, stats.source_state_since)
    if since_frame >= stall_after_s:
        return CameraState.STALLED, f"no frame decoded for {since_frame:.0f} s"
    if server is not None and not server.up:
        return CameraState.DEGRADED, f"inference server down: {server.last_error or 'unreachable'}"
    handed = stats.last_handed_monotonic
    if handed is not None and now - handed < stall_after_s:
        last_result = max(stats.last_result_monotonic or 0.0, stats.source_state_since)
        if now - last_result >= stall_after_s:
            return CameraState.DEGRADED, f"frames arrive but none processed for {now - last_result:.0f} s"
    return CameraState.STREAMING, None


class CameraWatchdog:
    """Keeps `CameraStats.state`/`detail` true; calls `on_change` once per state change."""

    def __init__(
        self,
        stall_after_s: float,
        server: Callable[[], ServerStats | None],
        on_change: StateCallback,
        secrets: list[str],
    ) -> None:
        self._stall_after_s = stall_after_s
        self._server = server
        self._on_change = on_change
        self._secrets = secrets

    def learn_secrets(self, secrets: list[str]) -> None:
        """A camera added at runtime: its credentials are hidden from the start too."""
        known = set(self._secrets)
        self._secrets = sorted(known | set(secrets), key=len, reverse=True)

    def evaluate(self, stats: CameraStats, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        state, detail = derive_state(stats, self._server(), self._stall_after_s, now)
        detail = scrub(detail, self._secrets)
        if state == stats.state:
            stats.detail = detail  # the reason may sharpen (seconds stalled) without news
            return
        previous, stats.state, stats.detail = stats.state, state, detail
        level = logging.INFO if state in QUIET_STATES else logging.WARNING
        log.log(
            level, "camera %s: %s -> %s%s", stats.name, previous.value, state.value,
            f" ({detail})" if detail else "",
        )
        self._on_change(stats)
