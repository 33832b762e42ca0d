"""Faces searched on whole frames or in person regions, linked to the person, embedded once."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.config import FaceMode, parse_config
from streamer.core.events import IdentityEvent
from streamer.identities.enrolment import FaceStore
from streamer.identities.stage import FACE_TRACK_KEY, IdentityStage
from streamer.inference.client import TritonModel
from streamer.inference.scrfd import LANDMARKS_KEY
from tests.identities.harness import PastedCamera, Placed
from tests.inference.pictures import ASTRONAUT_FEATURES, LANDMARK_TOLERANCE_PX

WIDTH, HEIGHT = 1280, 720
PHOTO_X, PHOTO_Y, PHOTO_HEIGHT = 700, 60, 400  # the 512x512 photo at 400/512 scale
FACELESS_BOX = Placed(np.full((300, 120, 3), 128, np.uint8), 100, 300, 300)  # a grey "person"
FRAMES = 6  # confirmed at the third, then several more frames of the same view


@pytest.mark.parametrize("mode", ["frame", "regions"])
async def test_face_is_found_linked_to_its_person_and_embedded_once(
    served_models: dict[str, TritonModel], assets: Path, tmp_path: Path, mode: FaceMode
) -> None:
    photo = cv2.imread(str(assets / "images" / "astronaut.png"))
    assert photo is not None
    config = parse_config(
        f"""
faces: {{enabled: true, mode: frame, camera_modes: {{lobby: {mode}}}}}
identities: {{confirm_frames: 3, refresh_interval_s: 3600}}
cameras: [{{name: lobby, url: lobby.mp4}}]
"""
    )
    stage = IdentityStage(config, face_store=FaceStore(tmp_path / "faces.npz"))
    await stage.start(served_models)
    camera = PastedCamera("lobby", stage, config, WIDTH, HEIGHT)
    astronaut = Placed(photo, PHOTO_X, PHOTO_Y, PHOTO_HEIGHT)

    results = [await camera.show([astronaut, FACELESS_BOX]) for _ in range(FRAMES)]

    last = results[-1]
    assert last.faces is not None and len(last.faces) == 1
    astronaut_row = int(np.argmax(last.tracks.xyxy[:, 0]))
    assert last.tracks.tracker_id is not None
    assert last.faces.data[FACE_TRACK_KEY][0] == last.tracks.tracker_id[astronaut_row]
    scale = PHOTO_HEIGHT / photo.shape[0]
    expected = ASTRONAUT_FEATURES * scale + np.array([PHOTO_X, PHOTO_Y], np.float32)
    landmarks = last.faces.data[LANDMARKS_KEY][0].reshape(5, 2)
    assert np.linalg.norm(landmarks - expected, axis=1).max() <= LANDMARK_TOLERANCE_PX

    assert stage.stats.face_embeddings == 1, "the same view is embedded once per track"
    events = [e for r in results for e in r.events if isinstance(e, IdentityEvent)]
    assert [e.kind for e in events] == ["face"]
    assert events[0].embedding.shape == (128,)
    if mode == "regions":
        # Only confirmed people are searched: nothing before the third frame.
        assert all(r.faces is not None and len(r.faces) == 0 for r in results[:2])
