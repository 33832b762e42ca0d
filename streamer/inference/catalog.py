"""What the model repository expects, where the weights come from, and how each is prepared.

Research-licensed weights are never shipped with the project. Demo/test weights are found in the
assets folder's `models/` (`assets_dir`: the setting, `$STREAMER_ASSETS`, or the nearest `shared/`
folder) or in the user cache filled by `streamer models fetch` (permissively licensed files only,
from their official release URLs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import onnx

from streamer.core.assets import assets_dir, user_cache_dir
from streamer.inference.model_prep import InputSpec, prepare_model
from streamer.inference.repository import MODEL_FILE, write_shipped_config, write_shipped_configs
from streamer.inference.yolox import FIRST_CLASS_COLUMN

log = logging.getLogger(__name__)

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
FETCH_TIMEOUT_S = 60.0
MIRROR_ENV_VAR = "STREAMER_WEIGHTS_MIRROR"
PROVENANCE_FILE = "model.onnx.provenance.json"
# Bump when model_prep's rewrite changes, so files prepared by an older version are redone.
# 3: per-image reductions, batch restored on SCRFD-2.5G outputs; 4: YOLOX output cut to its classes
PREP_VERSION = "streamer-prep-4"
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Pixels:
    """The model's own pixel convention (the prepared graph takes uint8 BGR and does the rest)."""

    channel_order: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "nchw"


# Pixel conventions of published weights, by the name `streamer models prepare --pixels` takes.
# ByteTrack's *_mot17 detectors were trained with the old YOLOX preprocessing (RGB, /255,
# ImageNet mean/std); current YOLOX releases take raw BGR 0..255.
PIXEL_PRESETS: dict[str, Pixels] = {
    "yolox": Pixels("bgr"),
    "bytetrack": Pixels("rgb", IMAGENET_MEAN_255, IMAGENET_STD_255),
    "scrfd": Pixels("rgb", (127.5, 127.5, 127.5), (128.0, 128.0, 128.0)),
    "arcface": Pixels("rgb", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "imagenet-rgb": Pixels("rgb", IMAGENET_MEAN_255, IMAGENET_STD_255),
    "raw-bgr-nhwc": Pixels("bgr", layout="nhwc"),
}


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # folder in the model repository
    role: str
    demo_weights: str  # file name in the assets' models/ folder or the fetch cache
    demo_licence: str
    production: str  # what an operator deploys, and where to get it
    pixels: Pixels
    fetch_url: str | None = None  # official public release of the demo weights, if permissive
    # Input height/width used when the weights take any size (SCRFD-2.5G/10G): the served size.
    default_input_size: tuple[int, int] | None = None
    # Detectors (YOLOX): how many leading classes the served output keeps unless told otherwise.
    detector_classes: int | None = None


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="person_detector",
        role="person detector (YOLOX family)",
        demo_weights="yolox_nano.onnx",
        demo_licence="Apache-2.0 (Megvii YOLOX)",
        production=(
            "ByteTrack's bytetrack_s/m/l/x_mot17 ONNX exports (prepare with --pixels bytetrack; "
            "github.com/ifzhang/ByteTrack, 'Model zoo', MIT code, MOT17/CrowdHuman-trained: "
            "check the data terms) or YOLOX-S/M/L/X "
            "(github.com/Megvii-BaseDetection/YOLOX releases, Apache-2.0). Run `streamer models "
            "prepare person_detector --source FILE` and set the input dims in config.pbtxt."
        ),
        pixels=Pixels("bgr"),
        fetch_url=(
            "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"
        ),
        # Class 0 is the person, in COCO and in ByteTrack's one-class MOT17 detectors.
        detector_classes=1,
    ),
    CatalogEntry(
        name="face_detector",
        role="face detector with 5 landmarks (SCRFD)",
        demo_weights="scrfd_500m_kps.onnx",
        demo_licence="InsightFace: non-commercial research only",
        production=(
            "SCRFD-10G (insightface model zoo, buffalo_l pack: det_10g.onnx); check InsightFace's "
            "licence for commercial use."
        ),
        pixels=Pixels("rgb", (127.5, 127.5, 127.5), (128.0, 128.0, 128.0)),
        default_input_size=(640, 640),
    ),
    CatalogEntry(
        name="face_embedder",
        role="face embedding (ArcFace family)",
        demo_weights="mobilefacenet_dynbatch.onnx",
        demo_licence="Apache-2.0 code; trained on MS-Celeb-1M (withdrawn data set)",
        production="ArcFace w600k_r50 (buffalo_l pack) or glintr100 from the insightface model zoo.",
        pixels=Pixels("rgb", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    ),
    CatalogEntry(
        name="person_reid",
        role="person re-identification embedding",
        demo_weights="osnet_x0_25_msmt17.onnx",
        demo_licence="torchreid weights trained on MSMT17: research only",
        production=(
            "OSNet x1.0 (torchreid model zoo, export to ONNX) or Intel's Apache-2.0 "
            "person-reidentification-retail-0288 (Open Model Zoo)."
        ),
        pixels=Pixels("rgb", IMAGENET_MEAN_255, IMAGENET_STD_255),
    ),
    CatalogEntry(
        name="person_reid_retail",
        role="person re-identification embedding (Intel, NHWC, raw BGR)",
        demo_weights="person-reidentification-retail-0288.onnx",
        demo_licence="Apache-2.0 (Intel Open Model Zoo)",
        production=(
            "person-reidentification-retail-0288 itself (Open Model Zoo, Apache-2.0) is usable in "
            "production; select it with `reid.model: person_reid_retail`."
        ),
        pixels=Pixels("bgr", layout="nhwc"),
    ),
)


