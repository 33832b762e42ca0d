"""The operator's YAML file, changed in place: comments, layout and `${ENV}` references survive.

ruamel.yaml's round-trip mode keeps what PyYAML would drop; only the keys a change names are
touched, so a camera whose URL is `${CAM_URL}` keeps that reference unless its URL is changed.
Saving is atomic (a temporary file beside it, fsync, rename, fsync of the folder) and keeps the
file's owner, group, mode and symlink (`write_atomically`).
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

NEW_FILE_MODE = 0o644
_SEQUENCE_ITEM = re.compile(r"^(?P<parent> *)[A-Za-z_][\w-]*:\s*(#.*)?\n(?P<dash> *)- ", re.MULTILINE)


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes lists the way this file already writes them."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long URL
    match = _SEQUENCE_ITEM.search(text)
    offset = max(0, len(match.group("dash")) - len(match.group("parent"))) if match else 2
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    return yaml


def plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain dicts, lists and scalars."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def commented(value: Any) -> Any:
    """JSON data as round-trip containers: new entries in block style, lists of plain values
    (points, classes) in flow style."""
    if isinstance(value, Mapping):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = commented(item)
        return mapping
    if isinstance(value, list):
        sequence = CommentedSeq([commented(item) for item in value])
        if value and all(isinstance(item, int | float | str | bool) for item in value):
            sequence.fa.set_flow_style()  # a point [x, y] or a class list stays on one line
        return sequence
    return value


class ConfigDocument:
    """One read of the file; change `cameras` through the methods, then `save()`."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self._yaml = _yaml(text)
        self.data: Any = self._yaml.load(text)
        if not isinstance(self.data, CommentedMap):
            self.data = CommentedMap()

    @classmethod
    def read(cls, path: Path) -> ConfigDocument:
        return cls(path, path.read_text(encoding="utf-8"))

    @property
    def cameras(self) -> CommentedSeq:
        cameras = self.data.get("cameras")
        if not isinstance(cameras, CommentedSeq):
            cameras = self.data["cameras"] = CommentedSeq()
        return cameras

    def index_of(self, name: str) -> int | None:
        for index, camera in enumerate(self.cameras):
            if isinstance(camera, Mapping) and camera.get("name") == name:
                return index
        return None

    def names(self) -> list[str]:
        return [str(c.get("name")) for c in self.cameras if isinstance(c, Mapping)]

    def append_camera(self, settings: Mapping[str, Any]) -> int:
        self.cameras.append(commented(dict(settings)))
        return len(self.cameras) - 1

    def update_camera(self, index: int, changes: Mapping[str, Any]) -> None:
        """Only the named keys change; a nested mapping merges; null removes the key (default)."""
        _merge(self.cameras[index], changes)

    def remove_camera(self, index: int) -> None:
        del self.cameras[index]

    def plain(self) -> Any:
        return plain(self.data)

    def dump(self) -> str:
        out = io.StringIO()
        self._yaml.dump(self.data, out)
        return out.getvalue()

    def save(self) -> None:
        write_atomically(self.path, self.dump())


class MemoryDocument(ConfigDocument):
    """A service started without a file: the same changes on the running config, never saved."""

    def __init__(self, config: Any) -> None:
        self.path = Path("<no file>")
        self.text = ""
        self._yaml = _yaml("")
        self.data = commented({
            **config.model_dump(exclude={"cameras"}, exclude_unset=True),
            "cameras": [c.model_dump(exclude_unset=True) for c in config.cameras],
        })

    def plain(self) -> Any:
        return dict(self.data)  # keeps SecretStr and Path objects, which validate as they are

    def save(self) -> None:
        pass


def _merge(target: CommentedMap, changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), Mapping):
            _merge(target[key], value)
        else:
            target[key] = commented(value)


# A write-back takes milliseconds: a temporary file older than this is left by a process killed
# while writing (the file itself is intact: it is replaced only once the temporary is complete).
INTERRUPTED_WRITE_AGE_S = 10.0
TEMPORARY_SUFFIX = ".tmp"


def temporary_beside(path: Path) -> tuple[int, str]:
    """A new temporary file next to `path`, named so that `remove_interrupted_writes` knows it."""
    folder = path.resolve().parent
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=folder)


def remove_interrupted_writes(path: Path, now: float | None = None) -> list[Path]:
    """Remove the temporary files that writes of `path` killed half-way left (kill -9, power cut);
    younger ones may be a write in progress and stay. Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    target = path.resolve()  # a symlinked config's writes happen beside the file it points to
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*{TEMPORARY_SUFFIX}"):
        try:
            if now - leftover.stat().st_mtime >= INTERRUPTED_WRITE_AGE_S and leftover.is_file():
                leftover.unlink()
                removed.append(leftover)
        except OSError:
            continue
    return removed


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one, even after a power cut.

    A symlinked config stays a symlink: the file it points to is what gets replaced. The new file
    keeps the old one's owner, group and mode; where the owner cannot be kept (a service not
    running as root, a file of another user), the file is rewritten in place instead, which keeps
    them, and every hard link, at the cost of atomicity.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    try:
        before: os.stat_result | None = target.stat()
    except FileNotFoundError:
        before = None
    if before is not None and not _can_give(before):
        _rewrite_in_place(target, text)
        return
    handle, temporary = temporary_beside(target)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            if before is not None:
                if (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
                    os.fchown(out.fileno(), before.st_uid, before.st_gid)
                os.fchmod(out.fileno(), stat.S_IMODE(before.st_mode))
            else:
                os.fchmod(out.fileno(), NEW_FILE_MODE)
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _can_give(before: os.stat_result) -> bool:
    """Whether a new file can be given the old one's owner and group (root can; others only
    their own files, in a group they belong to), and a single link would be replaced."""
    if before.st_nlink > 1:
        return False  # replacing would cut the other names off from the change
    if os.getuid() == 0:
        return True
    return before.st_uid == os.getuid() and (
        before.st_gid == os.getgid() or before.st_gid in os.getgroups()
    )


def _rewrite_in_place(target: Path, text: str) -> None:
    data = text.encode("utf-8")
    descriptor = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(descriptor, view[offset:], offset)
        os.ftruncate(descriptor, len(data))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
