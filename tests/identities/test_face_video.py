"""A real face moving through a real pipeline (decode -> YOLOX -> ByteTrack -> identities) after
enrolment from a different picture of the same photo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from streamer.assembly import build_pipeline, build_stages, required_models
from streamer.config import FacesConfig, StreamerConfig, parse_config
from streamer.core.events import Event
from streamer.core.frames import FrameResult
from streamer.core.interfaces import Sink
from streamer.identities.enrolment import FaceStore, enrol, face_models
from streamer.identities.stage import IdentityStage
from streamer.inference.client import TritonModel
from streamer.inference.server import EmbeddedTritonServer
from streamer.publishing.messages import event_message, frame_message, load_schema
from tests.identities.synthetic import CLIP_FRAMES, enrolment_photo, moving_photo_frames, write_h264

ENROLLED_NAME = "Eileen Collins"
# Faces are embedded per track (on confirmation, better views, refresh), not on every frame.
MAX_FACE_EMBEDDINGS = CLIP_FRAMES // 3


class CollectingSink(Sink):
    """Keeps what the pipeline publishes, as the JSON a consumer would receive, schema-checked."""

    name = "collect"

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def publish_frame(self, result: FrameResult) -> None:
        message = json.loads(json.dumps(frame_message(result)))
        jsonschema.validate(message, load_schema("frame"))
        self.frames.append(message)

    def publish_events(self, events: list[Event]) -> None:
        for event in events:
            message = json.loads(json.dumps(event_message(event)))
            jsonschema.validate(message, load_schema(message["type"]))
            self.events.append(message)

    async def stop(self) -> None:
        return None


def identities_config(grpc_url: str, clip: Path, store: Path) -> StreamerConfig:
    return parse_config(
        f"""
triton: {{mode: external, url: "{grpc_url}"}}
inference: {{requests_in_flight: 4}}
publishing: {{jsonl: {{enabled: false}}}}
faces: {{enabled: true}}
reid: {{enabled: true}}
identities: {{faces_store: "{store}", confirm_frames: 3}}
cameras:
  - {{name: door, url: "{clip}", pacing: fast}}
"""
    )


@pytest.fixture(scope="module")
def photo(assets: Path) -> np.ndarray:
    image = cv2.imread(str(assets / "images" / "astronaut.png"))
    assert image is not None
    return image


async def test_moving_face_gives_one_track_one_face_link_and_the_enrolled_name(
    embedded_triton: EmbeddedTritonServer,
    served_models: dict[str, TritonModel],
    photo: np.ndarray,
    tmp_path: Path,
) -> None:
    clip = write_h264(tmp_path / "door.mp4", moving_photo_frames(photo))
    enrolment_image = tmp_path / "id-card.jpg"
    cv2.imwrite(str(enrolment_image), enrolment_photo(photo))
    store = FaceStore(tmp_path / "faces.npz")
    detector, embedder = face_models(served_models, FacesConfig())
    await enrol(store, ENROLLED_NAME, [enrolment_image], detector, embedder)
    assert FaceStore(store.path).counts() == {ENROLLED_NAME: 1}

    config = identities_config(embedded_triton.grpc_url, clip, store.path)
    assert required_models(config) == [
        "person_detector", "face_detector", "face_embedder", "person_reid"
    ]
    sink = CollectingSink()
    stages = build_stages(config)
    pipeline = build_pipeline(config, sinks=[sink], stages=stages)
    await pipeline.start()
    try:
        await pipeline.wait()
    finally:
        await pipeline.stop()

    assert len(sink.frames) == CLIP_FRAMES, "every frame of a file played 'fast' is processed"
    track_ids = {row["track_id"] for frame in sink.frames for row in frame["tracks"]}
    assert len(track_ids) == 1, f"one person walked by, tracks seen: {track_ids}"
    (track_id,) = track_ids

    faces = [face for frame in sink.frames for face in frame.get("faces", [])]
    assert len(faces) >= CLIP_FRAMES - 2, "the face is visible in every frame"
    assert {face.get("track_id") for face in faces} == {track_id}, "each face links to the person"
    assert all(len(face["landmarks"]) == 10 for face in faces)

    last_rows = sink.frames[-1]["tracks"]
    assert last_rows[0]["name"] == ENROLLED_NAME
    assert last_rows[0]["similarity"] >= config.faces.match_threshold
    assert last_rows[0]["global_id"] is not None

    identity = [e for e in sink.events if e["type"] == "identity"]
    named = [e for e in identity if e["kind"] == "face" and e.get("name") == ENROLLED_NAME]
    assert named and all(e["track_id"] == track_id for e in identity)
    assert {e["kind"] for e in identity} == {"face", "reid"}
    assert named[0]["embedding"]["dim"] == 128
    updates = [e for e in sink.events if e["type"] == "update"]
    assert any(u["after"].get("name") == ENROLLED_NAME for u in updates), "track state carries the name"

    (stage,) = [stage for stage in stages if isinstance(stage, IdentityStage)]
    assert 1 <= stage.stats.face_embeddings <= MAX_FACE_EMBEDDINGS
    assert 1 <= stage.stats.reid_embeddings <= MAX_FACE_EMBEDDINGS
