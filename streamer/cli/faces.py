"""`streamer faces enroll NAME IMAGE...`, `streamer faces list`, `streamer faces remove NAME`.

Enrolment runs the served face models (an embedded Triton started for the command, or the
external server of the configuration) through the very classes the pipeline uses, so enrolled and
live faces are detected, aligned and embedded identically.

Every command uses the store the service would use with the same `--config` (`store_path`):
`identities.faces_store`, relative to the config file like every path in it (default
`data/faces.npz` beside it); without `--config`, `data/faces.npz` in the working directory. Each
names the store's absolute path, so enrolling into a file the service does not read shows at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.cli.common import EXIT_FAILED, EXIT_OK, load_config_or_exit, run_async
from streamer.config import StreamerConfig

if TYPE_CHECKING:
    from streamer.identities.enrolment import FaceStore


def add_faces_parser(commands: Any) -> None:
    """Register `faces` on the main parser's subcommands (heavy imports wait for the handler)."""
    faces = commands.add_parser("faces", help="enrol, list or remove known faces")
    actions = faces.add_subparsers(dest="faces_action", required=True)
    enroll = actions.add_parser("enroll", help="store the one face of each IMAGE under NAME")
    enroll.add_argument("name", help="the person's name, shown on matching tracks")
    enroll.add_argument("images", nargs="+", type=Path, help="photos with exactly one face")
    listing = actions.add_parser("list", help="enrolled names and their number of images")
    remove = actions.add_parser("remove", help="forget every image of NAME")
    remove.add_argument("name")
    for action in (enroll, listing, remove):
        action.add_argument("--config", help="YAML configuration (store path, models, Triton)")
        action.add_argument(
            "--store",
            type=Path,
            help="faces store file (default: identities.faces_store of CONFIG, else "
            "data/faces.npz in the working directory)",
        )
    faces.set_defaults(handler=cmd_faces)


def _config(path: str | None) -> StreamerConfig:
    if path is None:
        # Defaults for everything; enrolment needs no cameras, so none are validated.
        return StreamerConfig.model_construct(cameras=[])
    return load_config_or_exit(path)


def cmd_faces(args: argparse.Namespace) -> int:
    from streamer.identities.enrolment import FaceStore, store_path

    config = _config(args.config)
    try:
        store = FaceStore(args.store or store_path(config))
        if args.faces_action == "list":
            return _list(store)
        if args.faces_action == "remove":
            return _remove(store, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return run_async(_enroll_command(config, store, args.name, list(args.images)))


def _plural(count: int) -> str:
    return f"{count} image{'s' if count != 1 else ''}"


def _list(store: FaceStore) -> int:
    counts = store.counts()
    if not counts:
        print(f"no faces enrolled in {store.path}")
    for name, count in counts.items():
        print(f"{name}: {_plural(count)}")
    return EXIT_OK


def _remove(store: FaceStore, name: str) -> int:
    """Remove under the store's lock, from the file as it is now (not as it was read at start)."""
    with store.editing():
        removed = store.remove(name)
    if not removed:
        print(f"error: '{name}' is not enrolled in {store.path}", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed '{name}' ({_plural(removed)}) from {store.path}")
    return EXIT_OK


async def _enroll_command(
    config: StreamerConfig, store: FaceStore, name: str, images: list[Path]
) -> int:
    from streamer.identities.enrolment import EnrolmentRefused, enrol, face_models
    from streamer.identities.gallery import EmbeddingSizeMismatch
    from streamer.inference.triton import TritonConnection

    connection = TritonConnection(config, [config.faces.detector_model, config.faces.embedder_model])
    try:
        await connection.start()
        detector, embedder = face_models(connection.models, config.faces)
        await enrol(store, name, images, detector, embedder)
    except EnrolmentRefused as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_FAILED
    except (EmbeddingSizeMismatch, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await connection.stop()
    print(f"enrolled '{name}' from {_plural(len(images))} into {store.path}")
    return EXIT_OK
