"""Global identities across cameras from real pedestrians' ReID embeddings (through Triton).

Two cameras watch blank walls; real MOT17 pedestrians are pasted in (the crop of one frame for
camera A, of a later frame for camera B) and tracked by the real per-camera tracker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.config import StreamerConfig, parse_config
from streamer.core.events import IdentityEvent
from streamer.core.frames import FrameResult
from streamer.identities.gallery import EmbeddingSizeMismatch, InMemoryGallery
from streamer.identities.stage import IdentityStage
from streamer.inference.client import TritonModel
from tests.identities.harness import PastedCamera, Placed
from tests.inference.mot17 import Pedestrian, frame_numbers, pedestrians, sequences

WALL_WIDTH, WALL_HEIGHT = 640, 480
PERSON_HEIGHT = 300
FRAMES_PER_VISIT = 5  # > confirm_frames, so every track is confirmed and embedded
TRANSIT_S = 5.0
MAX_FRAMES_TO_END_TRACK = 60  # ByteTrack keeps a lost track for track_buffer frames
# (sequence, identity): two people of one scene and one of another (similar lighting and
# clothes colours within a scene make the first pair the harder one).
WALKER = ("MOT17-02-FRCNN", 2)
NEIGHBOUR = ("MOT17-02-FRCNN", 19)
STRANGER = ("MOT17-09-FRCNN", 19)


def _config(cameras: list[str]) -> StreamerConfig:
    listed = "\n".join(f"  - {{name: {c}, url: {c}.mp4}}" for c in cameras)
    return parse_config(
        f"""
reid: {{enabled: true}}
identities: {{confirm_frames: 3}}
cameras:
{listed}
"""
    )


def _person(key: tuple[str, int], which: str) -> Pedestrian:
    sequence = next(s for s in sequences() if s.name == key[0])
    frames = frame_numbers(sequence)
    frame = frames[0] if which == "first" else frames[-1]
    found = [p for p in pedestrians(sequence, frame, 0.9, 200) if p.identity == key[1]]
    assert found, f"{key} is not clearly visible in frame {frame} of {key[0]}"
    return found[0]


def _standing(person: Pedestrian, x: int) -> Placed:
    """The pedestrian PERSON_HEIGHT tall at x, feet near the bottom of the wall."""
    return Placed(person.crop(), x, WALL_HEIGHT - PERSON_HEIGHT - 20, PERSON_HEIGHT)


def _camera(name: str, stage: IdentityStage, config: StreamerConfig) -> PastedCamera:
    return PastedCamera(name, stage, config, WALL_WIDTH, WALL_HEIGHT)


def _global_ids_by_x(result: FrameResult) -> list[int | None]:
    order = np.argsort(result.tracks.xyxy[:, 0])
    return [result.tracks.data["global_id"][i] for i in order]


async def test_same_pedestrian_on_two_cameras_shares_one_global_id(
    served_models: dict[str, TritonModel],
) -> None:
    config = _config(["gate", "hall"])
    stage = IdentityStage(config)
    await stage.start(served_models)
    gate, hall = _camera("gate", stage, config), _camera("hall", stage, config)
    walker_at_gate, walker_in_hall = _person(WALKER, "first"), _person(WALKER, "last")
    neighbour, stranger = _person(NEIGHBOUR, "last"), _person(STRANGER, "first")

    for _ in range(FRAMES_PER_VISIT):
        at_gate = await gate.show([_standing(walker_at_gate, 250)])
    (walker_id,) = _global_ids_by_x(at_gate)
    assert walker_id is not None, "a confirmed track gets a global id"

    # The walker left the gate and shows up in the hall a few seconds later (one person is never
    # on two cameras at the same moment), next to somebody else.
    hall.ts = gate.ts + TRANSIT_S
    for _ in range(FRAMES_PER_VISIT):
        in_hall = await hall.show([_standing(walker_in_hall, 60), _standing(neighbour, 400)])
    hall_walker_id, neighbour_id = _global_ids_by_x(in_hall)
    assert hall_walker_id == walker_id, "the same pedestrian on another camera keeps the id"
    assert neighbour_id is not None and neighbour_id != walker_id

    # The gate stays empty until its tracker gives the walker up; then a stranger arrives.
    for _ in range(MAX_FRAMES_TO_END_TRACK):
        empty = await gate.show([])
        if any(e.type == "end" for e in empty.events):
            break
    else:
        pytest.fail("the walker's track at the gate never ended")
    for _ in range(FRAMES_PER_VISIT):
        at_gate = await gate.show([_standing(stranger, 250)])
    ids_at_gate = set(_global_ids_by_x(at_gate))
    assert walker_id not in ids_at_gate and neighbour_id not in ids_at_gate
    assert stage.stats.reid_embeddings >= 4

    identity_events = [e for e in in_hall.events if isinstance(e, IdentityEvent)]
    assert all(e.kind == "reid" and e.embedding.shape == (512,) for e in identity_events)


async def test_reid_model_with_another_embedding_size_is_refused_at_start(
    served_models: dict[str, TritonModel],
) -> None:
    config = _config(["gate"])
    gallery = InMemoryGallery(config.identities.gallery, embedding_size=256)
    stage = IdentityStage(config, gallery=gallery)
    with pytest.raises(EmbeddingSizeMismatch, match=r"256-d.*'person_reid' produces 512-d"):
        await stage.start(served_models)


async def test_unknown_camera_in_face_modes_is_refused_at_start(
    served_models: dict[str, TritonModel], tmp_path: Path
) -> None:
    config = _config(["gate"])
    config.faces.enabled = True
    config.faces.camera_modes = {"gate": "regions", "roof": "frame"}
    config.identities.faces_store = tmp_path / "faces.npz"
    with pytest.raises(ValueError, match="unknown cameras roof"):
        await IdentityStage(config).start(served_models)
