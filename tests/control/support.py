"""A real service started from a YAML file with comments, and small HTTP helpers for its API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from streamer.app import Service
from tests.support.checkout import REPO_ROOT

TOKEN = "api-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def service_yaml(
    triton_url: str, jsonl: Path, mqtt_port: int, lobby_env: str = "LOBBY_URL"
) -> str:
    """The operator's file: comments, a blank line and `${ENV}` references that must survive."""
    return f"""\
# streamer under test: every comment here must survive API changes
triton:
  mode: external
  url: {triton_url}   # the session's Triton

publishing:
  jsonl:
    path: {jsonl}
  mqtt:
    enabled: true
    port: {mqtt_port}
    topic_prefix: apitest
    publish_tracks: false
    camera_control: [lobby]   # Frigate-style {{camera}}/enabled/set
metrics:
  sample_interval_s: 0.5
  rate_window_s: 2.0
dashboard:
  port: 0
  token: ${{TEST_DASHBOARD_TOKEN}}   # from the environment
  api:
    env_allowed: [VAULT_PASSWORD]
    stream_hosts: ["*", 127.0.0.1]   # any camera, and the test's RTSP server
    file_folders: [., {REPO_ROOT / "sample_videos"}]
cameras:
  # the camera that must never notice
  - name: lobby
    url: ${{{lobby_env}}}
    loop: true
    max_fps: 5
"""


@dataclass
class Answer:
    status: int
    body: Any
    text: str


async def call(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    data: Any = None,
) -> Answer:
    headers = AUTH if headers is None else headers
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{base_url}{path}", json=body, data=data, headers=headers
    ) as response:
        text = await response.text()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Answer(response.status, parsed, text)


async def until(check: Callable[[], Any], what: str, timeout_s: float = 60.0, poll_s: float = 0.25) -> Any:
    """Poll an async check until it returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(poll_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last: {last!r})")


def jsonl_messages(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    messages = []
    for line in path.read_text().splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return messages


async def started(service: Service) -> str:
    """Start the service; its dashboard URL once the pipeline runs."""
    await service.start()
    assert service.metrics.url is not None
    return service.metrics.url
