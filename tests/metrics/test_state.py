"""The `/api/state` document: its published schema, what the server sends, and the reads checked.

The schema file in the package is the models' schema (like docs/configuration.md and the config
models); the server serves that file and sends nothing it does not declare; the checker the browser
tests use to hold the dashboard to the schema finds undeclared reads.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any

import aiohttp
import jsonschema
import pytest

from streamer.config import StreamerConfig
from streamer.core.stats import (
    AnalyticsStats,
    CameraState,
    CameraStats,
    ModelStats,
    ServerStats,
    SinkStats,
    StatsKind,
    StatsRegistry,
)
from streamer.metrics.service import MetricsService
from streamer.metrics.state import SCHEMA_FILE, ServiceState, state_schema
from tests.metrics.state_reads import undeclared_reads

TOKEN = "state-token"


def published() -> dict[str, Any]:
    return dict(json.loads(resources.files("streamer.metrics").joinpath(SCHEMA_FILE).read_text()))


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every object closed to properties it does not declare (maps stay open)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def test_the_published_schema_is_the_models_schema() -> None:
    assert published() == state_schema(), (
        "run: python -m streamer.metrics.state > streamer/metrics/state.schema.json"
    )


def busy_registry() -> StatsRegistry:
    """Every kind of figure the state shows: cameras in two states, a model, the server, a sink,
    a zone and a line."""
    stats = StatsRegistry()
    stats.register(StatsKind.SERVER, "triton", ServerStats(url="triton:8001", mode="external", up=True))
    stats.register(StatsKind.MODEL, "person_detector",
                   ModelStats("person_detector", requests_in_flight=2, requests=40, items=80))
    stats.register(StatsKind.CAMERA, "north", CameraStats(
        "north", "rtsp://***@10.0.0.9/north", state=CameraState.STREAMING, decoded=120, processed=118,
        motion_gated=True, gated=30, motion_area=0.125,
    ))
    stats.register(StatsKind.CAMERA, "south", CameraStats(
        "south", "rtsp://10.0.0.9/south", state=CameraState.BACKOFF, detail="connection refused",
        reconnects=3,
    ))
    stats.register(StatsKind.SINK, "jsonl", lambda: SinkStats(published=118, buffered=2))
    stats.register(StatsKind.ANALYTICS, "analytics", AnalyticsStats(
        occupancy={("north", "bay"): 2},
        zone_events={("north", "bay", "zone_enter"): 5},
        line_crossings={("north", "door", "in"): 4, ("north", "door", "out"): 1},
    ))
    return stats


async def test_the_state_sent_is_declared_by_the_schema_it_serves() -> None:
    config = StreamerConfig.model_validate({
        "dashboard": {"port": 0, "token": TOKEN},
        "cameras": [{"name": name, "url": f"rtsp://10.0.0.9/{name}"} for name in ("north", "south")],
    })
    service = MetricsService(config, busy_registry())
    await service.start()
    try:
        await service.sampler.sample()
        await service.sampler.sample()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            async with session.get(f"{service.url}/api/state/schema") as response:
                assert response.status == 200
                served_schema = json.loads(await response.read())
            async with session.get(f"{service.url}/api/state") as response:
                state = await response.json()
    finally:
        await service.stop()

    assert served_schema == published()
    jsonschema.Draft202012Validator(closed(served_schema)).validate(state)
    cameras = {camera["name"]: camera for camera in state["cameras"]}
    assert (cameras["north"]["status"], cameras["south"]["status"]) == ("streaming", "backoff")
    assert [change["status"] for change in cameras["south"]["state_history"]] == ["backoff"]
    assert cameras["north"]["analytics"] == {
        "zones": {"bay": {"occupancy": 2, "events": {"zone_enter": 5}}},
        "lines": {"door": {"in": 4, "out": 1}},
    }
    assert state["sinks"] == [{"name": "jsonl", "connected": True, "published": 118, "buffered": 2,
                               "dropped": 0, "errors": 0}]
    assert ServiceState.model_validate(state).cameras[1].status is CameraState.BACKOFF


@pytest.mark.parametrize(
    ("reads", "undeclared"),
    [
        ([["cameras", "[]", "processed_fps"], ["api", "mutations"], ["inference", "down_for_s"]], []),
        ([["cameras", "[]", "analytics", "zones", "any zone", "occupancy"]], []),  # a map: any key
        ([["cameras", "[]", "history", "latency_ms", "[]"]], []),
        ([["cameras", "[]", "fps"]], ["cameras.[].fps"]),
        ([["cameras", "name"]], ["cameras.name"]),  # an array has no properties
        ([["cameras", "[]", "analytics", "zones", "bay", "inside"]],
         ["cameras.[].analytics.zones.bay.inside"]),
        ([["uptime_s", "[]"]], ["uptime_s.[]"]),
        ([["inference", "mode", "length"]], ["inference.mode.length"]),
    ],
)
def test_reads_outside_the_schema_are_found(reads: list[list[str]], undeclared: list[str]) -> None:
    assert undeclared_reads(reads, published()) == undeclared


STATIC = resources.files("streamer.metrics").joinpath("static")
# In the page's modules these names hold parts of the state and nothing else, so every property read
# through them is checked, the branches a browser run does not reach included (an inference server
# down, a camera's failure detail, motion gating).
STATE_NAMES = {
    "state": "ServiceState", "camera": "CameraFigures", "model": "ModelFigures",
    "sink": "SinkFigures", "inference": "InferenceFigures", "change": "StateChange",
}
COMMENT_OR_STRING = re.compile(r'//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')
STATE_READ = re.compile(rf"(?<![\w.$])({'|'.join(STATE_NAMES)})\??\.(\w+)")


def test_the_page_modules_read_only_declared_fields_through_their_state_names() -> None:
    schema = published()
    declared = {
        name: set(schema["properties"] if name == "ServiceState" else schema["$defs"][name]["properties"])
        for name in STATE_NAMES.values()
    }
    modules = [entry for entry in STATIC.iterdir() if entry.name.endswith(".js")]
    reads = [
        (module.name, match.group(1), match.group(2))
        for module in modules
        for match in STATE_READ.finditer(COMMENT_OR_STRING.sub('""', module.read_text()))
    ]
    assert len({(name, field) for _, name, field in reads}) >= 40, "the pattern finds the reads"
    undeclared = [
        f"{module}: {name}.{field}" for module, name, field in reads
        if field not in declared[STATE_NAMES[name]]
    ]
    assert undeclared == []


def test_the_camera_states_the_page_tells_apart_are_the_schemas() -> None:
    states = set(published()["$defs"]["CameraState"]["enum"])
    widgets = (STATIC / "widgets.js").read_text()
    overlay = widgets[widgets.index("function overlayText"):]
    overlay = overlay[:overlay.index("\n}\n")]
    pages = "".join(entry.read_text() for entry in STATIC.iterdir() if entry.name.endswith(".js"))
    named = set(re.findall(r'case "(\w+)":', overlay)) | set(re.findall(r'\.status === "(\w+)"', pages))
    assert len(named) >= 7 and named <= states, named - states
