"""The faces store is biometric data: private file modes, a warning for an exposed store, and a
corrupt (half-copied) file as one clear error at start and the last good store kept on reload."""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from streamer.config import StreamerConfig, parse_config
from streamer.core.stats import PartState
from streamer.identities.enrolment import CorruptFaceStore, FaceStore
from streamer.identities.stage import IdentityStage
from streamer.inference.client import TritonModel

SIZE = 128


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _store_with(path: Path, *names: str) -> FaceStore:
    store = FaceStore(path)
    for index, name in enumerate(names):
        store.add(name, np.eye(1, SIZE, index, dtype=np.float32), [f"{name}.jpg"], "face_embedder")
    store.save()
    return store


def _half_copied(good: Path, target: Path) -> None:
    """What `cp` leaves while it is still copying: the first half of the file, written in place."""
    data = good.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def test_store_is_written_0600_in_a_folder_created_0700(tmp_path: Path) -> None:
    path = tmp_path / "private" / "faces.npz"
    store = _store_with(path, "alice")
    with store.editing():
        store.add("bob", np.eye(1, SIZE, 1, dtype=np.float32), ["bob.jpg"], "face_embedder")

    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert _mode(store.lock_path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [".faces.npz.lock", "faces.npz"]


def test_opening_a_store_others_can_read_warns_once_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "faces.npz"
    _store_with(path, "alice")
    path.chmod(0o644)  # as older versions wrote it

    with caplog.at_level(logging.WARNING, logger="streamer.identities"):
        FaceStore(path)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{path} is readable by other users (mode 0644)" in warnings[0]
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="streamer.identities"):
        FaceStore(path)
    assert not caplog.records


def test_a_half_copied_store_is_one_error_naming_its_path(tmp_path: Path) -> None:
    good = _store_with(tmp_path / "good.npz", "alice").path
    broken = tmp_path / "faces.npz"
    _half_copied(good, broken)

    with pytest.raises(CorruptFaceStore) as caught:
        FaceStore(broken)

    message = str(caught.value)
    assert message.startswith(f"{broken}: not a readable faces store (") and "\n" not in message


async def test_service_start_with_a_corrupt_store_says_so_in_one_line_and_runs_without_names(
    served_models: dict[str, TritonModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store is optional for the service: one ERROR naming it, the part reported unavailable,
    faces unnamed until a readable file replaces it (picked up as enrolments are)."""
    good = _store_with(tmp_path / "good.npz", "alice").path
    broken = tmp_path / "faces.npz"
    _half_copied(good, broken)
    stage = IdentityStage(_config(broken))

    with caplog.at_level(logging.ERROR, logger="streamer.identities"):
        await stage.start(served_models)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert re.match(rf"^{re.escape(str(broken))}: not a readable faces store \(", errors[0])
    assert stage.health.state == PartState.UNAVAILABLE
    store = stage.face_store
    assert store is not None and store.people == 0

    _store_with(tmp_path / "repaired.npz", "alice", "bob").path.replace(broken)
    store.refresh_if_changed()
    assert store.problem is None and store.people == 2


async def test_service_logs_at_start_the_store_it_reads_and_how_many_people(
    served_models: dict[str, TritonModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _store_with(tmp_path / "faces.npz", "alice", "bob").path
    with caplog.at_level(logging.INFO, logger="streamer.identities"):
        await IdentityStage(_config(path)).start(served_models)
    assert f"faces store {path}: 2 people, 2 images" in caplog.text


def test_reload_of_a_corrupt_store_keeps_the_last_good_one_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "faces.npz"
    live = _store_with(path, "alice")  # what the service loaded at start
    newer = _store_with(tmp_path / "newer.npz", "alice", "bob").path
    _half_copied(newer, path)

    with caplog.at_level(logging.ERROR, logger="streamer.identities"):
        for _ in range(5):  # once per face matched
            live.refresh_if_changed()
            match = live.match(np.eye(1, SIZE, 0, dtype=np.float32)[0], threshold=0.5)
            assert match is not None and match.name == "alice", "the last good store is kept"

    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: not a readable faces store (")
    assert errors[0].endswith("still using the 1 people loaded before")

    path.write_bytes(newer.read_bytes())  # the copy completes
    live.refresh_if_changed()
    assert live.counts() == {"alice": 1, "bob": 1}


def _config(store: Path) -> StreamerConfig:
    return parse_config(
        f"""
faces: {{enabled: true}}
identities: {{faces_store: "{store}"}}
cameras: [{{name: door, url: door.mp4}}]
"""
    )
