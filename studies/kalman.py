"""The tracker's Kalman cost, with OpenBLAS left to its default threads and pinned to one.

`python -m studies.kalman` (from the checkout) runs the measurement twice, each time in a fresh
interpreter (OpenBLAS reads `OPENBLAS_NUM_THREADS` once, when numpy loads it): once without that
variable, as a library user of `trackers/` gets it, once with `OPENBLAS_NUM_THREADS=1`, as the
`streamer` CLI sets it. Other variables (`OPENBLAS_CORETYPE`, ...) are passed on unchanged.

Each run reports microseconds per `KalmanFilterXYAH.update` call for 1, 8 and 30 tracks, and per
`ByteTrack.update` of a synthetic scene of 20 walking people: wall time, and CPU time of the whole
process (every thread: OpenBLAS workers spinning around a small solve show up there, while
another core's wall time does not). Each figure is the minimum over rounds: these machines are
shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamer.benchmarks.scenes import SCENE_PEOPLE, random_boxes, walking_people
from trackers import ByteTrack, ByteTrackSettings
from trackers.kalman import KalmanFilterXYAH, xyxy_to_xyah

CHECKOUT = Path(__file__).resolve().parents[1]
US = 1_000_000.0
TRACK_COUNTS = (1, 8, 30)
CALLS = 2000
ROUNDS = 5
THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"


def _per_call_us(call: Callable[[], object], calls: int, rounds: int) -> dict[str, float]:
    """Minimum over rounds of the wall and process-CPU microseconds per call."""
    for _ in range(calls // 10):
        call()
    wall, cpu = [], []
    for _ in range(rounds):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        wall.append((time.perf_counter() - wall_start) / calls * US)
        cpu.append((time.process_time() - cpu_start) / calls * US)
    return {"wall_us": round(min(wall), 1), "cpu_us": round(min(cpu), 1)}


def kalman_update_us(tracks: int, calls: int = CALLS, rounds: int = ROUNDS) -> dict[str, float]:
    """Cost of one `KalmanFilterXYAH.update` of `tracks` predicted states."""
    rng = np.random.default_rng(tracks)
    kalman = KalmanFilterXYAH(ByteTrackSettings())
    means, covariances = kalman.initiate(xyxy_to_xyah(random_boxes(rng, tracks)))
    for _ in range(3):
        means, covariances = kalman.predict(means, covariances)
        means, covariances = kalman.update(means, covariances, means[:, :4] + rng.normal(size=(tracks, 4)))
    means, covariances = kalman.predict(means, covariances)
    measurements = means[:, :4] + rng.normal(size=(tracks, 4))
    return _per_call_us(lambda: kalman.update(means, covariances, measurements), calls, rounds)


def bytetrack_frame_us(rounds: int = ROUNDS) -> dict[str, float]:
    """Cost of one `ByteTrack.update` per frame of the synthetic scene (every track matched)."""
    frames = walking_people()
    scores = np.full(SCENE_PEOPLE, 0.9)
    best: dict[str, float] = {}
    for _ in range(rounds):
        tracker = ByteTrack(ByteTrackSettings())
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for boxes in frames:
            tracker.update(boxes, scores)
        figures = {
            "wall_us": (time.perf_counter() - wall_start) / len(frames) * US,
            "cpu_us": (time.process_time() - cpu_start) / len(frames) * US,
        }
        best = {k: round(min(v, best.get(k, v)), 1) for k, v in figures.items()}
    return best


def measure() -> dict[str, Any]:
    """Every figure, in this interpreter's OpenBLAS setting."""
    return {
        THREADS_VARIABLE: os.environ.get(THREADS_VARIABLE),
        "update": {str(k): kalman_update_us(k) for k in TRACK_COUNTS},
        "bytetrack_frame": bytetrack_frame_us(),
    }


def run_in_child(threads: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop(THREADS_VARIABLE, None)
    if threads is not None:
        env[THREADS_VARIABLE] = threads
    done = subprocess.run(
        [sys.executable, "-m", "studies.kalman", "--child"],
        env=env, check=True, capture_output=True, text=True, cwd=CHECKOUT,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def report(results: list[dict[str, Any]]) -> str:
    """One row per figure; per run two columns: wall and CPU microseconds."""
    names = [
        "unset" if r[THREADS_VARIABLE] is None else f"={r[THREADS_VARIABLE]}" for r in results
    ]
    header = f"{'us per call':<28}" + "".join(f"{n + ' wall':>14}{n + ' cpu':>14}" for n in names)
    rows = [(f"kalman update, {k} tracks", results_of("update", str(k))) for k in TRACK_COUNTS]
    rows.append((f"bytetrack frame, {SCENE_PEOPLE} people", results_of("bytetrack_frame", None)))
    lines = [f"{THREADS_VARIABLE} unset, then =1 (minimum over {ROUNDS} rounds)", header]
    for label, pick in rows:
        cells = [pick(r) for r in results]
        lines.append(f"{label:<28}" + "".join(f"{c['wall_us']:>14.1f}{c['cpu_us']:>14.1f}" for c in cells))
    return "\n".join(lines)


def results_of(key: str, sub: str | None) -> Callable[[dict[str, Any]], dict[str, float]]:
    def pick(result: dict[str, Any]) -> dict[str, float]:
        figures: dict[str, float] = result[key][sub] if sub is not None else result[key]
        return figures

    return pick


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help="measure here, print JSON")
    parser.add_argument("--json", action="store_true", help="print both runs as JSON")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure()))
        return 0
    results = [run_in_child(None), run_in_child("1")]
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
