"""`streamer stats` reads the state through its model: a state prints as the table, an answer that
is not one is a one-line error naming the field (the full run against a live service is in
tests/metrics/test_dashboard_browser.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from streamer.core.stats import CameraState
from streamer.metrics.state import ApiAccess, CameraFigures, ServiceState, SinkFigures


@pytest.fixture
async def answering() -> AsyncIterator[tuple[str, list[Any]]]:
    """A stand-in service whose /api/state answers the JSON the test puts in the list."""
    answers: list[Any] = []

    async def state(_request: web.Request) -> web.Response:
        return web.json_response(answers[-1])

    app = web.Application()
    app.router.add_get("/api/state", state)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        await runner.cleanup()


async def stats_once(url: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer.cli", "stats", "--once", "--url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_a_state_prints_as_the_camera_and_sink_tables(answering: tuple[str, list[Any]]) -> None:
    url, answers = answering
    state = ServiceState(
        time=0.0, uptime_s=12.0, sample_interval_s=1.0, live_view_interval_s=0.5,
        metrics_enabled=True, api=ApiAccess(enabled=False, mutations=False), events_enabled=False,
        cameras=[CameraFigures(name="gate", source="rtsp://***@10.0.0.9/", status=CameraState.STALLED,
                               processed_fps=4.5, dropped=1234, quality=0.5)],
        sinks=[SinkFigures(name="mqtt", connected=False, published=7)],
    )
    answers.append(state.model_dump(mode="json"))

    code, out, err = await stats_once(url)

    assert (code, err) == (0, "")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["gate"][:3] == ["gate", "stalled", "4.5"]
    assert "1,234" in rows["gate"] and rows["gate"][-1] == "50%"
    assert rows["mqtt"][:3] == ["mqtt", "DISCONNECTED", "7"]


async def test_an_answer_that_is_not_a_state_is_one_line_naming_the_field(
    answering: tuple[str, list[Any]]
) -> None:
    url, answers = answering
    answers.append({"version": 1, "time": 0, "uptime_s": 1, "sample_interval_s": 1,
                    "live_view_interval_s": 1, "metrics_enabled": True, "events_enabled": False,
                    "api": {"enabled": False, "mutations": False},
                    "cameras": [{"name": "gate", "source": "x", "status": "asleep"}]})

    code, out, err = await stats_once(url)

    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1, err
    assert "/api/state: not a streamer state (cameras.0.status:" in err
