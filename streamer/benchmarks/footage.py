"""Footage with idle periods, built from the sample clip, for the gating bench and tests.

Real surveillance cameras look at empty scenes most of the day; the sample clip (OpenCV's
`vtest.avi`, people walking in every frame) does not. This builds a clip that does, the same way
every time (seeded):

1. The background plate is the per-pixel median of every 8th frame of the source clip (the
   walkers move on, the street stays).
2. Idle frames are the plate with sensor noise: independent Gaussian noise per pixel and channel
   in every frame (sigma 2.5 grey levels) and a slow global brightness drift (a sine of
   amplitude 3 grey levels and period 40 s, on every frame, people segments included).
3. Real segments of the source clip are spliced in: cycles of 12 s idle then 3 s of the real
   clip (from source frames 100, 300, 500 and 700), four cycles, so people are present 20% of
   the 60 s and appear with a cut, like someone stepping into view.
4. Encoded as H.264 (libx264, yuv420p, CRF 23, GOP 10) at the source's 10 fps.

The file goes to a cache folder outside the repository (`$STREAMER_CACHE`, default
`/tmp/streamer-cache`), named by a hash of the recipe, with a JSON sidecar listing the frames with
people. Build it with `python -m streamer.benchmarks.footage` (prints the path).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from streamer.core.assets import assets_dir

CACHE_ENV_VAR = "STREAMER_CACHE"
DEFAULT_CACHE = Path("/tmp/streamer-cache")
SOURCE_CLIP = "videos/vtest.avi"
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """Every number that shapes the footage; the cache file's name is a hash of these."""

    seed: int = 11
    plate_every: int = 8  # median over every Nth source frame
    idle_s: float = 12.0
    busy_s: float = 3.0
    busy_starts: tuple[int, ...] = (100, 300, 500, 700)  # source frames the real segments start at
    noise_sigma: float = 2.5
    drift_amplitude: float = 3.0
    drift_period_s: float = 40.0
    crf: int = 23
    gop: int = 10


@dataclass(frozen=True)
class IdleFootage:
    """The built clip, and where people are in it.

    `busy` holds (first, last) frame numbers of each real segment, counted from 1 as the
    pipeline's frame indices are (a looping camera's index goes on counting: use `% frames`).
    """

    path: Path
    fps: float
    frames: int
    width: int
    height: int
    busy: tuple[tuple[int, int], ...]

    def has_people(self, index: int) -> bool:
        position = (index - 1) % self.frames + 1
        return any(first <= position <= last for first, last in self.busy)

    @property
    def busy_share(self) -> float:
        return sum(last - first + 1 for first, last in self.busy) / self.frames


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE)


def _read_frames(
    source: Path, every: int, wanted: set[int]
) -> tuple[list[np.ndarray], dict[int, np.ndarray], float]:
    """Every `every`th frame (for the plate) and the `wanted` ones, without holding the rest."""
    samples: list[np.ndarray] = []
    kept: dict[int, np.ndarray] = {}
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 10.0
        for number, frame in enumerate(container.decode(stream)):
            if number % every == 0 or number in wanted:
                image = frame.to_ndarray(format="bgr24")
                if number % every == 0:
                    samples.append(image)
                if number in wanted:
                    kept[number] = image
    if not samples:
        raise ValueError(f"{source}: no video frames")
    return samples, kept, fps


def plate_of(samples: list[np.ndarray]) -> np.ndarray:
    """The per-pixel median of sampled frames: the scene without its passers-by."""
    return np.median(np.stack(samples), axis=0).astype(np.uint8)


