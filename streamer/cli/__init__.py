"""`streamer` command line: run, check, models, bench, stats, faces, cameras; one module per command group."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Before numpy loads: OpenBLAS worker threads spin (sched_yield) around the tracker's tiny 4x4
# Kalman solves, a large share of the service's CPU at several cameras (studies/kalman.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from streamer.cli.cameras import add_cameras_parser
from streamer.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    load_config_or_exit,
    log,
    run_async,
    run_until_signal,
)
from streamer.cli.faces import add_faces_parser
from streamer.cli.identities import add_identities_parser
from streamer.cli.stats import add_arguments as add_stats_arguments


def cmd_run(args: argparse.Namespace) -> int:
    from streamer.app import Service

    config = load_config_or_exit(args.config)
    service = Service(config, config_path=Path(args.config))

    async def serve() -> int:
        await run_until_signal(service.start, service.wait, service.stop, reload=service.reload)
        return EXIT_OK

    try:
        run_async(serve())
    except Exception as exc:  # startup problems: one line, no traceback
        log.debug("startup failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from streamer.check import run_checks

    config = load_config_or_exit(args.config)
    print(f"{args.config}: configuration valid ({len(config.cameras)} cameras)")
    return run_async(run_checks(config))


def cmd_models(args: argparse.Namespace) -> int:
    from streamer.cli import models

    return models.main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from streamer.benchmarks.detector import main as bench_main

    return run_async(bench_main(args))


def cmd_stats(args: argparse.Namespace) -> int:
    from streamer.cli import stats

    return stats.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer", description="Multi-camera person detection and tracking on Triton."
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline for the cameras in CONFIG")
    run.add_argument("config", help="YAML configuration file")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check", help="validate CONFIG and probe cameras and Triton")
    check.add_argument("config", help="YAML configuration file")
    check.set_defaults(handler=cmd_check)

    models = commands.add_parser("models", help="list, prepare or fetch model weights")
    models.add_argument("action", nargs="?", default="list", choices=["list", "prepare", "fetch"])
    models.add_argument("names", nargs="*", help="models (default: all / those CONFIG needs)")
    models.add_argument(
        "--config", help="only the models this configuration uses, in its repository"
    )
    models.add_argument("--source", type=Path, help="prepare: weights file to use")
    models.add_argument(
        "--repository",
        type=Path,
        help="model repository (default: CONFIG's, else ./model_repository)",
    )
    models.add_argument("--mirror", help="fetch: base URL of a mirror of the weights files")
    models.add_argument(
        "--pixels",
        help="prepare: pixel convention the weights were trained with: yolox, bytetrack, scrfd, "
        "arcface, imagenet-rgb, raw-bgr-nhwc (default: the model's own; ByteTrack's *_mot17 "
        "detectors need 'bytetrack')",
    )
    models.add_argument(
        "--classes",
        type=int,
        help="prepare person_detector: how many of the detector's leading classes its output "
        "keeps (default 1: the person; 0 keeps all, e.g. COCO's 80); detector.class_ids must be "
        "below it",
    )
    models.set_defaults(handler=cmd_models)

    bench = commands.add_parser("bench", help="measure throughput and latency")
    bench.add_argument("--cameras", default="1,4,8", help="camera counts to measure")
    bench.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    bench.add_argument("--clip", type=Path, help="video (default: the vtest clip)")
    bench.add_argument("--soak", type=float, default=0.0, help="extra soak run at max cameras, s")
    bench.add_argument("--output", type=Path, help="also write the results as JSON here")
    bench.add_argument(
        "--sections",
        default="detector,publishing,identities",
        help="what to measure: detector, publishing, identities, zones (zones and lines, no "
        "model), gating (motion-gated detection), fairness (sharing under overload)",
    )
    bench.add_argument("--mqtt", default="127.0.0.1:1883", help="MQTT broker for the sink runs")
    bench.add_argument("--redis", default="127.0.0.1:6379", help="Redis for the sink runs")
    bench.add_argument(
        "--ort-threads", type=int, default=0, help="ONNX Runtime threads per model instance; 0 = cores"
    )
    bench.add_argument(
        "--repeat", type=int, default=2, help="measure every figure this many times (min-max)"
    )
    bench.set_defaults(handler=cmd_bench)

    stats = commands.add_parser("stats", help="per-camera table from a running service, refreshing")
    add_stats_arguments(stats)
    stats.set_defaults(handler=cmd_stats)
    add_faces_parser(commands)
    add_identities_parser(commands)
    add_cameras_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_opencv_threads()
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def quiet_opencv_threads() -> None:
    """OpenCV's work in this service is small pictures (the letterbox, the motion detector's
    120-pixel frame), each camera in its own thread: its thread pool only wakes threads around
    each call, costing CPU, while the camera threads get no slower without it."""
    import cv2

    cv2.setNumThreads(1)


if __name__ == "__main__":
    raise SystemExit(main())
