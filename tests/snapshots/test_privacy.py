"""Event pictures and their index are the service user's alone, whatever the umask.

Previously the pictures' folder was 0755 and the pictures and `events.sqlite3` 0644: every local
user could look at the people the cameras saw.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from streamer.snapshots.archive import INDEX_FILE, picture_path
from tests.snapshots.test_retention import archive_in, picture, store_with_event
from tests.support.files import mode, usual_umask


def test_pictures_their_folders_and_the_events_index_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "snapshots"
    with usual_umask():
        archive = archive_in(directory)
        stored = picture(time.time(), seed=1)
        store_with_event(archive, stored)
    files = [
        picture_path(directory, stored.snapshot_id),
        picture_path(directory, stored.snapshot_id, frame=True),
        *sorted(directory.glob(f"{INDEX_FILE}*")),  # the index, its WAL and shared memory
    ]
    modes = {f.name: mode(f) for f in files}
    archive.close()
    assert {mode(directory), mode(directory / "images")} == {0o700}
    assert len(files) == 5 and modes == {f.name: 0o600 for f in files}


def test_a_folder_others_can_read_is_kept_but_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        archive_in(directory).close()
    assert mode(directory) == 0o755, "the operator's folder is left as it is"
    warned = [r.getMessage() for r in caplog.records if str(directory) in r.getMessage()]
    assert warned and "can be read by other users (mode 0755)" in warned[0], warned
    assert f"chmod 700 {directory}" in warned[0]