def build_idle_footage(
    recipe: Recipe | None = None, *, source: Path | None = None, output_dir: Path | None = None
) -> IdleFootage:
    """The idle-period clip, built once and then read from the cache."""
    recipe = recipe or Recipe()
    source = source or assets_dir() / SOURCE_CLIP
    if not source.is_file():
        raise FileNotFoundError(f"source clip {source} not found (set STREAMER_ASSETS)")
    folder = output_dir or cache_dir()
    key = hashlib.sha256(
        json.dumps(
            [RECIPE_VERSION, asdict(recipe), source.name, source.stat().st_size], sort_keys=True
        ).encode()
    ).hexdigest()[:12]
    path = folder / f"idle_vtest_{key}.mp4"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        return IdleFootage(
            path=path, fps=meta["fps"], frames=meta["frames"], width=meta["width"],
            height=meta["height"], busy=tuple(tuple(b) for b in meta["busy"]),  # type: ignore[misc]
        )
    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as probe:
        rate = probe.streams.video[0].average_rate
    busy_n = round(recipe.busy_s * (float(rate) if rate else 10.0))
    wanted = {start + offset for start in recipe.busy_starts for offset in range(busy_n)}
    samples, kept, fps = _read_frames(source, recipe.plate_every, wanted)
    missing = sorted(wanted - kept.keys())
    if missing:
        raise ValueError(f"{source}: too short for the recipe (no frame {missing[0]})")
    height, width = samples[0].shape[:2]
    plate = plate_of(samples).astype(np.float32)
    del samples
    rng = np.random.default_rng(recipe.seed)
    idle_n = round(recipe.idle_s * fps)
    busy: list[tuple[int, int]] = []
    # Written to a temporary name and renamed: parallel builders never see half a file.
    fd, temporary = tempfile.mkstemp(suffix=".mp4", dir=folder)
    os.close(fd)
    index = 0
    with av.open(temporary, mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(recipe.crf), "g": str(recipe.gop), "bf": "0", "preset": "veryfast"}

        def write(image: np.ndarray) -> None:
            nonlocal index
            index += 1
            drift = recipe.drift_amplitude * np.sin(2 * np.pi * index / (fps * recipe.drift_period_s))
            pixels = np.clip(image + np.float32(drift), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)

        for start in recipe.busy_starts:
            for _ in range(idle_n):
                noise = rng.standard_normal(plate.shape, dtype=np.float32) * recipe.noise_sigma
                write(plate + noise)
            first = index + 1
            for offset in range(busy_n):
                write(kept[start + offset].astype(np.float32))
            busy.append((first, index))
        for packet in stream.encode():
            container.mux(packet)
    footage = IdleFootage(
        path=path, fps=fps, frames=index, width=width, height=height, busy=tuple(busy)
    )
    sidecar.write_text(json.dumps({**asdict(footage), "path": str(path), "recipe": asdict(recipe)}))
    os.replace(temporary, path)
    return footage


def rotated(footage: IdleFootage, shift: int) -> IdleFootage:
    """The same clip starting `shift` frames later (wrapping around), by copying packets: cameras
    playing different rotations are busy at different times, as real cameras are. `shift` must
    fall on a keyframe (a multiple of the recipe's GOP)."""
    shift %= footage.frames
    if shift == 0:
        return footage
    path = footage.path.with_name(f"{footage.path.stem}_from{shift + 1}.mp4")
    busy = tuple(
        ((first - 1 - shift) % footage.frames + 1, (last - 1 - shift) % footage.frames + 1)
        for first, last in footage.busy
    )
    result = IdleFootage(path, footage.fps, footage.frames, footage.width, footage.height, busy)
    if path.is_file():
        return result
    fd, temporary = tempfile.mkstemp(suffix=".mp4", dir=path.parent)
    os.close(fd)
    with av.open(str(footage.path)) as source, av.open(temporary, mode="w") as target:
        in_stream = source.streams.video[0]
        out_stream = target.add_stream_from_template(in_stream)
        packets = [packet for packet in source.demux(in_stream) if packet.dts is not None]
        if not packets[shift].is_keyframe:
            raise ValueError(f"frame {shift + 1} of {footage.path} is not a keyframe")
        stamps = [int(packet.dts or 0) for packet in packets]
        base, step = stamps[0], stamps[1] - stamps[0]
        for number, packet in enumerate(packets[shift:] + packets[:shift]):
            packet.dts = packet.pts = base + number * step
            packet.stream = out_stream
            target.mux(packet)
    os.replace(temporary, path)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, help=f"default ${CACHE_ENV_VAR} or {DEFAULT_CACHE}")
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    args = parser.parse_args(argv)
    footage = build_idle_footage(Recipe(seed=args.seed), output_dir=args.output_dir)
    print(footage.path)
    print(
        f"{footage.frames} frames at {footage.fps:g} fps, {footage.width}x{footage.height}; "
        f"people in frames {', '.join(f'{a}-{b}' for a, b in footage.busy)} "
        f"({footage.busy_share:.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
