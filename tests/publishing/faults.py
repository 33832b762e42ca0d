"""Faults for the publishing tests: a tiny real filesystem, a disk that fills up, a pipe nobody reads."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PIPE_CHUNK = 1 << 16


@contextlib.contextmanager
def tiny_filesystem(folder: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (a real ENOSPC); skips where mounting is not allowed."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("no mount/umount binaries here, cannot make a tiny filesystem")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on {folder} (needs root/CAP_SYS_ADMIN): "
                    f"{done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        if subprocess.run([umount, str(folder)], capture_output=True, check=False).returncode:
            subprocess.run([umount, "-l", str(folder)], capture_output=True, check=False)


class FullDisk:
    """While `full`, os.write to the file at `path` fails with ENOSPC after `room` more bytes.

    The suite's stand-in for a full disk where no tiny filesystem can be mounted; every other
    write, and everything else about the file, is real.
    """

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch, room: int = 0) -> None:
        self.path = path
        self.room = room
        self.full = True
        self.refused = 0
        self._write = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if not self.full or not self._is_target(fd):
            return self._write(fd, data)
        if self.room <= 0:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._write(fd, bytes(data)[: self.room])  # a short write, as a real disk does
        self.room -= written
        return written

    def _is_target(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False


def fill_pipe(fd: int) -> int:
    """Write to a pipe until it is full, so the next blocking write blocks; returns bytes written."""
    os.set_blocking(fd, False)
    filled = 0
    try:
        while True:
            filled += os.write(fd, b"\0" * PIPE_CHUNK)
    except BlockingIOError:
        return filled
    finally:
        os.set_blocking(fd, True)