class WeightsMissing(Exception):
    """Weights for a model are nowhere to be found; the message says how to get them."""


def entry(name: str) -> CatalogEntry:
    for item in CATALOG:
        if item.name == name:
            return item
    raise KeyError(f"unknown model '{name}' (known: {', '.join(i.name for i in CATALOG)})")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def find_demo_weights(item: CatalogEntry, assets: Path | None = None) -> Path | None:
    for folder in (assets_dir(assets) / "models", user_cache_dir() / "models"):
        candidate = folder / item.demo_weights
        if candidate.is_file():
            return candidate
    return None


def missing_message(item: CatalogEntry, repository: Path, assets: Path | None = None) -> str:
    how = (
        "run `streamer models fetch`"
        if item.fetch_url
        else f"put {item.demo_weights} in {assets_dir(assets) / 'models'} (set STREAMER_ASSETS)"
    )
    return (
        f"{repository / item.name / '1' / MODEL_FILE}: missing and no {item.demo_weights} found; "
        f"{how}, or for production: {item.production}"
    )


def input_size(source: Path, fallback: tuple[int, int] | None = None) -> tuple[int, int]:
    """Height and width of an ONNX image input (NCHW or NHWC); `fallback` for any-size inputs."""
    model = onnx.load(str(source), load_external_data=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"{source}: expected a 4-d image input, got {dims}")
    height, width = (dims[1], dims[2]) if dims[3] == 3 else (dims[2], dims[3])
    if (height <= 0 or width <= 0) and fallback is not None:
        return fallback
    if height <= 0 or width <= 0:
        raise ValueError(f"{source}: input height/width are dynamic; give them explicitly")
    return height, width


