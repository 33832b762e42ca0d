"""Three instances sharing one identity gallery through one Redis: who gets one global id.

    python -m studies.shared_identities [--json FILE] [--no-restart-run] [--geometry-only]

Three `streamer run` processes (one camera each: north, south, east) use one Triton server
(`triton.mode: external`, started here) and one Redis (`identities.gallery.backend: redis`, no
persistence). Each camera plays the sample clip, transformed so that no two see the same pixels
(north: cut on the left, darker; south: mirrored, hue turned; east: zoomed in, brighter and bluer),
and shifted in time: north plays it from 0 s, south from 30 s, east from 60 s (black before and
after), like people walking from one camera group to the next. Three runs: the three cameras in
one instance with the in-process gallery (what sharing is compared with), the three instances
undisturbed, and the three instances with Redis killed (-9) and started again empty between
south's clip and east's. `--geometry-only` keeps each view's colours (cut, mirrored, zoomed only):
what the store does when ReID links more people.

Figures, per run:
* people: tracks of north with a global id whose person was tracked on south and on east too
  (boxes mapped back to the clip and matched by IoU); the share with one global id on all three
  (after the published `identity_merge` events), and per pair of cameras;
* link time: from a person's first tracked frame on south (east) to the first frame where the track
  carries the id of the person's north track;
* store: changes written and applied, merges, snapshots, and for the restart how long until every
  track seen before was in the store again and whether a fresh instance reading the store then
  finds every track under its final id (identities lost);
* propagation: in-process, the time from one instance's assignment to the other's replica
  holding it (100 tracks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import redis.asyncio as redis

from streamer.config import GalleryConfig
from streamer.identities.gallery import Sighting
from streamer.identities.shared import SharedGallery
from streamer.inference.catalog import entry, prepare
from streamer.inference.server import EmbeddedTritonServer
from tests.publishing.brokers import BrokerProcess, redis_server
from tests.support.checkout import SAMPLE_CLIP

WIDTH, HEIGHT, FPS = 768, 576, 10
CLIP_FRAMES = 200
TAIL_S = 5
RESTART_AT_S = 55.0  # after south's clip (30-50 s), before east's (60-80 s)
RESTART_DOWN_S = 2.0
MIN_COMMON_FRAMES = 5
MIN_IOU = 0.5
MODELS = ["person_detector", "person_reid"]


@dataclass(frozen=True)
class View:
    """One camera's view of the clip: a crop resized to the frame, maybe mirrored, recoloured."""

    name: str
    offset_s: int
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in the clip
    mirrored: bool
    recolour: Callable[[np.ndarray], np.ndarray]

    def show(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        out = cv2.resize(image[y0:y1, x0:x1], (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
        if self.mirrored:
            out = out[:, ::-1]
        return np.ascontiguousarray(self.recolour(out))

    def to_clip(self, box: list[float]) -> np.ndarray:
        """A box in this camera's frame, in the clip's pixels."""
        x1, y1, x2, y2 = box
        if self.mirrored:
            x1, x2 = WIDTH - x2, WIDTH - x1
        cx0, cy0, cx1, cy1 = self.crop
        sx, sy = (cx1 - cx0) / WIDTH, (cy1 - cy0) / HEIGHT
        return np.array([cx0 + x1 * sx, cy0 + y1 * sy, cx0 + x2 * sx, cy0 + y2 * sy])


def unchanged(image: np.ndarray) -> np.ndarray:
    return image


def darker(image: np.ndarray) -> np.ndarray:
    return cv2.convertScaleAbs(image, alpha=0.85, beta=-10)


def hue_turned(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 12) % 180
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def brighter_bluer(image: np.ndarray) -> np.ndarray:
    lut = np.clip(255 * (np.arange(256) / 255) ** 0.8, 0, 255).astype(np.uint8)
    out = cv2.LUT(image, lut).astype(np.int16)
    out[..., 0] += 18
    out[..., 2] -= 8
    return np.clip(out, 0, 255).astype(np.uint8)


VIEWS = [
    View("north", 0, (38, 0, WIDTH, 547), False, darker),
    View("south", 30, (0, 0, WIDTH, HEIGHT), True, hue_turned),
    View("east", 60, (58, 43, 710, 533), False, brighter_bluer),
]
TOTAL_S = max(v.offset_s for v in VIEWS) + CLIP_FRAMES // FPS + TAIL_S


def clip_frames() -> list[np.ndarray]:
    with av.open(str(SAMPLE_CLIP)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def write_view(view: View, frames: list[np.ndarray], path: Path) -> Path:
    """The view's file: black, the transformed clip from `offset_s`, black until TOTAL_S."""
    black = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    lead, total = view.offset_s * FPS, TOTAL_S * FPS
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "x264-params": f"keyint={FPS}:bframes=0"}
        for index in range(total):
            clip_index = index - lead
            image = view.show(frames[clip_index]) if 0 <= clip_index < len(frames) else black
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    return path


def instance_config(
    views: list[View], clips: dict[str, Path], output: Path, triton_url: str, redis_port: int | None
) -> dict[str, Any]:
    """One instance with these cameras; `redis_port` None: the in-process gallery."""
    gallery: dict[str, Any] = {"backend": "memory"}
    if redis_port is not None:
        gallery = {"backend": "redis", "instance": views[0].name, "redis": {"port": redis_port}}
    return {
        "triton": {"mode": "external", "url": triton_url},
        "reid": {"enabled": True},
        "identities": {"gallery": gallery},
        "publishing": {"jsonl": {"enabled": True, "path": str(output)}},
        "dashboard": {"enabled": False},
        "cameras": [{"name": v.name, "url": str(clips[v.name]), "pacing": "realtime"} for v in views],
    }


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    restart: bool
    folder: Path
    single: bool = False  # one instance with the three cameras and the in-process gallery
    outputs: dict[str, Path] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    restart_figures: dict[str, Any] = field(default_factory=dict)
    lost: int | None = None  # tracks a fresh instance does not find under their final id


async def log_tracks(client: redis.Redis) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    entries: Any = await client.xrange("streamer:gallery:log")
    for _entry_id, fields in entries:
        record = json.loads(fields["r"])
        if record.get("k") == "track":
            keys.add((record["cam"], record["tid"]))
    return keys


async def first_frame_ts(path: Path, timeout_s: float = 120.0) -> float:
    """Wall time of the first frame north published (the runs' common clock)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                message = json.loads(line)
                if message.get("type") == "frame":
                    return float(message["capture_ts"]) - (int(message["frame_index"]) - 1) / FPS
        await asyncio.sleep(0.2)
    raise TimeoutError("north published no frame")


async def restart_store(store: BrokerProcess, started: float, run: Run) -> None:
    """kill -9 at RESTART_AT_S, start it empty RESTART_DOWN_S later; time the store's rebuild."""
    await asyncio.sleep(max(0.0, started + RESTART_AT_S - time.time()))
    client = redis.Redis(port=store.port, decode_responses=True)
    try:
        before = await log_tracks(client)
    finally:
        await client.aclose()
    store.stop(crash=True)
    await asyncio.sleep(RESTART_DOWN_S)
    store.start()
    restarted = time.monotonic()
    client = redis.Redis(port=store.port, decode_responses=True)
    try:
        while True:
            now = await log_tracks(client)
            if before <= now:
                break
            if time.monotonic() - restarted > 60:
                break
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    run.restart_figures = {
        "tracks_in_store_before": len(before),
        "rebuilt_after_s": round(time.monotonic() - restarted, 2),
        "tracks_missing_after_rebuild": len(before - now),
    }


async def play(run: Run, triton_url: str, clips: dict[str, Path]) -> None:
    store = redis_server(run.folder / "redis", persistent=False)
    store.start()
    processes = []
    groups = [VIEWS] if run.single else [[view] for view in VIEWS]
    try:
        for group in groups:
            name = "all" if run.single else group[0].name
            output, config = run.folder / f"{name}.jsonl", run.folder / f"{name}.yaml"
            config.write_text(json.dumps(instance_config(
                group, clips, output, triton_url, None if run.single else store.port
            )))
            for view in group:
                run.outputs[view.name], run.logs[view.name] = output, run.folder / f"{name}.log"
            with open(run.folder / f"{name}.log", "wb") as log_file:
                processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "streamer.cli", "run", str(config),
                    stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                ))
        started = await first_frame_ts(run.outputs["north"])
        restart = asyncio.create_task(restart_store(store, started, run)) if run.restart else None
        for process in processes:
            await asyncio.wait_for(process.wait(), TOTAL_S + 120)
        if restart is not None:
            await restart
        if not run.single:
            run.lost = await audit(run, store.port)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        store.stop()


# -- reading what the instances published -------------------------------------------------------


@dataclass
class Track:
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # clip frame -> box in clip pixels
    ids: list[tuple[float, int]] = field(default_factory=list)  # (capture_ts, global id) per frame
    first_ts: float | None = None

    @property
    def last_id(self) -> int | None:
        return self.ids[-1][1] if self.ids else None


class Merges:
    """The identity_merge events as a consumer keeps them: a union-find, smallest id as root."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, global_id: int) -> int:
        while global_id in self.parent:
            global_id = self.parent[global_id]
        return global_id

    def join(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def read_instance(
    view: View, path: Path, merges: Merges, merge_events: list[dict[str, Any]]
) -> dict[int, Track]:
    tracks: dict[int, Track] = {}
    lead = view.offset_s * FPS
    for line in path.read_text().splitlines():
        message = json.loads(line)
        if message.get("type") == "identity_merge":
            merges.join(message["global_id"], message["merged_id"])
            merge_events.append(message)
            continue
        if message.get("type") != "frame" or message.get("camera") != view.name:
            continue
        clip_index = int(message["frame_index"]) - 1 - lead
        for row in message["tracks"]:
            if row.get("track_id") is None:
                continue
            track = tracks.setdefault(int(row["track_id"]), Track())
            if track.first_ts is None:
                track.first_ts = float(message["capture_ts"])
            if 0 <= clip_index < CLIP_FRAMES:
                track.boxes[clip_index] = view.to_clip(row["box"])
            if row.get("global_id") is not None:
                track.ids.append((float(message["capture_ts"]), int(row["global_id"])))
    return tracks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def counterparts(ours: dict[int, Track], theirs: dict[int, Track]) -> dict[int, int]:
    """Our track -> their track of the same person (the most overlapping one over the clip)."""
    scored = []
    for a, track_a in ours.items():
        for b, track_b in theirs.items():
            common = track_a.boxes.keys() & track_b.boxes.keys()
            if len(common) < MIN_COMMON_FRAMES:
                continue
            score = float(np.mean([iou(track_a.boxes[i], track_b.boxes[i]) for i in common]))
            if score >= MIN_IOU:
                scored.append((score, a, b))
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    for _score, a, b in sorted(scored, reverse=True):
        if a not in pairs and b not in taken:
            pairs[a] = b
            taken.add(b)
    return pairs


def link_times(ours: dict[int, Track], theirs: dict[int, Track], pairs: dict[int, int],
               merges: Merges) -> list[float]:
    """Per person linked: from the track's first frame on `theirs` to its first frame carrying
    the id of the person's track on `ours`."""
    times = []
    for a, b in pairs.items():
        target = ours[a].last_id
        track = theirs[b]
        if target is None or track.first_ts is None:
            continue
        target = merges.find(target)
        linked = next((ts for ts, gid in track.ids if merges.find(gid) == target), None)
        if linked is not None and merges.find(track.last_id or -1) == target:
            times.append(linked - track.first_ts)
    return times


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"people": 0, "median_s": None, "p90_s": None, "max_s": None}
    ordered = sorted(values)
    return {
        "people": len(values),
        "median_s": round(statistics.median(ordered), 2),
        "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        "max_s": round(ordered[-1], 2),
    }


