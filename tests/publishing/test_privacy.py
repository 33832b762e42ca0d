"""Vectors of people stay in the service when asked to, and what it writes to disk is private.

Previously the spill file (ReID embeddings of undelivered events) and the JSON lines were 0644,
and embeddings went to MQTT, Redis and JSON lines with no way to leave them out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from streamer.config import JsonlSinkConfig, PublishingConfig
from streamer.publishing.buffer import SpillFile
from streamer.publishing.jsonl import JsonlSink
from tests.publishing.harness import Harness, RedisHarness
from tests.publishing.support import SyntheticCamera, drain, validate, wait_until
from tests.support.files import mode, usual_umask

pytestmark = pytest.mark.timeout(60)




def test_publishing_embeddings_off_reaches_every_sink_unless_one_says_otherwise() -> None:
    settings = PublishingConfig.model_validate({"embeddings": False, "redis": {"embeddings": True}})
    assert (settings.jsonl.embeddings, settings.mqtt.embeddings, settings.redis.embeddings) == (
        False, False, True
    )
    assert PublishingConfig().mqtt.embeddings is True, "on by default: consumers rely on them"


async def test_a_broker_sink_without_embeddings_sends_identities_without_vectors(harness: Harness) -> None:
    camera = SyntheticCamera("gate")
    camera.step()
    sink = harness.make_sink(embeddings=False)
    await harness.start_consumer()
    await sink.start()
    await wait_until(lambda: sink.connected, 10, "the connection")
    sink.publish_events([camera.identity()])
    await drain(sink)
    await sink.stop()

    async def arrived() -> bool:
        return bool(await harness.lifecycle_messages(["gate"]))

    await wait_until_async(arrived)
    (identity,) = await harness.lifecycle_messages(["gate"])
    assert identity["type"] == "identity" and identity["name"] == "alice"
    assert "embedding" not in identity
    validate(identity)
    if isinstance(harness, RedisHarness):
        async with harness.client() as client:
            assert await client.keys("test:identity:*") == [], "no vector record either"


async def wait_until_async(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the timeout"
        await asyncio.sleep(0.1)


async def test_json_lines_are_private_and_leave_vectors_out_when_asked(tmp_path: Path) -> None:
    camera = SyntheticCamera("gate")
    camera.step()
    path = tmp_path / "out.jsonl"
    settings = PublishingConfig.model_validate({"embeddings": False, "jsonl": {"path": str(path)}})
    sink = JsonlSink(settings.jsonl)
    with usual_umask():
        await sink.start()
    sink.publish_events([camera.identity()])
    await sink.stop()
    (identity,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert "embedding" not in identity and identity["name"] == "alice"
    validate(identity)
    assert mode(path) == 0o600


async def test_json_lines_others_can_read_are_kept_but_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shared.jsonl"
    path.write_text("")
    path.chmod(0o644)
    sink = JsonlSink(JsonlSinkConfig(path=str(path)))
    with caplog.at_level(logging.WARNING):
        await sink.start()
        await sink.stop()
    assert mode(path) == 0o644
    assert any("can be read by other users (mode 0644)" in r.getMessage() for r in caplog.records)


def test_the_spill_file_and_its_folder_are_private(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill" / "mqtt.spill")
    with usual_umask():
        spill.open()
    try:
        assert mode(tmp_path / "spill") == 0o700
        assert mode(tmp_path / "spill" / "mqtt.spill") == 0o600
    finally:
        spill.close()

