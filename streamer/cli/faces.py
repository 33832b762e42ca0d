"""`streamer faces enroll NAME IMAGE...`, `streamer faces list`, `streamer faces remove NAME`.

Enrolment runs the served face models (an embedded Triton started for the command, or the
external server of the configuration) through the very classes the pipeline uses, so enrolled and
live faces are detected, aligned and embedded identically.
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
        action.add_argument("--store", type=Path, help="faces store file (default: from CONFIG)")
    faces.set_defaults(handler=cmd_faces)


def _config(path: str | None) -> StreamerConfig:
    if path is None:
        # Defaults for everything; enrolment needs no cameras, so none are validated.
        return StreamerConfig.model_construct(cameras=[])
    return load_config_or_exit(path)


def cmd_faces(args: argparse.Namespace) -> int:
    from streamer.identities.enrolment import FaceStore
    from streamer.identities.stage import resolve_store_path

    config = _config(args.config)
    path = args.store or resolve_store_path(config)
    try:
        store = FaceStore(path)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.faces_action == "list":
        counts = store.counts()
        if not counts:
            print(f"no faces enrolled in {path}")
        for name, count in counts.items():
            print(f"{name}: {count} image{'s' if count != 1 else ''}")
        return EXIT_OK
    if args.faces_action == "remove":
        removed = store.remove(args.name)
        if not removed:
            print(f"error: '{args.name}' is not enrolled in {path}", file=sys.stderr)
            return EXIT_FAILED
        store.save()
        print(f"removed '{args.name}' ({removed} image{'s' if removed != 1 else ''}) from {path}")
        return EXIT_OK
    return run_async(_enroll_command(config, store, args.name, list(args.images)))


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
    count = len(images)
    print(f"enrolled '{name}' from {count} image{'s' if count != 1 else ''} into {store.path}")
    return EXIT_OK
