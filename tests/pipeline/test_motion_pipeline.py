"""Motion-gated detection end to end: the idle-period footage through the real pipeline and a
real Triton; idle frames skip the detector, people are still detected and tracked."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamer.assembly import build_pipeline
from streamer.benchmarks.footage import IdleFootage
from streamer.cli.stats import format_state
from streamer.inference.server import EmbeddedTritonServer
from streamer.metrics.service import MetricsService
from streamer.publishing.messages import frame_message
from tests.pipeline.test_pipeline import Collector, config_for


async def test_gating_skips_idle_frames_and_still_tracks_the_people(
    embedded_triton: EmbeddedTritonServer, idle_footage: IdleFootage
) -> None:
    config = config_for(
        [{"name": "street", "url": str(idle_footage.path), "pacing": "fast",
          "motion": {"enabled": True, "keepalive_s": 1.0}}],
        {"mode": "external", "url": embedded_triton.grpc_url},
    )
    collector = Collector()
    pipeline = build_pipeline(config, observers=[collector])
    await pipeline.start()
    await pipeline.cameras["street"].task  # type: ignore[misc]
    await pipeline.stop()

    results = collector.results
    stats = pipeline.cameras["street"].stats
    # every frame is published, in order, and says whether the detector saw it
    assert [r.frame_index for r in results] == list(range(1, idle_footage.frames + 1))
    assert stats.processed == len(results)
    gated = [r for r in results if not r.detected]
    assert stats.gated == len(gated) > 0
    idle = [r for r in results if not idle_footage.has_people(r.frame_index)]
    idle_gated = [r for r in idle if not r.detected]
    # idle frames: detected only for the ghosts people leave, and keep-alive while tracks are open
    assert len(idle_gated) >= 0.75 * len(idle), f"only {len(idle_gated)} of {len(idle)} idle frames gated"
    busy = [r for r in results if idle_footage.has_people(r.frame_index)]
    assert all(r.detected for r in busy), "frames with people walking are all detected"

    # a gated frame carries the last published tracks over, unchanged, with no events
    previous = None
    for result in results:
        if not result.detected:
            assert previous is not None and result.tracks is previous.tracks
            assert result.events == []
            message = frame_message(result)
            assert message["detected"] is False and "inference" not in result.timings
        previous = result

    # the people: tracked in every group, each group's tracks start on arrival
    for first, last in idle_footage.busy:
        segment = [r for r in busy if first <= r.frame_index <= last]
        with_people = [r for r in segment if len(r.tracks) > 0]
        assert len(with_people) >= 0.9 * len(segment), (first, last)
        births = [e.frame_index for r in segment for e in r.events if getattr(e, "type", None) == "new"]
        assert births and min(births) <= first + 2, (first, births[:5])

    # the counters reach Prometheus, the dashboard's JSON and `streamer stats`
    metrics = MetricsService(config, pipeline.registry)
    families = {
        sample.name: sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.prometheus.registry).decode())
        for sample in family.samples
        if sample.labels.get("camera") == "street"
    }
    assert families["streamer_camera_gated_frames_total"] == stats.gated
    assert families["streamer_camera_motion_frames_total"] == stats.motion_frames >= len(busy)
    assert 0.0 <= families["streamer_camera_motion_area_ratio"] < 1.0
    state = metrics.state_view.state()
    camera = state.cameras[0]
    assert (camera.motion_gated, camera.gated) == (True, stats.gated)
    table = format_state(state)
    assert "GATED" in table.splitlines()[0] and f"{stats.gated:,}" in table.splitlines()[1]
