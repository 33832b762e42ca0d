"""What the snapshot stage and its writer have done, exported as `streamer_stage_*{stage}`.

Fields marked `GAUGE` are levels (exported as gauges), the others only grow (counters). Each field
has one writer (the event loop or the writer thread), except those added to through `add`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

GAUGE = {"gauge": True}


@dataclass
class SnapshotStats:
    written: int = 0  # pictures (crop + annotated frame) on disk
    indexed: int = 0  # events added to the events index
    dropped_queue_full: int = 0  # the writer was behind: the event went without picture
    dropped_disk_floor: int = 0  # free space below `min_free_mb`: not written
    dropped_disk_full: int = 0  # the disk refused the write (full), or it failed: not written
    dropped_memory: int = 0  # a better view not held: `max_held_mb` reached
    index_dropped: int = 0  # events not indexed (writer far behind, or disk below the floor)
    write_errors: int = 0
    deleted_age: int = 0
    deleted_size: int = 0
    deleted_orphans: int = 0  # not in a whole index and older than its oldest picture
    adopted: int = 0  # pictures on disk the index did not name, indexed (rebuilt, or a crash)
    index_rebuilt: int = 0  # damaged indexes moved aside while running
    held_bytes: int = field(default=0, metadata=GAUGE)  # best views held in memory
    queue_depth: int = field(default=0, metadata=GAUGE)  # pictures waiting for the writer
    disk_bytes: int = field(default=0, metadata=GAUGE)  # pictures on disk
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, count: int = 1) -> None:
        """For the counters both the event loop and the writer thread add to (no lost update)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + count)