def prepare(
    item: CatalogEntry,
    repository: Path,
    source: Path | None = None,
    assets: Path | None = None,
    pixels: Pixels | None = None,
    classes: int | None = None,
) -> Path:
    """Write `NAME/1/model.onnx` in `repository` from the given or the demo weights (and the
    shipped `NAME/config.pbtxt` where the repository has none).

    `pixels` overrides the entry's convention for weights trained differently (see PIXEL_PRESETS);
    `classes` the number of leading classes a detector's output keeps (0: all of them).
    """
    from_demo = source is None
    source = source or find_demo_weights(item, assets)
    if source is None:
        raise WeightsMissing(missing_message(item, repository, assets))
    pixels = pixels or item.pixels
    height, width = input_size(source, item.default_input_size)
    spec = InputSpec(
        height=height,
        width=width,
        channel_order=pixels.channel_order,  # type: ignore[arg-type]
        mean=pixels.mean,
        std=pixels.std,
        layout=pixels.layout,  # type: ignore[arg-type]
    )
    write_shipped_config(repository, item.name)
    destination = repository / item.name / "1" / MODEL_FILE
    asked = classes is not None
    if classes is None:
        classes = item.detector_classes
    elif item.detector_classes is None:
        raise ValueError(f"{item.name}: --classes applies to detectors only")
    columns = FIRST_CLASS_COLUMN + classes if classes else None
    prepare_model(source, destination, spec, output_columns=columns, exact=asked)
    provenance = {
        "source": str(source),
        "source_sha256": sha256(source),
        "prepared_by": PREP_VERSION,
        "from_demo": from_demo,
        "classes": classes or "all",
    }
    destination.with_name(PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    log.info("prepared %s from %s", destination, source)
    return destination


def is_stale(item: CatalogEntry, repository: Path, assets: Path | None = None) -> bool:
    """A file this tool prepared from other weights, or by an older preparation, is redone.

    A servable file without provenance was put there by an operator and is never touched.
    """
    served = repository / item.name / "1" / MODEL_FILE
    if not served.is_file():
        return True
    record = served.with_name(PROVENANCE_FILE)
    if not record.is_file():
        return False
    try:
        provenance = json.loads(record.read_text())
    except (OSError, ValueError):
        return True
    source = Path(str(provenance.get("source", "")))
    # Files prepared before provenance said so: from the demo weights if the file name is theirs.
    if not provenance.get("from_demo", source.name == item.demo_weights):
        # Prepared from weights the operator chose: keep; redoing it from the demo weights would
        # swap the operator's model for the demo's.
        if provenance.get("prepared_by") != PREP_VERSION:
            log.warning(
                "%s was prepared by %s, this version prepares as %s: run `streamer models "
                "prepare %s --source %s` again", served, provenance.get("prepared_by"),
                PREP_VERSION, item.name, source,
            )
        return False
    if provenance.get("prepared_by") != PREP_VERSION:
        return True  # redone from the demo weights (missing ones are named then)
    demo = find_demo_weights(item, assets)
    return demo is not None and sha256(demo) != provenance.get("source_sha256")


def recorded_classes(item: CatalogEntry, repository: Path) -> int | None:
    """The classes a prepared detector was asked to keep (0: all), to keep them when redone."""
    record = repository / item.name / "1" / PROVENANCE_FILE
    try:
        classes = json.loads(record.read_text()).get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    if classes == "all":
        return 0
    return classes if isinstance(classes, int) and classes >= 0 else None


def find(name: str) -> CatalogEntry | None:
    """The catalogue's entry for a model, or None for a model of the operator's own."""
    return next((item for item in CATALOG if item.name == name), None)


def ensure_prepared(names: list[str], repository: Path, assets: Path | None = None) -> None:
    """Write the shipped configs the repository lacks, and prepare every listed model that is
    missing or stale (embedded mode does this at start).

    A model the catalogue does not know is served as the repository holds it (`1/model.onnx`
    with a uint8 input, or any graph the operator's client code feeds)."""
    write_shipped_configs(repository, names)
    for name in names:
        item = find(name)
        if item is None:
            if not (repository / name / "1" / MODEL_FILE).is_file():
                raise WeightsMissing(
                    f"model '{name}': {repository / name / '1' / MODEL_FILE} is missing, and the "
                    f"catalogue has no weights to prepare it from (known: "
                    f"{', '.join(i.name for i in CATALOG)})"
                )
            continue
        if is_stale(item, repository, assets):
            classes = recorded_classes(item, repository) if item.detector_classes else None
            prepare(item, repository, assets=assets, classes=classes)


def fetch(item: CatalogEntry, mirror: str | None = None, assets: Path | None = None) -> Path:
    """Download permissively licensed demo weights into the user cache; on failure, a message
    saying which file to get, from where, and the exact path to put it at.

    `mirror` (or $STREAMER_WEIGHTS_MIRROR) replaces the official URL's folder, for sites that
    reach the internet only through an internal mirror.
    """
    if item.fetch_url is None:
        place = assets_dir(assets) / "models" / item.demo_weights
        raise WeightsMissing(
            f"{item.name}: {item.demo_weights} ({item.demo_licence}) has no public download this "
            f"tool may fetch; get it from your team's shared assets or its upstream project under "
            f"its licence and put it at {place} (the folder is $STREAMER_ASSETS/models)\n"
            f"  production: {item.production}"
        )
    destination = user_cache_dir() / "models" / item.demo_weights
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    mirror = mirror or os.environ.get(MIRROR_ENV_VAR)
    url = f"{mirror.rstrip('/')}/{item.demo_weights}" if mirror else item.fetch_url
    try:
        with (
            urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response,
            tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as tmp,
        ):
            shutil.copyfileobj(response, tmp)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsMissing(
            f"{item.name}: cannot download {url}: {reason}\n"
            f"  download {item.demo_weights} from {item.fetch_url} on a machine that can reach "
            f"it, and put it at {destination}"
        ) from None
    Path(tmp.name).replace(destination)
    input_size(destination)  # a truncated or wrong file fails here, not at serving time
    return destination
