"""The config write-back leaves the file as the operator set it up: owner, group, mode, symlink.

Previously a service running as root made a file owned by another user root's, and replaced a
symlinked config with a plain file (the link's target never saw the change).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from streamer.config import load_config
from streamer.control.document import ConfigDocument

NOBODY = 65534
CONFIG = """\
# the operator's file
cameras:
  - name: lobby   # kept
    url: lobby.mp4
"""


def change(path: Path) -> None:
    document = ConfigDocument.read(path)
    document.update_camera(0, {"max_fps": 2})
    document.save()


def test_a_symlinked_config_stays_a_link_and_its_target_gets_the_change(tmp_path: Path) -> None:
    target = tmp_path / "real" / "streamer.yaml"
    target.parent.mkdir()
    target.write_text(CONFIG)
    target.chmod(0o640)
    link = tmp_path / "streamer.yaml"
    link.symlink_to(Path("real") / "streamer.yaml")
    change(link)
    assert link.is_symlink() and os.readlink(link) == "real/streamer.yaml"
    assert load_config(link).cameras[0].max_fps == 2
    assert "# kept" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["streamer.yaml"], "no temporary left"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_root_keeps_the_owner_group_and_mode_of_another_users_file(tmp_path: Path) -> None:
    path = tmp_path / "streamer.yaml"
    path.write_text(CONFIG)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o604)
    change(path)
    after = path.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (NOBODY, NOBODY, 0o604)
    assert load_config(path).cameras[0].max_fps == 2


def test_a_file_with_other_names_is_rewritten_in_place_so_every_name_sees_the_change(
    tmp_path: Path,
) -> None:
    """A hard-linked config (or one the service could not give back to its owner) is rewritten
    in place: same inode, owner and mode, every name changed."""
    path = tmp_path / "streamer.yaml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    other = tmp_path / "backup-name.yaml"
    os.link(path, other)
    inode = path.stat().st_ino
    change(path)
    assert path.stat().st_ino == inode and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(other).cameras[0].max_fps == 2
