"""Prometheus metrics after a short real run: FPS, latency histograms, drops as the pipeline counted."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamer.assembly import build_pipeline, build_sinks
from streamer.config import CameraConfig, ConfigError, DashboardConfig, parse_config
from streamer.core.detections import Detections
from streamer.core.frames import Frame, FrameResult
from streamer.core.interfaces import FrameStage, TrackBook
from streamer.core.stats import StatsRegistry
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.live_view import LiveViewStore, annotate
from streamer.metrics.service import MetricsService
from tests.metrics.conftest import Scrape, scrape, scrape_until, streamer_config
from tests.support.checkout import REPO_ROOT

CAMERAS = ("north", "south")
STAGES = ("preprocess", "wait", "queue", "inference", "postprocess", "track", "identity")
IDENTITY_DELAY_S = 0.15  # slower than the 10 fps clip: frames pile up and the slot drops them
GRAFANA_DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "streamer-dashboard.json"


class NamingStage(FrameStage[CameraConfig]):
    """Stands in for an identity stage: slow enough to make the pipeline drop frames, names tracks."""

    name = "identity"
    needs_image = True  # like the identity stage it stands in for

    async def process(self, frame: Frame, result: FrameResult, tracker: TrackBook) -> None:
        await asyncio.sleep(IDENTITY_DELAY_S)
        ids = [] if result.tracks.tracker_id is None else result.tracks.tracker_id.tolist()
        names = np.array([f"person-{i}" for i in ids], dtype=object)
        result.tracks = dataclasses.replace(result.tracks, data={**result.tracks.data, "name": names})


class KeptImages:
    """Wraps the keep_images hook to count how many images the pipeline was asked to keep."""

    def __init__(self, service: MetricsService) -> None:
        self.service = service
        self.kept = 0

    def __call__(self, camera: str) -> bool:
        keep = self.service.keep_images(camera)
        self.kept += keep
        return keep


def running(scraped: Scrape) -> bool:
    per_camera = all(
        (scraped.value("streamer_camera_processed_fps", camera=c) or 0) > 0
        and (scraped.value("streamer_camera_decoded_fps", camera=c) or 0) > 0
        and (scraped.value("streamer_camera_dropped_frames_total", camera=c) or 0) > 0
        for c in CAMERAS
    )
    batched = scraped.total("streamer_triton_batch_executions_total", model="person_detector") > 0
    requests = (scraped.value("streamer_model_requests_per_second", model="person_detector") or 0) > 0
    return per_camera and batched and requests


async def test_prometheus_endpoint_shows_fps_latency_and_the_drops_the_pipeline_counted(
    embedded_triton: EmbeddedTritonServer, sample_clip: Path, tmp_path: Path
) -> None:
    cameras = [{"name": name, "url": str(sample_clip), "loop": True} for name in CAMERAS]
    config = streamer_config(embedded_triton.grpc_url, cameras, tmp_path / "out.jsonl")
    stats = StatsRegistry()
    metrics = MetricsService(config, stats)
    kept_images = KeptImages(metrics)
    sinks = build_sinks(config)
    pipeline = build_pipeline(
        config,
        sinks=sinks,
        stages=[NamingStage()],
        observers=[metrics],
        keep_images=kept_images,
        registry=stats,
    )
    await metrics.start()
    try:
        await pipeline.start()
        assert metrics.url is not None
        live = await scrape_until(metrics.url, running, timeout_s=30)
        assert kept_images.kept == 0, "nobody watched yet, so no image may be kept"

        watch_started = time.monotonic()
        jpeg = await _first_snapshot(metrics.url, "north")
        watched_s = time.monotonic() - watch_started
        await pipeline.stop()  # freezes every counter
        final = await scrape(metrics.url)
    finally:
        await pipeline.stop()
        await metrics.stop()

    for name in CAMERAS:
        runtime = pipeline.cameras[name]
        source = runtime.source.stats
        assert (live.value("streamer_camera_processed_fps", camera=name) or 0) > 0
        assert (live.value("streamer_camera_decoded_fps", camera=name) or 0) > 0
        assert (live.value("streamer_camera_connection_quality_ratio", camera=name) or 0) > 0.5
        assert live.value("streamer_camera_up", camera=name) == 1
        assert source.dropped > 0, "the slow stage should have made the slot drop frames"
        expected = {
            "streamer_camera_decoded_frames_total": source.decoded,
            "streamer_camera_processed_frames_total": runtime.stats.processed,
            "streamer_camera_dropped_frames_total": source.dropped,
            "streamer_camera_skipped_frames_total": source.skipped,
            "streamer_camera_reconnects_total": source.reconnects,
            "streamer_camera_latency_seconds_count": runtime.stats.processed,
        }
        reported = {metric: final.value(metric, camera=name) for metric in expected}
        assert reported == expected, name
        assert final.value("streamer_camera_latency_seconds_bucket", camera=name, le="+Inf") == (
            runtime.stats.processed
        )
        assert (final.value("streamer_camera_latency_seconds_sum", camera=name) or 0) > 0
        stage_counts = {
            stage: final.value("streamer_camera_stage_seconds_count", camera=name, stage=stage)
            for stage in STAGES
        }
        assert stage_counts == dict.fromkeys(STAGES, runtime.stats.processed), name
        assert final.value("streamer_camera_info", camera=name, source=str(sample_clip)) == 1

    assert (live.value("streamer_model_requests_total", model="person_detector") or 0) > 0
    requests = final.value("streamer_model_requests_total", model="person_detector") or 0
    items = final.value("streamer_model_request_items_total", model="person_detector") or 0
    assert items >= requests > 0, "every request carries one or more frames"
    assert (live.value("streamer_triton_executions_total", model="person_detector") or 0) > 0
    jsonl = sinks[0].stats()
    assert jsonl.published > 0
    assert final.value("streamer_sink_published_total", sink="jsonl") == jsonl.published
    assert final.value("streamer_sink_dropped_total", sink="jsonl") == jsonl.dropped

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (576, 768, 3)
    # Images are kept only for the watched camera, at most live_view_max_fps per second.
    allowed = config.dashboard.live_view_max_fps * (watched_s + 1) + 1
    assert 1 <= kept_images.kept <= allowed


async def _first_snapshot(base_url: str, camera: str, timeout_s: float = 10.0) -> bytes:
    """Ask for a snapshot until one comes (204 until the first image is kept)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            async with session.get(f"{base_url}/api/live-view/{camera}") as response:
                assert response.status in (200, 204)
                if response.status == 200:
                    assert response.content_type == "image/jpeg"
                    return await response.read()
            await asyncio.sleep(0.25)
    pytest.fail(f"no snapshot of {camera} within {timeout_s}s")


