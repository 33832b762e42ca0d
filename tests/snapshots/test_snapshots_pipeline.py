"""Through the real service (Triton, YOLOX, ByteTrack, dashboard server): pictures of ended tracks,
on disk, listed and served by the API behind the dashboard's token."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from streamer.app import Service
from streamer.config import StreamerConfig
from streamer.inference.server import EmbeddedTritonServer
from tests.metrics.conftest import Scrape
from tests.publishing.support import validate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.size > 0, "a valid JPEG"
    return image


async def test_ended_tracks_carry_pictures_that_the_api_lists_and_serves(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path: Path
) -> None:
    lines = tmp_path / "out.jsonl"
    directory = tmp_path / "snapshots"
    config = StreamerConfig.model_validate({
        "triton": {"mode": "external", "url": embedded_triton.grpc_url},
        "publishing": {"jsonl": {"path": str(lines)}},
        "dashboard": {"port": 0, "token": TOKEN},
        "snapshots": {"enabled": True, "directory": str(directory), "min_free_mb": 0},
        "cameras": [{"name": "street", "url": str(sample_clip), "pacing": "fast", "max_fps": 5}],
    })
    service = Service(config)
    await service.start()
    try:
        await service.pipeline.wait()
        await service.pipeline.stop()  # cameras ended, pictures written, index closed; API still up
        base = service.metrics.url
        assert base is not None
        async with aiohttp.ClientSession() as http:
            for path in ("/api/events", "/api/snapshots/0123456789abcdef0123456789abcdef.jpg"):
                async with http.get(base + path) as refused:
                    assert refused.status == 401, f"{path} without the token"
            async with http.get(f"{base}/api/events?camera=street&type=end&limit=1000",
                                headers=AUTH) as response:
                assert response.status == 200
                listed = (await response.json())["events"]
            async with http.get(f"{base}/api/events?camera=elsewhere", headers=AUTH) as response:
                assert (await response.json())["events"] == []
            async with http.get(f"{base}/api/events?type=line_cross", headers=AUTH) as response:
                assert (await response.json())["events"] == []
            async with http.get(f"{base}/api/events?since=soon", headers=AUTH) as response:
                assert response.status == 400 and "since" in await response.text()
            pictured = [e for e in listed if e["snapshot_id"]]
            assert pictured, "ended tracks have pictures"
            assert {e["summary"] for e in listed} == {f"track #{e['track_id']} ended" for e in listed}
            first = pictured[0]["snapshot_id"]
            async with http.get(f"{base}/api/snapshots/{first}.jpg", headers=AUTH) as response:
                assert response.status == 200 and response.content_type == "image/jpeg"
                crop = decoded(await response.read())
            async with http.get(f"{base}/api/snapshots/{first}-frame.jpg", headers=AUTH) as response:
                assert response.status == 200
                frame = decoded(await response.read())
            assert frame.shape[1] == 768 and crop.shape[0] < frame.shape[0]
            for sneaky in ("..%2Fevents.sqlite3", "%2E%2E%2F%2E%2E%2Fout.jsonl", first.upper() + ".jpg"):
                async with http.get(f"{base}/api/snapshots/{sneaky}", headers=AUTH) as response:
                    assert response.status == 404, sneaky
            async with http.get(f"{base}/metrics", headers=AUTH) as response:
                scrape = Scrape.parse(await response.text())
    finally:
        await service.stop()

    messages = [json.loads(line) for line in lines.read_text().splitlines()]
    ends = [m for m in messages if m["type"] == "end"]
    for message in ends:
        validate(message)
    with_pictures = {m["id"]: m["snapshot_id"] for m in ends if "snapshot_id" in m}
    assert with_pictures, "published `end` events carry snapshot ids"
    assert {e["id"]: e["snapshot_id"] for e in pictured} == with_pictures, (
        "the API lists the same events with the same pictures as were published"
    )
    assert {e["id"] for e in listed} <= {m["id"] for m in ends}
    for snapshot_id in with_pictures.values():
        for name in (f"{snapshot_id}.jpg", f"{snapshot_id}-frame.jpg"):
            decoded((directory / "images" / name).read_bytes())
    assert scrape.value("streamer_stage_written_total", stage="snapshots") == len(with_pictures)
    assert scrape.value("streamer_stage_dropped_queue_full_total", stage="snapshots") == 0
