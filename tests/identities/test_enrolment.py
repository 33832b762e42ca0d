"""Enrolment: one face per image or nothing is stored; stores of another embedding size refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.assembly import build_pipeline, build_stages
from streamer.config import FacesConfig, parse_config
from streamer.identities.enrolment import EnrolmentRefused, FaceStore, enrol, face_models
from streamer.identities.gallery import EmbeddingSizeMismatch
from streamer.inference.client import TritonModel
from streamer.inference.server import EmbeddedTritonServer
from tests.identities.synthetic import background, paste
from tests.support.checkout import REPO_ROOT

CLI_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def photos(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One face; no face (a wall and a street without faces); two faces side by side."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = cv2.imread(str(assets / "images" / "astronaut.png"))
    assert astronaut is not None
    wall = background(640, 480, seed=3)
    two = paste(paste(background(1000, 520, seed=4), astronaut, 0.9, 10, 30), astronaut, 0.9, 530, 30)
    images = {"one": astronaut, "none": wall, "two": two}
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        cv2.imwrite(str(paths[name]), image)
    return paths


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (["none"], r"none\.png: no face found"),
        (["two"], r"two\.png: 2 faces found; crop the photo"),
        (["one", "two", "none"], r"two\.png: 2 faces found.*\n.*none\.png: no face found"),
    ],
    ids=["no-face", "two-faces", "good-and-bad"],
)
async def test_images_without_exactly_one_face_are_refused_and_nothing_is_stored(
    served_models: dict[str, TritonModel],
    photos: dict[str, Path],
    tmp_path: Path,
    images: list[str],
    message: str,
) -> None:
    store = FaceStore(tmp_path / "faces.npz")
    detector, embedder = face_models(served_models, FacesConfig())
    with pytest.raises(EnrolmentRefused, match=message):
        await enrol(store, "someone", [photos[i] for i in images], detector, embedder)
    assert not store.path.exists()
    assert FaceStore(store.path).counts() == {}


async def test_enrol_list_remove_round_trip(
    served_models: dict[str, TritonModel], photos: dict[str, Path], tmp_path: Path
) -> None:
    store = FaceStore(tmp_path / "faces.npz")
    detector, embedder = face_models(served_models, FacesConfig())
    await enrol(store, "astronaut", [photos["one"], photos["one"]], detector, embedder)
    reloaded = FaceStore(store.path)
    assert reloaded.counts() == {"astronaut": 2}
    assert reloaded.embedding_size == 128 and reloaded.model == "face_embedder"
    match = reloaded.match(reloaded.embeddings[0], threshold=0.4)
    assert match is not None and match.name == "astronaut" and match.similarity == pytest.approx(1.0)
    assert reloaded.remove("astronaut") == 2
    reloaded.save()
    assert FaceStore(store.path).counts() == {}


async def test_store_of_another_embedding_size_is_refused_when_the_pipeline_starts(
    embedded_triton: EmbeddedTritonServer, tmp_path: Path
) -> None:
    store = FaceStore(tmp_path / "faces.npz")
    store.add("old-model-person", np.eye(1, 512, dtype=np.float32), ["old.jpg"], "w600k_r50")
    store.save()
    config = parse_config(
        f"""
triton: {{mode: external, url: "{embedded_triton.grpc_url}"}}
publishing: {{jsonl: {{enabled: false}}}}
faces: {{enabled: true}}
identities: {{faces_store: "{store.path}"}}
cameras: [{{name: door, url: door.mp4}}]
"""
    )
    pipeline = build_pipeline(
        config, stages=build_stages(config)
    )
    with pytest.raises(EmbeddingSizeMismatch, match=r"512-d embeddings from 'w600k_r50'.*128-d"):
        await pipeline.start()
    await pipeline.stop()
    assert not pipeline.cameras, "no camera starts after a refusal"


def _streamer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "--log-level", "WARNING", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )


def test_faces_cli_refuses_bad_images_with_one_line_each_then_enrols(
    embedded_triton: EmbeddedTritonServer, photos: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    store = tmp_path / "faces.npz"
    config.write_text(
        f'triton: {{mode: external, url: "{embedded_triton.grpc_url}"}}\n'
        f'identities: {{faces_store: "{store}"}}\n'
        "cameras: [{name: door, url: door.mp4}]\n"
    )
    refused = _streamer(
        "faces", "enroll", "Eileen", str(photos["none"]), str(photos["two"]), "--config", str(config)
    )
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, refused.stderr
    assert "none.png: no face found" in errors[0] and "two.png: 2 faces found" in errors[1]
    assert not store.exists()

    enrolled = _streamer("faces", "enroll", "Eileen", str(photos["one"]), "--config", str(config))
    assert enrolled.returncode == 0, enrolled.stderr
    listed = _streamer("faces", "list", "--config", str(config))
    assert listed.stdout.strip() == "Eileen: 1 image"
    removed = _streamer("faces", "remove", "Eileen", "--store", str(store))
    assert removed.returncode == 0 and "removed 'Eileen'" in removed.stdout
    missing = _streamer("faces", "remove", "Eileen", "--store", str(store))
    assert missing.returncode == 1 and "'Eileen' is not enrolled" in missing.stderr
