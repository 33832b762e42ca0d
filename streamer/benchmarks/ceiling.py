"""The ceiling: the best raw configuration of the prepared detector in-process.

A grid of batch sizes x {one session of N threads, two sessions of one thread each run from two
threads (what the embedded server's two instances do)}, no I/O, no decoding, on letterboxed frames
of the clip. Each configuration runs a few short timed passes; the best pass is its figure (a
ceiling should not carry noise).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamer.benchmarks.report import GridCell

BATCHES = (1, 2, 4, 8)
PASS_S = 0.6
PASSES = 3


def session(model_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def configurations() -> list[tuple[int, int]]:
    """(sessions, threads per session): one session on every core; two of one thread each."""
    cores = os.cpu_count() or 1
    return [(1, cores), (2, 1)]


def batches_of(inputs: Sequence[np.ndarray], batch: int) -> list[np.ndarray]:
    """Letterboxed HxWx3 frames stacked `batch` at a time (the remainder dropped)."""
    usable = len(inputs) - len(inputs) % batch
    return [np.stack(inputs[i : i + batch]) for i in range(0, usable, batch)]


def timed_pass(sessions: Sequence[ort.InferenceSession], batches: list[np.ndarray], seconds: float) -> float:
    """Every session runs batches from its own thread until `seconds` pass; frames per second."""
    counts = [0] * len(sessions)
    start = threading.Barrier(len(sessions) + 1)
    deadline = [0.0]

    def work(slot: int, session: ort.InferenceSession) -> None:
        start.wait()
        index = slot
        while time.perf_counter() < deadline[0]:
            batch = batches[index % len(batches)]
            session.run(None, {"frames": batch})
            counts[slot] += len(batch)
            index += len(sessions)

    threads = [
        threading.Thread(target=work, args=(slot, s), daemon=True) for slot, s in enumerate(sessions)
    ]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def measure_grid(
    model_path: Path,
    inputs: Sequence[np.ndarray],
    batches: Sequence[int] = BATCHES,
    passes: int = PASSES,
    pass_s: float = PASS_S,
) -> list[tuple[int, int, int, float]]:
    """(batch, sessions, threads, best FPS) for every configuration of the grid, once."""
    found = []
    for sessions_count, threads in configurations():
        sessions = [session(model_path, threads) for _ in range(sessions_count)]
        for batch in batches:
            stacked = batches_of(inputs, batch)
            for s in sessions:  # warm-up: first runs allocate
                s.run(None, {"frames": stacked[0]})
            best = max(timed_pass(sessions, stacked, pass_s) for _ in range(passes))
            found.append((batch, sessions_count, threads, best))
    return found


def merge(repeats: Sequence[list[tuple[int, int, int, float]]]) -> list[GridCell]:
    """One cell per configuration, holding its figure from every repeat."""
    cells: dict[tuple[int, int, int], list[float]] = {}
    for grid in repeats:
        for batch, sessions, threads, fps in grid:
            cells.setdefault((batch, sessions, threads), []).append(fps)
    return [
        GridCell(batch=b, sessions=s, threads=t, fps=tuple(round(v, 1) for v in values))
        for (b, s, t), values in cells.items()
    ]
