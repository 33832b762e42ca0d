"""`streamer identities evaluate DIR`: cross-camera identity measured on a site's own crops."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streamer.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit, run_async
from streamer.config import StreamerConfig


def add_identities_parser(commands: Any) -> None:
    identities = commands.add_parser("identities", help="cross-camera identities")
    actions = identities.add_subparsers(dest="identities_action", required=True)
    evaluate = actions.add_parser(
        "evaluate",
        help="measure rank-1, mAP and linking on person crops named PID_cCAM_*.jpg",
        description="Feeds each (person, camera) group of crops as one track through the ReID "
        "model on Triton, the track aggregation and the gallery with its calibration; calibrates "
        "on a share of the people and reports on the others.",
    )
    evaluate.add_argument("folder", type=Path, help="crops named PID_cCAM_*.jpg (Market-1501)")
    evaluate.add_argument("--config", help="YAML configuration (Triton, reid, identities)")
    evaluate.add_argument("--model", help="ReID model in the repository (default: reid.model)")
    evaluate.add_argument(
        "--calibrate", type=float, default=0.5,
        help="share of the people the gallery is calibrated on (0-1; default 0.5)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="people split and walk order")
    evaluate.add_argument("--no-curve", action="store_true", help="skip the precision/recall curve")
    evaluate.add_argument("--json", action="store_true", help="one JSON object on standard output")
    identities.set_defaults(handler=cmd_identities)


def _config(path: str | None) -> StreamerConfig:
    if path is None:
        return StreamerConfig.model_construct(cameras=[])
    return load_config_or_exit(path)


def cmd_identities(args: argparse.Namespace) -> int:
    if not 0 <= args.calibrate < 1:
        print("error: --calibrate: a share from 0 to below 1", file=sys.stderr)
        return EXIT_USAGE
    config = _config(args.config)
    if args.model:
        config.reid.model = args.model
    return run_async(_evaluate(config, args))


async def _evaluate(config: StreamerConfig, args: argparse.Namespace) -> int:
    from streamer.identities.evaluate import EvaluationError, evaluate, format_report, read_tracks
    from streamer.inference.reid import PersonEmbedder
    from streamer.inference.triton import TritonConnection

    try:
        read_tracks(args.folder)  # a wrong folder is said before Triton starts
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    connection = TritonConnection(config, [config.reid.model])
    try:
        await connection.start()
        model = connection.models[config.reid.model]
        assert model.spec is not None
        embedder = PersonEmbedder(model)
        embedder.configure(model.spec)
        report = await evaluate(
            config, args.folder, embedder, calibration_share=args.calibrate, seed=args.seed,
            curve=not args.no_curve,
        )
    except (EvaluationError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await connection.stop()
    print(json.dumps(report.to_dict()) if args.json else format_report(report))
    return EXIT_OK
