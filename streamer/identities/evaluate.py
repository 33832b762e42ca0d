"""`streamer identities evaluate DIR`: how well people keep one identity across a site's cameras.

DIR holds person crops named `PID_cCAM_*.jpg` (the Market-1501 convention: identity, camera). Each
(PID, CAM) group is one track on camera CAM, fed view by view through what `streamer run` uses:
the ReID model on Triton, the track's quality-weighted embedding and the identity resolver, the
gallery with its calibration. People walk from camera to camera over time: a new person arrives
every `ARRIVAL_INTERVAL_S`, each track lasts its views, and the next camera sees them 10-40 s later
(several people on a camera at once, so the calibration gets its free negatives).

The people are split: the calibration half walks first and an operator confirms their links (as
through `POST /api/identities/merge`), which teaches the calibration; the report half walks next,
through the same gallery, and only its tracks are scored. Nobody is reported who was tuned on.

Scores:
* track-level rank-1 and mAP: each report track against the report tracks of the other cameras,
  in the gallery's comparison space (camera bias removed once calibrated);
* linking recall: of the report people seen on two cameras or more, the share whose tracks all
  got one global id;
* linking precision: of the pairs of tracks sharing a global id (a report track in it), the share
  that are one person; `mixed_ids`: global ids holding more than one person.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamer.config import StreamerConfig
from streamer.core.detections import Detections
from streamer.core.frames import Frame
from streamer.identities.gallery import InMemoryGallery
from streamer.identities.quality import person_quality
from streamer.identities.resolver import IdentityResolver
from streamer.identities.scheduling import Embedded
from streamer.identities.stats import IdentityStats
from streamer.identities.track_embeddings import TrackIdentity
from streamer.inference.reid import PersonEmbedder

PersonCamera = tuple[int, str]  # (person id, camera)
TrackIds = dict[PersonCamera, int]  # the track id each person got on each camera
CROP_NAME = re.compile(r"^(?P<pid>-?\d+)_c(?P<camera>\d+)[^/]*\.(?:jpe?g|png)$", re.IGNORECASE)
ARRIVAL_INTERVAL_S = 3.0  # a new person every 3 s: several on a camera at once
VIEW_INTERVAL_S = 0.5  # one view of a track every half second
TRANSIT_RANGE_S = (10.0, 40.0)  # from one camera to the next
FRAME_MARGIN_PX = 16  # crops are placed inside a frame this much larger: no border penalty
NO_PICTURE = np.zeros((1, 1, 3), np.uint8)  # the resolver reads a frame's time, not its picture
CURVE_OFFSETS = (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2)


class EvaluationError(ValueError):
    """The folder cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Track:
    """One person on one camera: the crops, in name order."""

    person: int
    camera: str
    crops: tuple[Path, ...]


@dataclass
class EmbeddedTrack:
    track: Track
    views: list[tuple[np.ndarray, float]]  # (embedding, quality) per crop


@dataclass
class Scores:
    rank1: float
    map: float
    linking_precision: float
    linking_recall: float
    mixed_ids: int
    people_on_several_cameras: int
    linked_pairs: int


@dataclass
class Report:
    model: str
    folder: str
    people: int
    cameras: list[str]
    calibration_people: list[int]
    report_people: list[int]
    rank1: float
    map: float
    linking_precision: float
    linking_recall: float
    mixed_ids: int
    people_on_several_cameras: int
    linked_pairs: int
    thresholds: list[dict[str, Any]]
    curve: list[dict[str, float]] = field(default_factory=list)
    uncalibrated: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_tracks(folder: Path) -> list[Track]:
    """Every (PID, CAM) group of crops; other files are ignored, a folder without crops refused."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder")
    groups: dict[PersonCamera, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        match = CROP_NAME.match(path.name)
        if match is None or int(match["pid"]) < 0:  # Market-1501's -1 and 0000 junk are fine
            continue
        groups.setdefault((int(match["pid"]), f"c{int(match['camera'])}"), []).append(path)
    if not groups:
        raise EvaluationError(f"{folder}: no crops named PID_cCAM_*.jpg (e.g. 0001_c1_0001.jpg)")
    return [Track(person, camera, tuple(paths)) for (person, camera), paths in sorted(groups.items())]


def split_people(
    tracks: list[Track], calibration_share: float, seed: int
) -> tuple[list[int], list[int]]:
    """People to calibrate on and people to report on, disjoint (a seeded shuffle)."""
    people = sorted({t.person for t in tracks})
    if len(people) < 2:
        raise EvaluationError("at least two people are needed")
    order = [int(p) for p in np.random.default_rng(seed).permutation(people)]
    count = round(len(people) * calibration_share)
    count = min(max(count, 0), len(people) - 1)
    return sorted(order[:count]), sorted(order[count:])


async def embed_tracks(
    tracks: list[Track], embedder: PersonEmbedder, config: StreamerConfig
) -> list[EmbeddedTrack]:
    """Every crop through the served ReID model, with the quality the pipeline would give it."""
    embedded: list[EmbeddedTrack] = []
    for track in tracks:
        views = []
        for path in track.crops:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise EvaluationError(f"{path}: not a readable image")
            height, width = image.shape[:2]
            box = np.array([[0, 0, width, height]], np.float32)
            crop = embedder.crop(image, box[0])
            assert crop is not None
            embedding, _timing = await embedder.embed(crop)
            placed = Detections(
                xyxy=box + FRAME_MARGIN_PX, confidence=np.ones(1, np.float32), class_id=np.zeros(1, np.int64)
            )
            quality = person_quality(
                placed, 0, width + 2 * FRAME_MARGIN_PX, height + 2 * FRAME_MARGIN_PX, config.reid
            )
            views.append((embedding, max(quality, 1e-3)))
        embedded.append(EmbeddedTrack(track, views))
    return embedded


@dataclass(frozen=True)
class _Visit:
    start: float
    track: EmbeddedTrack


def timeline(embedded: list[EmbeddedTrack], people: list[int], start: float, seed: int) -> list[_Visit]:
    """When each of `people` is on each of their cameras: a new person every ARRIVAL_INTERVAL_S,
    cameras in a random order per person, 10-40 s from one camera to the next."""
    rng = np.random.default_rng(seed)
    by_person: dict[int, list[EmbeddedTrack]] = {}
    for item in embedded:
        if item.track.person in people:
            by_person.setdefault(item.track.person, []).append(item)
    visits = []
    for index, person in enumerate(rng.permutation(sorted(by_person)).tolist()):
        at = start + index * ARRIVAL_INTERVAL_S
        for item in rng.permutation(np.array(by_person[person], dtype=object)).tolist():
            visits.append(_Visit(at, item))
            at += len(item.views) * VIEW_INTERVAL_S + float(rng.uniform(*TRANSIT_RANGE_S))
    return sorted(visits, key=lambda visit: visit.start)


async def walk(resolver: IdentityResolver, visits: list[_Visit], track_ids: TrackIds) -> float:
    """Feed the visits' views in time order through the resolver; tracks end after their last view.
    Returns the time of the last event."""
    steps: list[tuple[float, int, _Visit, int]] = []  # (time, order, visit, view index or -1 = end)
    for order, visit in enumerate(visits):
        views = len(visit.track.views)
        for index in range(views):
            steps.append((visit.start + index * VIEW_INTERVAL_S, order, visit, index))
        steps.append((visit.start + views * VIEW_INTERVAL_S, order, visit, -1))
    steps.sort(key=lambda step: (step[0], step[1]))
    identities: dict[PersonCamera, TrackIdentity] = {}
    last = 0.0
    for ts, _order, visit, index in steps:
        track = visit.track.track
        key = (track.person, track.camera)
        track_id = track_ids.setdefault(key, len(track_ids) + 1)
        last = ts
        if index < 0:
            identities.pop(key, None)
            await resolver.track_ended(track.camera, track_id)
            continue
        identity = identities.setdefault(key, TrackIdentity())
        embedding, quality = visit.track.views[index]
        frame = Frame(track.camera, index + 1, ts, time.monotonic(), image=NO_PICTURE)
        await resolver.resolve(frame, identity, Embedded(track_id, "reid", embedding, quality))
    return last


def score(
    gallery: InMemoryGallery, embedded: list[EmbeddedTrack], report: list[int], track_ids: TrackIds
) -> Scores:
    """Rank-1/mAP of report tracks across cameras, and linking precision/recall."""
    table = gallery._table  # the evaluation reads the gallery it drove
    assert table is not None
    ids_of: TrackIds = {}
    vectors: dict[PersonCamera, np.ndarray] = {}
    for item in embedded:
        key = (item.track.person, item.track.camera)
        row = table.rows.get((item.track.camera, track_ids.get(key, -1)))
        if row is None:
            continue
        ids_of[key] = int(table.global_ids[row])
        vectors[key] = gallery.calibration.centre(item.track.camera, table.embeddings[row])
    reported = [key for key in vectors if key[0] in report]
    rank1, mean_ap = _retrieval(reported, vectors)
    owners: dict[int, set[int]] = {}
    for key, global_id in ids_of.items():
        owners.setdefault(global_id, set()).add(key[0])
    several = [p for p in report if len({k[1] for k in reported if k[0] == p}) >= 2]
    recall = (
        sum(len({ids_of[k] for k in reported if k[0] == person}) == 1 for person in several) / len(several)
        if several else 0.0
    )
    pairs = right = 0
    keys = list(ids_of)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if ids_of[a] != ids_of[b] or a[1] == b[1] or (a[0] not in report and b[0] not in report):
                continue
            pairs += 1
            right += a[0] == b[0]
    mixed = sum(
        1 for global_id, persons in owners.items() if len(persons) > 1 and persons & set(report)
    )
    return Scores(
        rank1=round(rank1, 4),
        map=round(mean_ap, 4),
        linking_precision=round(right / pairs, 4) if pairs else 1.0,
        linking_recall=round(recall, 4),
        mixed_ids=mixed,
        people_on_several_cameras=len(several),
        linked_pairs=pairs,
    )


def _retrieval(keys: list[PersonCamera], vectors: dict[PersonCamera, np.ndarray]) -> tuple[float, float]:
    hits, precisions = 0, []
    for query in keys:
        gallery = [k for k in keys if k[1] != query[1]]
        if not any(k[0] == query[0] for k in gallery):
            continue
        similarities = np.array([float(vectors[query] @ vectors[k]) for k in gallery])
        order = np.argsort(-similarities)
        relevant = np.array([gallery[i][0] == query[0] for i in order])
        hits += bool(relevant[0])
        ranks = np.flatnonzero(relevant) + 1
        precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    count = len(precisions)
    return (hits / count, float(np.mean(precisions))) if count else (0.0, 0.0)


async def run_report(
    config: StreamerConfig,
    embedded: list[EmbeddedTrack],
    calibration_people: list[int],
    report_people: list[int],
    seed: int,
    *,
    offset: float = 0.0,
    prepared: tuple[InMemoryGallery, TrackIds, float] | None = None,
) -> tuple[Scores, InMemoryGallery]:
    """The report people's walk through a gallery calibrated on the calibration people."""
    gallery, track_ids, clock = copy.deepcopy(prepared) if prepared else await calibrate(
        config, embedded, calibration_people, seed
    )
    gallery.calibration.set_offset(offset)
    resolver = IdentityResolver(config.faces, config.identities, gallery, None, IdentityStats())
    await walk(resolver, timeline(embedded, report_people, clock + 60.0, seed + 1), track_ids)
    return score(gallery, embedded, report_people, track_ids), gallery


async def calibrate(
    config: StreamerConfig, embedded: list[EmbeddedTrack], people: list[int], seed: int
) -> tuple[InMemoryGallery, TrackIds, float]:
    """The calibration people walk; an operator then merges each one's tracks (confirmed links)."""
    gallery = InMemoryGallery(config.identities.gallery)
    await gallery.bind(len(embedded[0].views[0][0]), config.reid.model)
    resolver = IdentityResolver(config.faces, config.identities, gallery, None, IdentityStats())
    track_ids: TrackIds = {}
    clock = 1_800_000_000.0
    if people:
        clock = await walk(resolver, timeline(embedded, people, clock, seed), track_ids)
        table = gallery._table
        assert table is not None
        for person in people:
            await _operator_confirms(gallery, person, track_ids)
    return gallery, track_ids, clock


async def _operator_confirms(
    gallery: InMemoryGallery, person: int, track_ids: TrackIds
) -> None:
    """What an operator does for a person they know: split strangers out of the person's
    identities, then merge them (or confirm the one)."""
    table = gallery._table
    assert table is not None
    mine = {(camera, track_ids[(p, camera)]) for (p, camera) in track_ids if p == person}
    mine = {key for key in mine if key in table.rows}
    if len(mine) < 2:
        return
    ids = sorted({int(table.global_ids[table.rows[key]]) for key in mine})
    for global_id in ids:
        members = {(m.camera, m.track_id) for i in gallery.identities() if i.global_id == global_id
                   for m in i.members}
        strangers = sorted(members - mine)
        if strangers:
            await gallery.split(global_id, strangers)
    try:
        if len(ids) >= 2:
            await gallery.merge(ids)
        else:
            await gallery.confirm(ids[0])
    except ValueError:
        pass  # kept apart earlier: the operator's later decision would be a split, not a merge


async def evaluate(
    config: StreamerConfig,
    folder: Path,
    embedder: PersonEmbedder,
    *,
    calibration_share: float = 0.5,
    seed: int = 0,
    curve: bool = True,
) -> Report:
    """Everything `streamer identities evaluate` prints, with the served ReID model given."""
    tracks = read_tracks(folder)
    calibration_people, report_people = split_people(tracks, calibration_share, seed)
    embedded = await embed_tracks(tracks, embedder, config)
    prepared = await calibrate(config, embedded, calibration_people, seed)
    scores, gallery = await run_report(config, embedded, calibration_people, report_people, seed,
                                       prepared=prepared)
    report = Report(
        model=config.reid.model,
        folder=str(folder),
        people=len({t.person for t in tracks}),
        cameras=sorted({t.camera for t in tracks}),
        calibration_people=calibration_people,
        report_people=report_people,
        thresholds=gallery.calibration.summary(),
        **asdict(scores),
    )
    if curve:
        for offset in CURVE_OFFSETS:
            point, _ = await run_report(config, embedded, calibration_people, report_people, seed,
                                        offset=offset, prepared=prepared)
            report.curve.append({"threshold_offset": offset, "linking_precision": point.linking_precision,
                                 "linking_recall": point.linking_recall, "mixed_ids": point.mixed_ids})
    # The same people through a gallery without calibration (one raw threshold, as before it).
    plain = config.model_copy(deep=True)
    plain.identities.gallery.calibration.enabled = False
    plain.identities.gallery.mutual = False
    baseline, _ = await run_report(plain, embedded, calibration_people, report_people, seed)
    report.uncalibrated = {key: value for key, value in asdict(baseline).items()
                           if key in ("rank1", "map", "linking_precision", "linking_recall", "mixed_ids")}
    return report


def format_report(report: Report) -> str:
    """The report as an operator reads it."""
    lines = [
        f"{report.folder}: {report.people} people, cameras {', '.join(report.cameras)}, model {report.model}",
        f"calibrated on {len(report.calibration_people)} people, reported on {len(report.report_people)} "
        f"others ({report.people_on_several_cameras} of them on two cameras or more)",
        "",
        f"{'':24}{'calibrated':>12}{'uncalibrated':>14}",
    ]
    for key, label in (("rank1", "rank-1 (tracks)"), ("map", "mAP (tracks)"),
                       ("linking_recall", "linking recall"), ("linking_precision", "linking precision"),
                       ("mixed_ids", "ids mixing people")):
        value = getattr(report, key)
        before = report.uncalibrated.get(key)
        shown = f"{value:>12}" if isinstance(value, int) else f"{value:>12.3f}"
        old = "" if before is None else (f"{before:>14}" if isinstance(before, int) else f"{before:>14.3f}")
        lines.append(f"{label:<24}{shown}{old}")
    if report.thresholds:
        lines += ["", "camera pair thresholds:"]
        for row in report.thresholds:
            lines.append(
                f"  {' - '.join(row['cameras']):<16} {row['threshold']:.3f} ({row['source']}, "
                f"{row['negatives']} negatives, {row['confirmed']} confirmed, {row['transits']} transits)"
            )
    if report.curve:
        lines += ["", "precision / recall by threshold offset:"]
        for point in report.curve:
            lines.append(
                f"  {point['threshold_offset']:+.2f}  precision {point['linking_precision']:.3f}  "
                f"recall {point['linking_recall']:.3f}  mixed ids {int(point['mixed_ids'])}"
            )
    return "\n".join(lines)