def store_figures(log: Path) -> dict[str, Any]:
    """What an instance's log says of the store: reconnections and lost logs."""
    text = log.read_text()
    back = [float(m) for m in re.findall(r"identity store \S+ back after ([0-9.]+) s", text)]
    return {"back_after_s": back, "log_lost_lines": text.count("lost its log")}


def analyse(run: Run) -> dict[str, Any]:
    merges, merge_events = Merges(), list[dict[str, Any]]()
    tracks = {v.name: read_instance(v, run.outputs[v.name], merges, merge_events) for v in VIEWS}
    north, south, east = (tracks[v.name] for v in VIEWS)
    to_south, to_east = counterparts(north, south), counterparts(north, east)
    south_to_east = counterparts(south, east)

    def final(track: Track) -> int | None:
        return None if track.last_id is None else merges.find(track.last_id)

    people = [a for a in north if final(north[a]) is not None and a in to_south and a in to_east
              and final(south[to_south[a]]) is not None and final(east[to_east[a]]) is not None]
    same_all = [a for a in people
                if final(north[a]) == final(south[to_south[a]]) == final(east[to_east[a]])]

    def pair_share(ours: dict[int, Track], theirs: dict[int, Track], pairs: dict[int, int]) -> str:
        known = [(a, b) for a, b in pairs.items()
                 if final(ours[a]) is not None and final(theirs[b]) is not None]
        same = sum(final(ours[a]) == final(theirs[b]) for a, b in known)
        return f"{same}/{len(known)}"

    ids_per_person = [len({final(north[a]), final(south[to_south[a]]), final(east[to_east[a]])})
                      for a in people]
    return {
        "tracks_with_global_id": {name: sum(t.last_id is not None for t in ts.values())
                                  for name, ts in tracks.items()},
        "people_on_all_three": len(people),
        "same_global_id_on_all_three": len(same_all),
        "share": round(len(same_all) / len(people), 3) if people else None,
        "distinct_ids_per_person": dict(sorted(
            (str(k), ids_per_person.count(k)) for k in set(ids_per_person))),
        "pairs_same_id": {"north-south": pair_share(north, south, to_south),
                          "north-east": pair_share(north, east, to_east),
                          "south-east": pair_share(south, east, south_to_east)},
        "link_time_south_to_north": summary(link_times(north, south, to_south, merges)),
        "link_time_east_to_north": summary(link_times(north, east, to_east, merges)),
        "identity_merge_events": len(merge_events),
        "identity_merge_event_ids_distinct": len({m["id"] for m in merge_events}),
        "store": {v.name: store_figures(run.logs[v.name]) for v in VIEWS},
        "restart": run.restart_figures or None,
        "tracks_not_in_store_under_final_id": run.lost,
        "_tracks": tracks,
        "_merges": merges,
    }