def test_grafana_dashboard_queries_only_metrics_the_service_exports() -> None:
    config = parse_config("cameras: [{name: a, url: clip.mp4}]")
    exporter = MetricsService(config, StatsRegistry()).prometheus
    exported: set[str] = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in text_string_to_metric_families(generate_latest(exporter.registry).decode()):
        exported.update(family.name + suffix for suffix in suffixes[family.type])
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for expr in expressions for name in re.findall(r"\bstreamer_[a-z_]+", expr)}
    assert len(used) >= 15, "the dashboard should cover cameras, models and sinks"
    assert used - exported == set()


@pytest.mark.parametrize(
    ("watched", "asks", "expected"),
    [
        (False, 3, [False, False, False]),  # nobody watching: never keep an image
        (True, 3, [True, False, False]),  # watched: the first, then not within the interval
    ],
)
async def test_images_are_kept_only_while_watched_and_at_a_low_rate(
    watched: bool, asks: int, expected: list[bool]
) -> None:
    store = LiveViewStore(DashboardConfig(live_view_max_fps=2), ["door"])
    if watched:
        assert await store.picture("door") is None  # asking marks the camera as watched
    assert [store.wants_image("door") for _ in range(asks)] == expected


def test_snapshot_labels_show_names_when_tracks_have_them() -> None:
    image = np.full((240, 320, 3), 90, np.uint8)
    box = np.array([[100, 80, 180, 220]], np.float32)
    plain = Detections(box, np.ones(1, np.float32), np.zeros(1, np.int64), np.array([7]))
    named = dataclasses.replace(plain, data={"name": np.array(["Alice Example"], dtype=object)})
    unknown = dataclasses.replace(plain, data={"name": np.array([None], dtype=object)})
    label_row = slice(40, 80)  # above the box, where the label is drawn
    drawn = {
        key: annotate(image, tracks, ["name", "global_id"], max_width=640)[label_row]
        for key, tracks in {"plain": plain, "named": named, "unknown": unknown}.items()
    }
    changed_columns = {key: int((crop != 90).any(axis=(0, 2)).sum()) for key, crop in drawn.items()}
    assert changed_columns["named"] > changed_columns["plain"] > 0, "the name widens the label"
    assert changed_columns["unknown"] == changed_columns["plain"], "an unknown name is not drawn"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("dashboard: {port: 70000}", "dashboard.port: Input should be less than or equal to 65535"),
        ("dashboard: {tokne: x}", "dashboard.tokne: unknown key (did you mean 'token'?)"),
        ("metrics: {latency_buckets_s: [0.5, 0.1]}", "metrics.latency_buckets_s: buckets must be"),
    ],
)
def test_config_problems_in_the_metrics_sections_point_at_the_line(yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(f"cameras: [{{name: a, url: clip.mp4}}]\n{yaml_text}\n", source="c.yaml")
    assert error.value.lines[0].startswith(f"c.yaml:2: {expected}")


def test_an_empty_token_from_the_environment_means_no_token() -> None:
    text = "cameras: [{name: a, url: clip.mp4}]\ndashboard: {token: '${T:-}'}\n"
    assert parse_config(text, env={}).dashboard.token is None
    token = parse_config(text, env={"T": "hunter2"}).dashboard.token
    assert token is not None and token.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(parse_config(text, env={"T": "hunter2"}))
