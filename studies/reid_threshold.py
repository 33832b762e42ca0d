"""How well each ReID model's cosine similarity separates people: the measurement behind the
default `identities.gallery.match_threshold` of each catalogue model.

    python -m studies.reid_threshold [--model NAME ...] [--assets DIR] [--json FILE]

The people are MOT17-mini's ground-truth pedestrians (considered, visibility >= 0.5, at least
`reid.min_height_px` tall: 482 crops of 86 people), cropped and stretched exactly as the service
does (`crop_person`) and embedded with onnxruntime on the prepared graph (`catalog.prepare`: the
same uint8 input and in-graph pixel conversion Triton serves). Two measurements per model:

* pairs: every pair of crops; precision and recall of "same person" = similarity >= threshold,
  and the highest similarity two different people reach;
* gallery: people's frames split in two "cameras" (first half, second half), each half one
  track whose embedding is the mean of its crops (what a track accumulates); half of the people
  on camera B were on camera A, the other half are new. The service's `InMemoryGallery` sees
  every track of camera A (all present at once), then of camera B. Per threshold: global ids
  given to two people or more (mixed: the error that matters), and people on both cameras whose
  halves got different ids (split).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from streamer.config import GalleryConfig, ReidConfig
from streamer.core.assets import assets_dir
from streamer.identities.gallery import InMemoryGallery, Sighting
from streamer.inference.catalog import entry, find_demo_weights, prepare
from streamer.inference.embedding import l2_normalise
from streamer.inference.reid import crop_person

MOT17_MINI = Path("videos") / "MOT17-mini" / "train"
REID_MODELS = ("person_reid", "person_reid_retail")
# gt.txt columns: frame, id, left, top, width, height, considered, class, visibility
FRAME, IDENTITY, LEFT, TOP, WIDTH, HEIGHT, CONSIDERED, CLASS, VISIBILITY = range(9)
PEDESTRIAN_CLASS = 1
MIN_VISIBILITY = 0.5
BATCH = 32
THRESHOLDS = (0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.85, 0.86, 0.88, 0.9, 0.92, 0.93, 0.94, 0.96)
PRECISION_TARGETS = (0.99, 0.999)
SUGGESTED_PRECISION = 0.999


@dataclass(frozen=True)
class Crop:
    person: tuple[str, int]  # (sequence, ground-truth id)
    frame: int
    pixels: np.ndarray  # uint8 BGR at the model's input size


@dataclass(frozen=True)
class Row:
    threshold: float
    pair_precision: float
    pair_recall: float
    gallery_mixed_ids: int
    gallery_split_people: int


@dataclass(frozen=True)
class ModelReport:
    model: str
    crops: int
    people: int
    same_pairs: int
    different_pairs: int
    same_mean: float
    different_mean: float
    different_max: float
    thresholds_for_precision: dict[str, float | None]  # lowest threshold reaching each precision
    rows: list[Row]
    suggested: float | None  # see `suggested_threshold`


def sequences(assets: Path) -> list[Path]:
    root = assets / MOT17_MINI
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: MOT17-mini not found; set STREAMER_ASSETS or --assets")
    return sorted(p for p in root.iterdir() if (p / "gt" / "gt.txt").is_file())


def ground_truth_crops(sequence: Path, height: int, width: int, min_height: float) -> list[Crop]:
    """Every clearly visible pedestrian of every frame of the sequence, at the model's size."""
    truth = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)
    crops: list[Crop] = []
    for image_path in sorted((sequence / "img1").glob("*.jpg")):
        frame = int(image_path.stem)
        image = cv2.imread(str(image_path))
        if image is None:
            raise OSError(f"{image_path}: not a readable image")
        rows = truth[
            (truth[:, FRAME] == frame)
            & (truth[:, CLASS] == PEDESTRIAN_CLASS)
            & (truth[:, CONSIDERED] == 1)
            & (truth[:, VISIBILITY] >= MIN_VISIBILITY)
            & (truth[:, HEIGHT] >= min_height)
        ]
        for row in rows:
            box = np.array([row[LEFT], row[TOP], row[LEFT] + row[WIDTH], row[TOP] + row[HEIGHT]])
            pixels = crop_person(image, box, height, width)
            if pixels is not None:
                crops.append(Crop((sequence.name, int(row[IDENTITY])), frame, pixels))
    return crops


