"""MOT17-mini pedestrians as person crops named the Market-1501 way, for `streamer identities
evaluate`: sequence N's first half of frames is camera N1, its second half camera N2 (one real
camera, a few seconds apart: the easy, same-camera case, seven times over).

    python -m studies.mot17_crops OUT_DIR && streamer identities evaluate OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

from tests.inference.mot17 import frame_numbers, pedestrians, sequences

MIN_VISIBILITY = 0.5
MIN_HEIGHT_PX = 64


def export(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for number, sequence in enumerate(sequences(), start=1):
        frames = frame_numbers(sequence)
        half = len(frames) // 2
        for index, frame in enumerate(frames):
            camera = number * 10 + (1 if index < half else 2)
            for person in pedestrians(sequence, frame, MIN_VISIBILITY, MIN_HEIGHT_PX):
                pid = number * 1000 + person.identity
                cv2.imwrite(str(out / f"{pid:05d}_c{camera}_{frame:06d}.jpg"), person.crop())
                written += 1
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "mot17-crops")
    print(f"{export(target)} crops written to {target}")
