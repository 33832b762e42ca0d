"""The bench's report helpers on made-up numbers: no timing, no model, no server."""

from __future__ import annotations

import os

from streamer.benchmarks import ceiling
from streamer.benchmarks.cpu import process_cpu_s, tree_cpu_s
from streamer.benchmarks.detector import PipelineRun, mean_stages, summary_line
from streamer.benchmarks.report import GridCell, Span, best_cell, grid_lines, stage_means_text


def test_span_text_and_ratios() -> None:
    span = Span.of([120.0, 98.04, 110.0])
    assert (span.low, span.high) == (98.04, 120.0)
    assert span.text() == "98.0-120.0"
    assert Span.of([5.0, 5.0]).text() == "5.0"
    assert span.over(200.0) == "0.49-0.60"
    assert span.over(0.0) == "-"
    assert Span.of([]).as_dict() == {"min": 0.0, "max": 0.0}


def test_grid_names_the_winner() -> None:
    cells = ceiling.merge(
        [
            [(1, 1, 2, 95.0), (1, 2, 1, 130.0), (2, 1, 2, 100.0), (2, 2, 1, 125.0)],
            [(1, 1, 2, 99.0), (1, 2, 1, 122.0), (2, 1, 2, 101.0), (2, 2, 1, 126.0)],
        ]
    )
    winner = best_cell(cells)
    assert (winner.batch, winner.sessions, winner.threads, winner.best) == (1, 2, 1, 130.0)
    assert winner.describe() == "batch 1, 2 sessions x 1 thread in two threads"
    assert GridCell(4, 1, 2, (1.0,)).describe() == "batch 4, 1 session x 2 threads"
    lines = grid_lines(cells)
    assert lines[0].split() == ["batch", "1x2", "2x1"]
    assert lines[1].split() == ["1", "95.0-99.0", "122.0-130.0", "*"]
    assert lines[2].split() == ["2", "100.0-101.0", "125.0-126.0"]


def test_batches_of_drops_the_remainder() -> None:
    import numpy as np

    frames = [np.zeros((4, 4, 3), np.uint8) for _ in range(10)]
    batches = ceiling.batches_of(frames, 4)
    assert [b.shape for b in batches] == [(4, 4, 4, 3), (4, 4, 4, 3)]


def _run(fps: float, cpu: float, stages: dict[str, float]) -> PipelineRun:
    return PipelineRun(
        cameras=8, raw_fps=150.0, seconds=10.0, frames=int(fps * 10), fps=fps,
        latency_p50_ms=50.0, latency_p95_ms=80.0, batch_sizes={1: 3, 2: 1}, mean_batch=1.25,
        label="8", service_cpu_ms_per_frame=cpu, server_cpu_ms_per_frame=12.0, stages_ms=stages,
    )


def test_summary_line_and_stage_means() -> None:
    runs = [_run(90.0, 5.0, {"decode": 4.0, "track": 1.0}), _run(110.0, 6.0, {"decode": 2.0})]
    line = summary_line(runs, ceiling=200.0, peer=100.0)
    assert line.split()[:4] == ["8", "90.0-110.0", "0.45-0.55", "0.90-1.10"]
    assert "1:75% 2:25%" in line
    means = mean_stages(runs)
    assert means == {"decode": 3.0, "track": 0.5}
    assert stage_means_text(means) == "decode 3.0 track 0.5"


def test_cpu_counters_read() -> None:
    assert process_cpu_s() >= 0.0
    assert tree_cpu_s(None) == 0.0
    assert tree_cpu_s(os.getpid()) >= 0.0


async def test_zones_section_runs_the_stage_and_counts_events() -> None:
    from streamer.benchmarks.zones import run_benchmark

    result = await run_benchmark(cameras=2, rounds=1)
    assert (result.zones_per_camera, result.lines_per_camera) == (5, 5)
    assert result.events_per_round > 0  # the scene really enters zones and crosses lines
    assert result.cpu_us_per_camera_frame > 0
    assert "2 cameras x (5 zones + 5 lines)" in result.lines()[0]