def embed(model_path: Path, crops: list[Crop]) -> np.ndarray:
    """Unit-length embeddings of the crops through the prepared graph (uint8 BGR NHWC in)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = []
    for start in range(0, len(crops), BATCH):
        batch = np.stack([c.pixels for c in crops[start : start + BATCH]])
        outputs.append(session.run(None, {name: batch})[0])
    return np.stack([l2_normalise(v) for v in np.concatenate(outputs)])


def pair_stats(
    embeddings: np.ndarray, people: list[tuple[str, int]], threshold: float
) -> tuple[float, float]:
    """Precision and recall of "same person" = similarity >= threshold over all crop pairs."""
    similarities, same = _pairs(embeddings, people)
    predicted = similarities >= threshold
    true_positive = int(np.count_nonzero(predicted & same))
    precision = true_positive / max(int(np.count_nonzero(predicted)), 1)
    recall = true_positive / max(int(np.count_nonzero(same)), 1)
    return precision, recall


def _pairs(embeddings: np.ndarray, people: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.unique(np.array([f"{s}/{i}" for s, i in people]), return_inverse=True)[1]
    upper = np.triu_indices(len(people), k=1)
    similarities = (embeddings @ embeddings.T)[upper]
    same = labels[upper[0]] == labels[upper[1]]
    return similarities, same


def lowest_threshold_for(
    embeddings: np.ndarray, people: list[tuple[str, int]], precision: float
) -> float | None:
    """The lowest similarity (2 decimals) from which pair precision stays at `precision` or more."""
    for threshold in np.arange(0.5, 1.0, 0.01):
        if pair_stats(embeddings, people, float(threshold))[0] >= precision:
            return round(float(threshold), 2)
    return None


def split_in_two_cameras(
    crops: list[Crop], embeddings: np.ndarray
) -> tuple[dict[tuple[str, int], np.ndarray], dict[tuple[str, int], np.ndarray]]:
    """Camera A and camera B tracks: each a person's mean embedding over part of their frames.

    Every person seen in two frames or more walks past camera B (second half of their frames);
    every other one of them was on camera A before (first half), the rest are new to the gallery,
    which is where a loose threshold gives a stranger somebody else's id. People seen once are on
    camera A only.
    """
    by_person: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, crop in enumerate(crops):
        by_person[crop.person].append(index)
    camera_a, camera_b = {}, {}
    for rank, (person, indices) in enumerate(sorted(by_person.items())):
        indices.sort(key=lambda i: crops[i].frame)
        half = (len(indices) + 1) // 2
        if len(indices) == 1 or rank % 2 == 0:
            camera_a[person] = l2_normalise(embeddings[indices[:half]].sum(axis=0))
        if len(indices) > 1:
            camera_b[person] = l2_normalise(embeddings[indices[half:]].sum(axis=0))
    return camera_a, camera_b


async def gallery_errors(
    camera_a: dict[tuple[str, int], np.ndarray],
    camera_b: dict[tuple[str, int], np.ndarray],
    model: str,
    threshold: float,
) -> tuple[int, int]:
    """(global ids held by two people or more, people whose two halves got different ids)."""
    gallery = InMemoryGallery(GalleryConfig(match_threshold=threshold))
    await gallery.bind(len(next(iter(camera_a.values()))), model)
    ids: dict[str, dict[tuple[str, int], int]] = {"a": {}, "b": {}}
    for camera, tracks in (("a", camera_a), ("b", camera_b)):
        for track_id, (person, embedding) in enumerate(tracks.items()):
            match = await gallery.assign(Sighting(camera, track_id, embedding, 0.0))
            ids[camera][person] = match.global_id
    holders: dict[int, set[tuple[str, int]]] = defaultdict(set)
    for camera_ids in ids.values():
        for person, global_id in camera_ids.items():
            holders[global_id].add(person)
    mixed = sum(1 for people in holders.values() if len(people) > 1)
    split = sum(
        1 for person, global_id in ids["b"].items() if ids["a"].get(person, global_id) != global_id
    )
    return mixed, split


def suggested_threshold(rows: list[Row]) -> float | None:
    """The lowest threshold from which pair precision stays at 0.999 and the gallery mixes
    nobody: giving two people one id is worse than giving one person two."""
    suggested = None
    for row in sorted(rows, key=lambda r: r.threshold, reverse=True):
        if row.pair_precision < SUGGESTED_PRECISION or row.gallery_mixed_ids:
            break
        suggested = row.threshold
    return suggested


def measure(model: str, assets: Path, repository: Path, thresholds: tuple[float, ...]) -> ModelReport:
    """The report of one catalogue ReID model on every MOT17-mini crop."""
    item = entry(model)
    if find_demo_weights(item, assets) is None:
        raise FileNotFoundError(f"{assets / 'models' / item.demo_weights}: weights of {model} missing")
    model_path = prepare(item, repository, assets=assets)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    _batch, height, width, _channels = session.get_inputs()[0].shape
    min_height = ReidConfig().min_height_px
    crops = [c for s in sequences(assets) for c in ground_truth_crops(s, int(height), int(width), min_height)]
    embeddings = embed(model_path, crops)
    people = [c.person for c in crops]
    similarities, same = _pairs(embeddings, people)
    camera_a, camera_b = split_in_two_cameras(crops, embeddings)
    rows = []
    for threshold in thresholds:
        precision, recall = pair_stats(embeddings, people, threshold)
        mixed, split = asyncio.run(gallery_errors(camera_a, camera_b, model, threshold))
        rows.append(Row(threshold, round(precision, 4), round(recall, 4), mixed, split))
    return ModelReport(
        model=model,
        crops=len(crops),
        people=len(set(people)),
        same_pairs=int(np.count_nonzero(same)),
        different_pairs=int(np.count_nonzero(~same)),
        same_mean=round(float(similarities[same].mean()), 3),
        different_mean=round(float(similarities[~same].mean()), 3),
        different_max=round(float(similarities[~same].max()), 3),
        thresholds_for_precision={
            str(p): lowest_threshold_for(embeddings, people, p) for p in PRECISION_TARGETS
        },
        rows=rows,
        suggested=suggested_threshold(rows),
    )


def render(report: ModelReport) -> str:
    """A Markdown table of one model's report."""
    lines = [
        f"### {report.model}: {report.crops} crops of {report.people} people",
        "",
        f"same-person pairs {report.same_pairs} (mean {report.same_mean}), different "
        f"{report.different_pairs} (mean {report.different_mean}, max {report.different_max}); "
        + ", ".join(
            f"precision {p} from {t}" for p, t in report.thresholds_for_precision.items()
        ),
        "",
        "| threshold | pair precision | pair recall | gallery: mixed ids | gallery: split people |",
        "|---|---|---|---|---|",
    ]
    for r in report.rows:
        mark = " (suggested)" if r.threshold == report.suggested else ""
        lines.append(
            f"| {r.threshold:.2f}{mark} | {r.pair_precision:.3f} | {r.pair_recall:.3f} | "
            f"{r.gallery_mixed_ids} | {r.gallery_split_people} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", action="append", choices=REID_MODELS, help="default: both")
    parser.add_argument(
        "--assets",
        type=Path,
        help="assets folder (default: $STREAMER_ASSETS, else the nearest shared/ above the "
        "working directory)",
    )
    parser.add_argument("--json", type=Path, help="also write the reports as JSON")
    args = parser.parse_args(argv)
    assets = assets_dir(args.assets)
    reports = []
    with tempfile.TemporaryDirectory(prefix="reid-threshold-") as repository:
        for model in args.model or REID_MODELS:
            try:
                reports.append(measure(model, assets, Path(repository), THRESHOLDS))
            except (FileNotFoundError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(render(reports[-1]) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
