"""CPU seconds spent by this process and by the inference server's process tree (Linux /proc).

The server's figure is the tritonserver process plus its descendants (the Python-backend stubs
that run the models), read from /proc/<pid>/stat (utime + stime). A process that exits during a
window takes its CPU with it: the bench's windows see none exit.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s() -> float:
    """This process, every thread: user + system seconds."""
    return time.process_time()


def thread_cpu_s(thread_id: int | None) -> float:
    """One thread of this process (its native id), user + system seconds; 0.0 when gone."""
    if thread_id is None:
        return 0.0
    fields = _stat_fields(thread_id, PROC / "self" / "task" / str(thread_id) / "stat")
    if fields is None or len(fields) <= 12:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _stat_fields(pid: int, path: Path | None = None) -> list[str] | None:
    try:
        text = (path or PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ... utime stime ...": comm may hold spaces and parentheses
    return text.rpartition(")")[2].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_s(pid: int | None) -> float:
    """User + system seconds of `pid` and its descendants; 0.0 when there is no such process."""
    if pid is None or not PROC.is_dir():
        return 0.0
    total = 0
    for member in tree_pids(pid):
        fields = _stat_fields(member)
        if fields is not None and len(fields) > 12:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS
