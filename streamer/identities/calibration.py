"""A site's calibration of cross-camera identity, learned from its own tracks.

One global similarity threshold cannot work across cameras: the similarity of one person seen by
two cameras depends on the pair (viewpoint, light, resolution). So the gallery compares people in
a calibrated space and decides per camera pair:

* **Each camera's bias is removed.** A camera's mean track embedding (its light, its angle, its
  background) is subtracted before comparing; the mean is learned from every track the camera sees,
  without labels. Measured on a real two-camera set (PKU-Reid, OSNet x0.25, means learned on
  other people): cross-camera rank-1 of person tracks 0.81 -> 1.0 on the held-out people.
* **Negatives come free.** Two tracks visible at the same time on one camera, or on two cameras
  whose views do not overlap, are two people: their similarities show, per camera pair, how
  similar different people look there. A pair's threshold sits just above that.
* **Positives come from the operator** (confirmed links, merges) and from confident links; they
  also teach the time people take between two cameras (transit priors).

Everything here is plain numbers, so it can be saved, shared between instances and restored.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.config import CalibrationConfig

CameraPair = tuple[str, str]
TrackKey = tuple[str, int]
# A camera's mean moves with the last this many tracks once it has seen more (an exponential
# moving average), so a change of light or season is followed.
CENTRE_MEMORY_TRACKS = 1000
TRANSIT_MEMORY = 200  # transit times kept per ordered camera pair


def pair_of(camera_a: str, camera_b: str) -> CameraPair:
    """The unordered camera pair, as one key."""
    return (camera_a, camera_b) if camera_a <= camera_b else (camera_b, camera_a)


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


@dataclass
class CameraCentre:
    """The running mean of one camera's track embeddings."""

    total: np.ndarray
    tracks: float = 0.0

    def add(self, embedding: np.ndarray) -> None:
        if self.tracks >= CENTRE_MEMORY_TRACKS:
            self.total *= (CENTRE_MEMORY_TRACKS - 1) / CENTRE_MEMORY_TRACKS
            self.tracks = CENTRE_MEMORY_TRACKS - 1
        self.total += embedding
        self.tracks += 1

    @property
    def mean(self) -> np.ndarray:
        return (self.total / max(self.tracks, 1.0)).astype(np.float32)


@dataclass
class PairEvidence:
    """What is known of one camera pair: similarities of different people and of one person."""

    negatives: OrderedDict[tuple[TrackKey, TrackKey], float] = field(default_factory=OrderedDict)
    positives: OrderedDict[tuple[TrackKey, TrackKey], float] = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class PairThreshold:
    """A pair's threshold and where it came from, for the console and `/api/state`."""

    value: float
    source: str  # "calibrated" (from the pair's negatives), "default" (too few of them yet)
    negatives: int
    positives: int


