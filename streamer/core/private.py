"""Files about people are the service user's alone: event pictures, the events index, spill files
with embeddings, JSON lines, the faces store.

What the service creates is private whatever the umask: folders 0700, files 0600. What already
exists is left as the operator made it (a group may be meant to read it), with a warning when
other users can read it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
FOLDER_MODE = 0o700
READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


def private_folder(path: Path, holds: str) -> None:
    """Create `path` 0700 (missing parents as the umask says), or warn when it exists and other
    users can read it. `holds`: what it holds, for the warning ("event pictures")."""
    if path.is_dir():
        warn_if_readable_by_others(path, holds)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=FOLDER_MODE)
        os.chmod(path, FOLDER_MODE)  # mkdir's mode is narrowed by the umask, never widened


def open_private(path: Path | str, flags: int, holds: str) -> int:
    """`os.open` that creates the file 0600; an existing file readable by others is warned about."""
    try:
        descriptor = os.open(path, flags & ~os.O_CREAT)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
        descriptor = os.open(path, flags, FILE_MODE)
        os.fchmod(descriptor, FILE_MODE)
        return descriptor
    warn_if_readable_by_others(Path(path), holds, os.fstat(descriptor).st_mode)
    return descriptor


def write_private(path: Path, data: bytes) -> None:
    """Write a new file (or replace one's contents) that only the service's user can read."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)


def warn_if_readable_by_others(path: Path, holds: str, mode: int | None = None) -> bool:
    """Log a warning when users other than the owner can read `path`; True when they can."""
    if mode is None:
        try:
            mode = path.stat().st_mode
        except OSError:
            return False
    if not mode & READABLE_BY_OTHERS:
        return False
    fix = FOLDER_MODE if stat.S_ISDIR(mode) else FILE_MODE
    log.warning(
        "%s (%s) can be read by other users (mode %04o); it holds %s: chmod %o %s",
        path, "folder" if stat.S_ISDIR(mode) else "file", stat.S_IMODE(mode), holds, fix, path,
    )
    return True