async def audit(run: Run, port: int) -> int:
    """Tracks (with a global id) that a fresh instance reading the store does not find under the
    id they ended with: identities the store lost."""
    merges, events = Merges(), list[dict[str, Any]]()
    finals: dict[tuple[str, int], int] = {}
    for view in VIEWS:
        for track_id, track in read_instance(view, run.outputs[view.name], merges, events).items():
            if track.last_id is not None:
                finals[(view.name, track_id)] = track.last_id
    gallery = SharedGallery(GalleryConfig.model_validate(
        {"backend": "redis", "instance": "auditor", "redis": {"port": port}}))
    await gallery.bind(512, "person_reid")
    await gallery.start()
    try:
        await asyncio.sleep(2.0)
        return sum(
            gallery.global_id_of(*key) is None
            or merges.find(gallery.global_id_of(*key) or 0) != merges.find(final)
            for key, final in finals.items()
        )
    finally:
        await gallery.close()


async def propagation(port: int, count: int = 100) -> dict[str, Any]:
    """One instance assigns a track; how long until the other's replica holds it."""
    settings = GalleryConfig.model_validate({"backend": "redis", "match_threshold": 0.99,
                                             "redis": {"port": port}})
    north, south = SharedGallery(settings, instance="a"), SharedGallery(settings, instance="b")
    rng = np.random.default_rng(0)
    delays = []
    for gallery in (north, south):
        await gallery.bind(512, "person_reid")
        await gallery.start()
    try:
        for track in range(count):
            vector = rng.normal(size=512).astype(np.float32)
            started = time.monotonic()
            await north.assign(Sighting("gate", track, vector / np.linalg.norm(vector), time.time()))
            while south.global_id_of("gate", track) is None:
                await asyncio.sleep(0.001)
            delays.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
    finally:
        await north.close()
        await south.close()
    ordered = sorted(delays)
    return {"tracks": count, "median_ms": round(1000 * statistics.median(ordered), 1),
            "p99_ms": round(1000 * ordered[int(0.99 * (count - 1))], 1),
            "max_ms": round(1000 * ordered[-1], 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-restart-run", action="store_true", help="leave out the restart run")
    parser.add_argument("--geometry-only", action="store_true", help="views keep the clip's colours")
    args = parser.parse_args()
    views = [View(v.name, v.offset_s, v.crop, v.mirrored, unchanged) for v in VIEWS]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="streamer-shared-ids-") as scratch:
        folder = Path(scratch)
        frames = clip_frames()
        clips = {v.name: write_view(v, frames, folder / f"{v.name}.mp4")
                 for v in (views if args.geometry_only else VIEWS)}
        repository = folder / "models"
        for model in MODELS:
            prepare(entry(model), repository)
        server = EmbeddedTritonServer(repository, MODELS)
        await server.start()
        try:
            runs = {"one_instance": Run(False, folder / "one", single=True),
                    "undisturbed": Run(False, folder / "undisturbed")}
            if not args.no_restart_run:
                runs["restart"] = Run(True, folder / "restart")
            for name, run in runs.items():
                run.folder.mkdir()
                await play(run, server.grpc_url, clips)
                figures = analyse(run)
                results[name] = {k: v for k, v in figures.items() if not k.startswith("_")}
                print(json.dumps({name: results[name]}), flush=True)
            store = redis_server(folder / "redis-propagation", persistent=False)
            store.start()
            try:
                results["propagation"] = await propagation(store.port)
            finally:
                store.stop()
            print(json.dumps({"propagation": results["propagation"]}), flush=True)
        finally:
            await server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
