"""File modes as a test checks them: under the usual umask, whatever the test runner's is."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def usual_umask() -> Iterator[None]:
    """Umask 022, under which files are created 0644 unless the code asks for less."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
