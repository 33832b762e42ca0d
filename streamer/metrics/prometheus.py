"""The Prometheus exporter: latency histograms per result, and every counter and gauge at scrape time.

Counters come from the stats registry, rates and states from the sampler; the exporter owns its own
Prometheus registry (served at /metrics), so services in one process never share series.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamer.config import MetricsConfig
from streamer.core.frames import FrameResult
from streamer.core.stats import (
    AnalyticsStats,
    CameraState,
    IdentityStoreStats,
    PartState,
    StatsKind,
    inference_problems,
)
from streamer.metrics.sampler import Sampler


class PrometheusExporter:
    """Owns the Prometheus registry: histograms fed by `observe()`, the rest collected at scrape."""

    def __init__(self, sampler: Sampler, settings: MetricsConfig) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "streamer_camera_latency_seconds",
            "Capture-to-publish latency of processed frames: from the packet taken for decoding "
            "to the result handed to every sink.",
            ["camera"],
            buckets=settings.latency_buckets_s,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "streamer_camera_stage_seconds",
            "Time a frame spent in each pipeline stage (decode, preprocess, wait, queue, "
            "inference, postprocess, track, later stages, publish).",
            ["camera", "stage"],
            buckets=settings.stage_buckets_s,
            registry=self.registry,
        )
        self.registry.register(_PipelineCollector(sampler))
        sampler.on_figures_reset.append(self.forget)

    def observe(self, result: FrameResult) -> None:
        """One result of a camera the sampler knows."""
        # capture to publish: the result's latency plus handing it to every sink
        self.latency.labels(result.camera).observe(result.latency_s + result.timings.get("publish", 0.0))
        for stage, seconds in result.timings.items():
            self.stage_latency.labels(result.camera, stage).observe(seconds)

    def forget(self, camera: str) -> None:
        """Drop the camera's histogram series (the collector's series follow the sampler)."""
        self.latency.remove_by_labels({"camera": camera})
        self.stage_latency.remove_by_labels({"camera": camera})


class _PipelineCollector(Collector):
    """Builds counter and gauge families from the pipeline's counters at scrape time."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on the running pipeline; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        yield from self._cameras()
        yield from self._server()
        yield from self._models()
        yield from self._stages()
        yield from self._analytics()
        yield from self._sinks()
        yield from self._identity_store()

    def _server(self) -> Iterator[Metric]:
        server = self.sampler.stats.server()
        up = GaugeMetricFamily(
            "streamer_inference_server_up",
            "1 when the inference server is up and its models ready; 0 while it is down.",
            labels=["mode"],
        )
        restarts = CounterMetricFamily(
            "streamer_inference_server_restarts",
            "Times the inference server was brought back (restarted or reconnected) after a failure.",
            labels=["mode"],
        )
        parts = GaugeMetricFamily(
            "streamer_part_ok",
            "1 while an optional part (event pictures, a store, a sink) works as configured; 0 "
            "while it is degraded or unavailable (the cameras run without it).",
            labels=["part"],
        )
        if server is not None:
            working = not inference_problems(server, self.sampler.stats.models())
            up.add_metric([server.mode], 1.0 if working else 0.0)
            restarts.add_metric([server.mode], server.restarts)
        for name, part in self.sampler.stats.parts().items():
            parts.add_metric([name], 1.0 if part.state == PartState.OK else 0.0)
        yield from (up, restarts, parts)

    def _stages(self) -> Iterator[Metric]:
        """Every counter a stage registers (e.g. identities: face detections, embeddings, events);
        fields with `metadata={"gauge": True}` are levels, exported as gauges."""
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for stage, counters in self.sampler.stats.read(StatsKind.STAGE).items():
            if not dataclasses.is_dataclass(counters):
                continue
            for item in dataclasses.fields(counters):
                value = getattr(counters, item.name)
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                family = families.get(item.name)
                if family is None:
                    kind = GaugeMetricFamily if item.metadata.get("gauge") else CounterMetricFamily
                    family = families[item.name] = kind(
                        f"streamer_stage_{item.name}",
                        f"Stage {'gauge' if item.metadata.get('gauge') else 'counter'} "
                        f"'{item.name.replace('_', ' ')}', per stage.",
                        labels=["stage"],
                    )
                family.add_metric([stage], value)
        yield from families.values()

    def _analytics(self) -> Iterator[Metric]:
        """Zones and lines: occupancy now, zone events and line crossings since start."""
        occupancy = GaugeMetricFamily(
            "streamer_zone_occupancy", "Confirmed tracks in the zone now.", labels=["camera", "zone"]
        )
        zone_events = CounterMetricFamily(
            "streamer_zone_events", "Zone events (zone_enter, zone_exit, loitering) reported.",
            labels=["camera", "zone", "event"],
        )
        crossings = CounterMetricFamily(
            "streamer_line_crossings", "Line crossings reported, per direction name.",
            labels=["camera", "line", "direction"],
        )
        entries = self.sampler.stats.read(StatsKind.ANALYTICS).values()
        for stats in entries:
            if not isinstance(stats, AnalyticsStats):
                continue
            for (camera, zone), value in sorted(stats.occupancy.items()):
                occupancy.add_metric([camera, zone], value)
            for (camera, zone, kind), count in sorted(stats.zone_events.items()):
                zone_events.add_metric([camera, zone, kind], count)
            for (camera, line, direction), count in sorted(stats.line_crossings.items()):
                crossings.add_metric([camera, line, direction], count)
        yield from (occupancy, zone_events, crossings)

    def _cameras(self) -> Iterator[Metric]:
        sampler = self.sampler
        registered = sampler.stats.cameras()
        labels = ["camera"]

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"streamer_camera_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"streamer_camera_{name}", doc, labels=labels + (extra or []))

        decoded = counter("decoded_frames", "Frames decoded from the stream.")
        processed = counter(
            "processed_frames",
            "Frames published: detected and tracked, or carried over by motion gating.",
        )
        gated = counter(
            "gated_frames",
            "Frames without motion that skipped detection (published with the last tracks).",
        )
        motion_frames = counter("motion_frames", "Frames in which the motion detector found motion.")
        motion_area = gauge(
            "motion_area_ratio", "Moving share of the unmasked picture in the latest frame (0-1)."
        )
        skipped = counter("skipped_frames", "Frames left out by the camera's max_fps cap.")
        dropped = counter(
            "dropped_frames",
            "Frames replaced by a newer one before the pipeline took them, or left undecoded "
            "by a camera far behind.",
        )
        reconnects = counter("reconnects", "Reconnections after a stream ended, stalled or failed.")
        stream_errors = counter("stream_errors", "Errors opening or reading the stream.")
        inference_errors = counter("inference_errors", "Frames lost to failed inference requests.")
        restarts = counter(
            "processing_restarts", "Times the camera's processing failed unexpectedly and restarted."
        )
        decoded_fps = gauge("decoded_fps", "Frames decoded per second (recent window).")
        processed_fps = gauge("processed_fps", "Frames processed per second (recent window).")
        quality = gauge(
            "connection_quality_ratio",
            "Share of the recent window the camera was online and delivering frames (0-1).",
        )
        up = gauge("up", "1 when the camera is streaming: frames decoded and processed.")
        status = gauge(
            "state",
            "Camera state, one series per state (connecting, streaming, stalled, degraded, "
            "backoff, failed, finished, stopped); 1 = current.",
            ["state"],
        )
        tracks = gauge("active_tracks", "People tracked in the camera's latest frame.")
        info = gauge("info", "Camera source (credentials redacted).", ["source"])
        for name, watch in sampler.cameras.items():
            source = registered.get(name)
            if source is not None:
                decoded.add_metric([name], source.decoded)
                processed.add_metric([name], source.processed)
                skipped.add_metric([name], source.skipped)
                dropped.add_metric([name], source.dropped)
                if source.motion_gated:
                    gated.add_metric([name], source.gated)
                    motion_frames.add_metric([name], source.motion_frames)
                    motion_area.add_metric([name], source.motion_area)
                reconnects.add_metric([name], source.reconnects)
                stream_errors.add_metric([name], source.errors)
                inference_errors.add_metric([name], source.inference_errors)
                restarts.add_metric([name], source.processing_restarts)
            decoded_fps.add_metric([name], watch.decoded_fps)
            processed_fps.add_metric([name], watch.processed_fps)
            quality.add_metric([name], watch.quality)
            up.add_metric([name], 1.0 if watch.status == CameraState.STREAMING else 0.0)
            for state in CameraState:
                status.add_metric([name, state.value], 1.0 if watch.status == state else 0.0)
            tracks.add_metric([name], watch.tracks)
            info.add_metric([name, watch.source], 1.0)
        yield from (
            decoded, processed, skipped, dropped, gated, motion_frames, motion_area, reconnects,
            stream_errors, inference_errors, restarts, decoded_fps, processed_fps, quality, up,
            status, tracks, info,
        )

    def _models(self) -> Iterator[Metric]:
        sampler = self.sampler
        models = sampler.stats.models()
        labels = ["model"]
        requests = CounterMetricFamily(
            "streamer_model_requests", "Inference requests answered.", labels=labels
        )
        items = CounterMetricFamily(
            "streamer_model_request_items",
            "Items (frames, crops) the answered requests carried; items/requests = mean items "
            "per request.",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "streamer_model_request_failures", "Inference requests that failed.", labels=labels
        )
        model_up = GaugeMetricFamily(
            "streamer_model_up",
            "1 while the model answers its requests; 0 once several in a row failed (its backend "
            "dead or hung), whatever the server's health says.",
            labels=labels,
        )
        request_seconds = CounterMetricFamily(
            "streamer_model_request_seconds", "Time spent in answered requests.", labels=labels
        )
        rate = GaugeMetricFamily(
            "streamer_model_requests_per_second", "Requests per second (recent window).",
            labels=labels,
        )
        inferences = CounterMetricFamily(
            "streamer_triton_inferences", "Inferences Triton ran (statistics API).", labels=labels
        )
        executions = CounterMetricFamily(
            "streamer_triton_executions",
            "Model executions Triton ran; inferences/executions = mean batch size.",
            labels=labels,
        )
        triton_failures = CounterMetricFamily(
            "streamer_triton_inference_failures", "Inferences Triton failed.", labels=labels
        )
        queue = CounterMetricFamily(
            "streamer_triton_queue_seconds", "Time requests waited in Triton's queue.", labels=labels
        )
        compute = CounterMetricFamily(
            "streamer_triton_compute_seconds",
            "Time Triton spent computing requests (input, infer, output).",
            labels=labels,
        )
        batches = CounterMetricFamily(
            "streamer_triton_batch_executions",
            "Model executions per batch size (Triton's dynamic batcher).",
            labels=["model", "batch_size"],
        )
        for name, watch in sampler.models.items():
            model = models.get(name)
            if model is not None:
                requests.add_metric([name], model.requests)
                items.add_metric([name], model.items)
                failures.add_metric([name], model.failures)
                model_up.add_metric([name], 1.0 if model.up else 0.0)
                request_seconds.add_metric([name], model.request_seconds)
            rate.add_metric([name], watch.requests_per_s)
            triton = watch.triton
            if triton is None:
                continue
            inferences.add_metric([name], triton.inferences)
            executions.add_metric([name], triton.executions)
            triton_failures.add_metric([name], triton.failures)
            queue.add_metric([name], triton.queue_s)
            compute.add_metric([name], triton.compute_s)
            for size, count in sorted(triton.batch_executions.items()):
                batches.add_metric([name, str(size)], count)
        yield from (
            requests, items, failures, model_up, request_seconds, rate, inferences, executions,
            triton_failures,
            queue, compute, batches,
        )

    def _sinks(self) -> Iterator[Metric]:
        labels = ["sink"]
        published = CounterMetricFamily(
            "streamer_sink_published", "Messages the sink delivered.", labels=labels
        )
        dropped = CounterMetricFamily(
            "streamer_sink_dropped", "Messages the sink had to drop.", labels=labels
        )
        errors = CounterMetricFamily("streamer_sink_errors", "Sink errors.", labels=labels)
        buffered = GaugeMetricFamily(
            "streamer_sink_buffered", "Messages waiting in the sink's buffer.", labels=labels
        )
        connected = GaugeMetricFamily(
            "streamer_sink_connected", "1 when the sink is connected.", labels=labels
        )
        for name, stats in self.sampler.sink_stats():
            published.add_metric([name], stats.published)
            dropped.add_metric([name], stats.dropped)
            errors.add_metric([name], stats.errors)
            buffered.add_metric([name], stats.buffered)
            connected.add_metric([name], 1.0 if stats.connected else 0.0)
        yield from (published, dropped, errors, buffered, connected)

    def _identity_store(self) -> Iterator[Metric]:
        """A gallery shared with other instances (`identities.gallery.backend: redis`)."""
        stores = [s for s in self.sampler.stats.read(StatsKind.IDENTITY_STORE).values()
                  if isinstance(s, IdentityStoreStats)]
        if not stores:
            return
        store = stores[0]
        connected = GaugeMetricFamily(
            "streamer_identity_store_connected",
            "1 while the shared identity store is reachable (0: global ids are provisional).",
        )
        connected.add_metric([], 1.0 if store.connected else 0.0)
        queued = GaugeMetricFamily(
            "streamer_identity_store_queued", "Gallery changes waiting for the identity store."
        )
        queued.add_metric([], store.queued)
        yield from (connected, queued)
        for name, value, doc in (
            ("outages", store.outages, "Times the identity store was lost or unreachable."),
            ("sent", store.sent, "Gallery changes written to the identity store."),
            ("applied", store.applied, "Other instances' gallery changes applied here."),
            ("dropped", store.dropped, "Gallery changes dropped from a full queue."),
            ("merges", store.merges, "Global ids this instance found to be one person."),
            ("snapshots", store.snapshots, "Times this instance's replica was written again."),
        ):
            counter = CounterMetricFamily(f"streamer_identity_store_{name}", doc)
            counter.add_metric([], value)
            yield counter
