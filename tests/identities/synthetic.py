"""Synthetic footage made from real pictures: a face photo moving and scaling over a background."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

CLIP_WIDTH, CLIP_HEIGHT = 640, 480
CLIP_FPS = 10
CLIP_FRAMES = 30
START_SCALE, END_SCALE = 0.55, 0.75
START_X, END_X = 30, 160
TOP_Y = 20


def background(width: int, height: int, seed: int) -> np.ndarray:
    """A static textured wall: smooth colour gradients with a little noise, no people in it."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    columns = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    image = np.stack(
        [60 + 80 * rows + 0 * columns, 90 + 60 * columns + 0 * rows, 120 + 40 * rows * columns],
        axis=-1,
    )
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, picture: np.ndarray, scale: float, x: int, y: int) -> np.ndarray:
    """`picture` scaled and pasted with its top-left at (x, y), clipped to the canvas."""
    resized = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height = min(resized.shape[0], canvas.shape[0] - y)
    width = min(resized.shape[1], canvas.shape[1] - x)
    out = canvas.copy()
    out[y : y + height, x : x + width] = resized[:height, :width]
    return out


def moving_photo_frames(photo: np.ndarray) -> list[np.ndarray]:
    """The photo drifting right and growing, as a person walking towards a camera."""
    wall = background(CLIP_WIDTH, CLIP_HEIGHT, seed=1)
    frames = []
    for index in range(CLIP_FRAMES):
        progress = index / (CLIP_FRAMES - 1)
        scale = START_SCALE + (END_SCALE - START_SCALE) * progress
        x = round(START_X + (END_X - START_X) * progress)
        frames.append(paste(wall, photo, scale, x, TOP_Y))
    return frames


def write_h264(path: Path, frames: list[np.ndarray], fps: int = CLIP_FPS) -> Path:
    """A camera-like H.264 MP4 (keyframe every second, no B-frames) written with PyAV."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "x264-params": f"keyint={fps}:bframes=0"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    return path


def enrolment_photo(photo: np.ndarray) -> np.ndarray:
    """A different picture of the same face: smaller, elsewhere, another wall, JPEG-compressed."""
    wall = background(560, 520, seed=2)[..., ::-1].copy()
    shifted = paste(wall, photo, 0.85, 70, 45)
    ok, encoded = cv2.imencode(".jpg", shifted, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)
