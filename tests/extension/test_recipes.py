"""docs/architecture.md's recipes, followed to the letter: one class and one registration each,
then run through a real service (real Triton serving the toy model, real decoding threads)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from streamer.app import Service
from streamer.assembly import Assembly, Component, default_assembly
from streamer.config import ConfigError, StreamerConfig, parse_config
from streamer.core.events import TrackEvent
from streamer.inference.repository import CONFIG_FILE
from tests.extension.toys import (
    TOY_MODEL,
    ColourChanged,
    ColourStage,
    ListSink,
    OpenCvSource,
    WholeFrameDetector,
    add_toy_model,
)

WAIT_S = 60.0
DETECTOR = "person_detector"


def toy_assembly(sink: ListSink) -> Assembly:
    """The default service plus one registration per toy, as the recipes say."""
    assembly = default_assembly()
    assembly.sources.register("opencv", OpenCvSource)
    assembly.detectors.register("whole_frame", WholeFrameDetector.from_models)
    assembly.stages.register("colours", Component(ColourStage), before="snapshots")
    assembly.sinks.register("list", Component(lambda _config: sink))
    return assembly


def repository_with_toy_model(tmp_path: Path, model_repository: Path, *names: str) -> Path:
    """A model repository holding the toy model and copies of the named prepared models."""
    repository = tmp_path / "model_repository"
    repository.mkdir()
    for name in names:
        shutil.copytree(model_repository / name, repository / name, symlinks=True)
    add_toy_model(repository)
    assert (repository / TOY_MODEL / CONFIG_FILE).is_file()
    return repository


def service_yaml(repository: Path, camera_url: str, detector: str = "", jsonl: Path | None = None) -> str:
    lines = f"path: {jsonl}" if jsonl is not None else "enabled: false"
    return f"""\
triton:
  mode: embedded
  model_repository: {repository}
publishing:
  jsonl:
    {lines}
metrics:
  sample_interval_s: 0.5
dashboard:
  port: 0
{detector}cameras:
  - name: toy
    url: {camera_url}
    max_fps: 5
"""


async def run_until(service: Service, done: Callable[[], bool]) -> None:
    await service.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not done():
            assert time.monotonic() < deadline, "the service did not get there in time"
            await asyncio.sleep(0.2)
    finally:
        await service.stop()


@pytest.mark.slow
async def test_a_source_type_a_stage_a_model_and_a_sink_added_by_the_recipes_run_in_a_real_service(
    tmp_path: Path, model_repository: Path, sample_clip: Path
) -> None:
    sink = ListSink()
    assembly = toy_assembly(sink)
    repository = repository_with_toy_model(tmp_path, model_repository, DETECTOR)
    jsonl = tmp_path / "results.jsonl"
    config = parse_config(
        service_yaml(repository, f"opencv://{sample_clip}", jsonl=jsonl), "toy.yaml",
        registered=assembly.registered(),
    )
    service = Service(config, assembly=assembly)
    stage = next(s for s in service.pipeline.stages if isinstance(s, ColourStage))
    assert [s.name for s in service.pipeline.stages] == ["zones", "colours"]

    def coloured_tracks_published() -> bool:
        coloured = sum("colour" in (e.after or {}) for e in sink.events if isinstance(e, TrackEvent))
        return coloured >= 3 and len(sink.results) >= 5

    await run_until(service, coloured_tracks_published)

    # the toy source fed the real detector: people found and tracked in its frames
    assert len(sink.results) >= 5 and any(len(r.tracks) > 0 for r in sink.results)
    assert stage.cameras_configured == ["toy"]
    # the stage's model was served by the embedded server from the repository folder
    colours = [e.after["colour"] for e in sink.events if isinstance(e, TrackEvent) and e.after
               and "colour" in e.after]
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colours)
    assert stage.stats.coloured >= 3
    # and the sink was stopped with the service
    assert sink.stopped
    # The toy event type reached both sinks: typed in the toy sink, as JSON of its own schema in
    # the real JSON-lines sink.
    changes = [e for e in sink.events if isinstance(e, ColourChanged)]
    assert changes and changes[0].summary().startswith(f"track #{changes[0].track_id} turned")
    written = [json.loads(line) for line in jsonl.read_text().splitlines()]
    published = [m for m in written if m.get("type") == ColourChanged.type]
    assert {m["id"] for m in published} == {e.id for e in changes}
    schema = json.loads(Path(ColourChanged.schema).read_text())
    for message in published:
        jsonschema.validate(message, schema)


@pytest.mark.slow
async def test_a_detector_family_added_by_the_recipe_is_chosen_by_the_config(
    tmp_path: Path, model_repository: Path, sample_clip: Path
) -> None:
    sink = ListSink()
    assembly = toy_assembly(sink)
    repository = repository_with_toy_model(tmp_path, model_repository)  # the toy model only
    detector = f"detector:\n  family: whole_frame\n  model: {TOY_MODEL}\n"
    config = parse_config(
        service_yaml(repository, str(sample_clip), detector), "toy.yaml", registered=assembly.registered()
    )
    service = Service(config, assembly=assembly)

    def tracked_whole_frames() -> bool:
        return sum(1 for r in sink.results if len(r.tracks) == 1) >= 5

    await run_until(service, tracked_whole_frames)
    tracked = [r for r in sink.results if len(r.tracks) == 1]
    width_height = tracked[-1].tracks.xyxy[0][2:] + 1
    assert tuple(width_height.tolist()) == (768, 576), "one box over the whole frame"
    assert all(0.5 < r.tracks.confidence[0] < 1 for r in tracked)


def test_an_unregistered_scheme_or_family_is_one_config_line_naming_the_registered_ones() -> None:
    sink = ListSink()
    assembly = toy_assembly(sink)
    text = "detector:\n  family: ssd\ncameras:\n  - name: a\n    url: gopher://h/x\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", registered=assembly.registered())
    assert caught.value.lines == [
        "cfg.yaml:2: detector.family: unknown detector family 'ssd' (known: whole_frame, yolox)",
        "cfg.yaml:5: cameras[0].url: unsupported URL scheme 'gopher' (expected http, https, opencv, "
        "rtmp, rtsp, rtsps, srt, udp, file:// or a file path)",
    ]
    # the default service does not know the toys
    toy_camera = "cameras:\n  - {name: a, url: opencv:///x.mp4}\n"
    with pytest.raises(ConfigError, match="unsupported URL scheme 'opencv'"):
        parse_config(toy_camera, registered=default_assembly().registered())
    assert isinstance(parse_config(toy_camera, registered=assembly.registered()), StreamerConfig)