class Calibration:
    """Camera centres, per-pair evidence and thresholds, and transit priors of one site."""

    def __init__(self, settings: CalibrationConfig, default_threshold: float) -> None:
        self.settings = settings
        self.default_threshold = default_threshold  # for pairs with too few negatives
        self.offset = 0.0  # added to every threshold (`streamer identities evaluate`'s curve)
        self.centres: dict[str, CameraCentre] = {}
        self.pairs: dict[CameraPair, PairEvidence] = {}
        self.transits: dict[CameraPair, deque[float]] = {}  # ordered: (from, to)
        self._thresholds: dict[CameraPair, PairThreshold] = {}

    # -- camera centres ---------------------------------------------------------------------

    def learn_track(self, camera: str, embedding: np.ndarray) -> None:
        """A new track's embedding (raw, unit length) joins its camera's mean."""
        centre = self.centres.get(camera)
        if centre is None:
            centre = self.centres[camera] = CameraCentre(np.zeros(embedding.shape, np.float64))
        centre.add(embedding.astype(np.float64))

    def centred(self, camera: str) -> bool:
        """Whether the camera has seen enough tracks for its bias to be removed."""
        centre = self.centres.get(camera)
        return centre is not None and centre.tracks >= self.settings.min_camera_tracks

    def centre(self, camera: str, embedding: np.ndarray) -> np.ndarray:
        """The embedding without its camera's bias (unit length); as given while not centred."""
        if not self.centred(camera):
            return embedding
        return unit(embedding - self.centres[camera].mean)

    # -- evidence ---------------------------------------------------------------------------

    def add_negative(self, a: TrackKey, b: TrackKey, similarity: float) -> None:
        """Two tracks known to be two people (seen at once), with their calibrated similarity."""
        self._add(self._evidence(a, b).negatives, _pair_key(a, b), similarity)
        self._thresholds.pop(pair_of(a[0], b[0]), None)

    def add_positive(self, a: TrackKey, b: TrackKey, similarity: float) -> None:
        """Two tracks known to be one person (confirmed, merged)."""
        evidence = self._evidence(a, b)
        key = _pair_key(a, b)
        evidence.negatives.pop(key, None)
        self._add(evidence.positives, key, similarity)
        self._thresholds.pop(pair_of(a[0], b[0]), None)

    def add_transit(self, from_camera: str, to_camera: str, seconds: float) -> None:
        """A person left `from_camera` and was next seen on `to_camera` this much later."""
        if from_camera == to_camera or seconds < 0:
            return
        times = self.transits.setdefault((from_camera, to_camera), deque(maxlen=TRANSIT_MEMORY))
        times.append(seconds)

    def _evidence(self, a: TrackKey, b: TrackKey) -> PairEvidence:
        return self.pairs.setdefault(pair_of(a[0], b[0]), PairEvidence())

    def _add(self, table: OrderedDict[Any, float], key: Any, value: float) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.settings.max_pairs:
            table.popitem(last=False)

    # -- decisions --------------------------------------------------------------------------

    def set_offset(self, offset: float) -> None:
        self.offset = offset
        self._thresholds.clear()

    def threshold(self, camera_a: str, camera_b: str) -> PairThreshold:
        """The similarity from which two tracks of these cameras may be one person.

        With enough negatives: their `negative_quantile` plus `margin_over_negatives` (what
        different people reach on this pair, and a little more), within the configured floor
        and ceiling; confirmed positives below it lower it only as far as no negative reaches.
        """
        pair = pair_of(camera_a, camera_b)
        cached = self._thresholds.get(pair)
        if cached is not None:
            return cached
        evidence = self.pairs.get(pair, PairEvidence())
        negatives = np.fromiter(evidence.negatives.values(), np.float64)
        positives = np.fromiter(evidence.positives.values(), np.float64)
        settings = self.settings
        if len(negatives) < settings.min_negatives:
            default = settings.same_camera_threshold if pair[0] == pair[1] else self.default_threshold
            found = PairThreshold(
                round(default + self.offset, 4), "default", len(negatives), len(positives)
            )
        else:
            # The tail of few negatives is uncertain: the quantile seen, or where a normal fit
            # to them puts the tail, whichever is higher.
            value = max(
                float(np.quantile(negatives, settings.negative_quantile)),
                float(negatives.mean() + settings.negative_sigmas * negatives.std()),
            )
            value += settings.margin_over_negatives
            if len(positives):
                # Positives the quantile would refuse: accept them where no negative reaches.
                lowest_safe = float(negatives.max()) + settings.margin_over_negatives
                value = min(value, max(lowest_safe, float(np.quantile(positives, 0.1))))
            value = min(max(value, settings.min_threshold), settings.max_threshold) + self.offset
            found = PairThreshold(round(value, 4), "calibrated", len(negatives), len(positives))
        self._thresholds[pair] = found
        return found

    def transit_plausible(self, from_camera: str, to_camera: str, seconds: float) -> bool:
        """Whether a person could take this long between the cameras, given the transits learned
        (any time is plausible until `min_transits` were learned)."""
        if from_camera == to_camera:
            return True
        times = self.transits.get((from_camera, to_camera))
        if times is None or len(times) < self.settings.min_transits:
            return True
        ordered = np.sort(np.fromiter(times, np.float64))
        fastest = float(np.quantile(ordered, 0.05))
        slowest = float(np.quantile(ordered, 0.95))
        return fastest * self.settings.transit_slack_low <= seconds <= (
            slowest * self.settings.transit_slack_high + self.settings.transit_slack_s
        )

    # -- saving ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready) to save or share."""
        return {
            "centres": {
                camera: {"total": centre.total.tolist(), "tracks": centre.tracks}
                for camera, centre in self.centres.items()
            },
            "pairs": {
                "|".join(pair): {
                    "negatives": [[*_flat(key), value] for key, value in evidence.negatives.items()],
                    "positives": [[*_flat(key), value] for key, value in evidence.positives.items()],
                }
                for pair, evidence in self.pairs.items()
            },
            "transits": {"|".join(pair): list(times) for pair, times in self.transits.items()},
        }

    def restore(self, data: dict[str, Any], embedding_size: int) -> None:
        """Take saved calibration; centres of another embedding size are dropped."""
        for camera, centre in data.get("centres", {}).items():
            total = np.asarray(centre["total"], np.float64)
            if total.shape == (embedding_size,) and math.isfinite(float(centre["tracks"])):
                self.centres[camera] = CameraCentre(total, float(centre["tracks"]))
        for joined, evidence in data.get("pairs", {}).items():
            pair = tuple(joined.split("|", 1))
            restored = PairEvidence()
            for row in evidence.get("negatives", []):
                restored.negatives[_unflat(row)] = float(row[4])
            for row in evidence.get("positives", []):
                restored.positives[_unflat(row)] = float(row[4])
            self.pairs[(pair[0], pair[1])] = restored
        for joined, times in data.get("transits", {}).items():
            origin, _, destination = joined.partition("|")
            self.transits[(origin, destination)] = deque(
                (float(t) for t in times), maxlen=TRANSIT_MEMORY
            )
        self._thresholds.clear()

    def summary(self) -> list[dict[str, Any]]:
        """Per camera pair: its threshold, where it came from, the evidence and transit times."""
        pairs = set(self.pairs) | {pair_of(*p) for p in self.transits}
        rows = []
        for pair in sorted(pairs):
            threshold = self.threshold(*pair)
            forward = self.transits.get(pair, ())
            backward = self.transits.get((pair[1], pair[0]), ())
            rows.append(
                {
                    "cameras": list(pair),
                    "threshold": threshold.value,
                    "source": threshold.source,
                    "negatives": threshold.negatives,
                    "confirmed": threshold.positives,
                    "transits": len(forward) + len(backward),
                }
            )
        return rows


def _pair_key(a: TrackKey, b: TrackKey) -> tuple[TrackKey, TrackKey]:
    return (a, b) if a <= b else (b, a)


def _flat(key: tuple[TrackKey, TrackKey]) -> list[Any]:
    return [key[0][0], key[0][1], key[1][0], key[1][1]]


def _unflat(row: list[Any]) -> tuple[TrackKey, TrackKey]:
    return ((str(row[0]), int(row[1])), (str(row[2]), int(row[3])))
