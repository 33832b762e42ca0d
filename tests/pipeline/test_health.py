"""`derive_state` (a pure function of the stats and the clock) and the watchdog built on it."""

from __future__ import annotations

import logging

import pytest

from streamer.core.stats import CameraState, CameraStats, ServerStats
from streamer.pipeline.health import CameraWatchdog, derive_state

STALL_S = 10.0
T0 = 1000.0  # the source said `streaming` at this (monotonic) time


def streaming(**fields: object) -> CameraStats:
    stats = CameraStats("cam", "rtsp://***@camera/stream", source_state=CameraState.STREAMING,
                        source_state_since=T0)
    for name, value in fields.items():
        setattr(stats, name, value)
    return stats


def server(up: bool = True, last_error: str | None = None) -> ServerStats:
    return ServerStats(url="localhost:8001", mode="external", up=up, last_error=last_error)


def state_at(
    stats: CameraStats, now: float, server_stats: ServerStats | None = None
) -> tuple[CameraState, str | None]:
    return derive_state(stats, server_stats if server_stats is not None else server(), STALL_S, now)


# -- streaming and stalled ------------------------------------------------------------------------


def test_frames_flowing_and_processed_is_streaming() -> None:
    stats = streaming(last_decoded_monotonic=T0 + 59, last_handed_monotonic=T0 + 59,
                      last_result_monotonic=T0 + 58)
    assert state_at(stats, T0 + 60) == (CameraState.STREAMING, None)


def test_no_server_stats_at_all_is_no_degradation() -> None:
    stats = streaming(last_decoded_monotonic=T0 + 1)
    assert derive_state(stats, None, STALL_S, T0 + 2) == (CameraState.STREAMING, None)


def test_streaming_stalls_after_stall_after_s_without_a_decoded_frame() -> None:
    stats = streaming(last_decoded_monotonic=T0 + 5)
    assert state_at(stats, T0 + 5 + STALL_S - 0.1) == (CameraState.STREAMING, None)
    state, reason = state_at(stats, T0 + 5 + STALL_S + 2)
    assert state == CameraState.STALLED
    assert reason == "no frame decoded for 12 s"


def test_a_fresh_stream_gets_stall_after_s_for_its_first_frame() -> None:
    # counted from when the source said `streaming`, not from a frame of an earlier connection
    stats = streaming(last_decoded_monotonic=T0 - 500)
    assert state_at(stats, T0 + STALL_S - 0.1) == (CameraState.STREAMING, None)
    assert state_at(stats, T0 + STALL_S)[0] == CameraState.STALLED
    never = streaming()
    assert state_at(never, T0 + 1) == (CameraState.STREAMING, None)
    assert state_at(never, T0 + STALL_S + 1)[0] == CameraState.STALLED


# -- degraded -------------------------------------------------------------------------------------


def test_inference_server_down_degrades_a_streaming_camera() -> None:
    stats = streaming(last_decoded_monotonic=T0 + 1, last_handed_monotonic=T0 + 1,
                      last_result_monotonic=T0 + 1)
    state, reason = state_at(stats, T0 + 2, server(up=False, last_error="connection refused"))
    assert state == CameraState.DEGRADED
    assert reason == "inference server down: connection refused"
    assert state_at(stats, T0 + 2, server(up=False))[1] == "inference server down: unreachable"


def test_frames_handed_over_without_results_for_stall_after_s_is_degraded() -> None:
    # inference failing: frames keep arriving, the last result is 15 s old
    stats = streaming(last_decoded_monotonic=T0 + 30, last_handed_monotonic=T0 + 30,
                      last_result_monotonic=T0 + 15.5)
    state, reason = state_at(stats, T0 + 30.5)
    assert state == CameraState.DEGRADED
    assert reason == "frames arrive but none processed for 15 s"
    recent = streaming(last_decoded_monotonic=T0 + 30, last_handed_monotonic=T0 + 30,
                       last_result_monotonic=T0 + 21)
    assert state_at(recent, T0 + 30.5) == (CameraState.STREAMING, None)


def test_no_result_yet_is_fine_until_stall_after_s_of_streaming() -> None:
    stats = streaming(last_decoded_monotonic=T0 + 5, last_handed_monotonic=T0 + 5)
    assert state_at(stats, T0 + 5.5) == (CameraState.STREAMING, None)
    stats.last_decoded_monotonic = stats.last_handed_monotonic = T0 + STALL_S + 1
    assert state_at(stats, T0 + STALL_S + 1.5)[0] == CameraState.DEGRADED


# -- states the source reports pass through ---------------------------------------------------------


@pytest.mark.parametrize("state", [CameraState.BACKOFF, CameraState.FAILED])
def test_backoff_and_failed_pass_through_with_the_last_error(state: CameraState) -> None:
    stats = streaming(source_state=state, last_error="FileNotFoundError: no such file: a.mp4",
                      last_decoded_monotonic=T0 - 100)
    assert state_at(stats, T0 + 100, server(up=False)) == (state, "FileNotFoundError: no such file: a.mp4")


@pytest.mark.parametrize("state", [CameraState.CONNECTING, CameraState.FINISHED, CameraState.STOPPED])
def test_connecting_finished_and_stopped_pass_through_without_a_reason(state: CameraState) -> None:
    # an ended file decodes nothing and may have an old error: neither stalled nor degraded
    stats = streaming(source_state=state, last_error="undecodable packet skipped",
                      last_decoded_monotonic=T0 - 100, last_handed_monotonic=T0 - 100)
    assert state_at(stats, T0 + 100, server(up=False)) == (state, None)


# -- the watchdog -----------------------------------------------------------------------------------


def test_watchdog_reports_each_change_once_with_secrets_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[tuple[CameraState, str | None]] = []
    watchdog = CameraWatchdog(
        stall_after_s=STALL_S,
        server=lambda: server(),
        on_change=lambda stats: changes.append((stats.state, stats.detail)),
        secrets=["rtsp://user:hunter2@camera/stream", "hunter2"],
    )
    stats = streaming(last_decoded_monotonic=T0 + 1)
    caplog.set_level(logging.INFO, logger="streamer.pipeline.health")
    watchdog.evaluate(stats, now=T0 + 2)
    watchdog.evaluate(stats, now=T0 + 3)  # no news
    watchdog.evaluate(stats, now=T0 + 1 + STALL_S + 1)
    watchdog.evaluate(stats, now=T0 + 1 + STALL_S + 5)  # still stalled: the reason sharpens quietly
    assert stats.detail == "no frame decoded for 15 s"
    stats.source_state, stats.last_error = CameraState.BACKOFF, "TimeoutError: rtsp://user:hunter2@camera/stream"
    watchdog.evaluate(stats, now=T0 + 20)
    assert changes == [
        (CameraState.STREAMING, None),
        (CameraState.STALLED, "no frame decoded for 11 s"),
        (CameraState.BACKOFF, "TimeoutError: ***"),
    ]
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "streamer.pipeline.health"]
    assert [level for level, _ in levels] == [logging.INFO, logging.WARNING, logging.WARNING]
    assert all("hunter2" not in message for _, message in levels)
