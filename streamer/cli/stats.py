"""`streamer stats`: the dashboard's per-camera table in a terminal, read from a running service.

The service's `/api/state` is parsed into its model (`ServiceState`), so this reads only what the
published schema declares; an answer that does not fit says which field is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

from pydantic import ValidationError

from streamer.cli.common import EXIT_FAILED, EXIT_OK
from streamer.metrics.state import ServiceState

TOKEN_ENV_VAR = "STREAMER_DASHBOARD_TOKEN"
CLEAR_SCREEN = "\x1b[H\x1b[2J"


class StatsUnavailable(RuntimeError):
    """The service could not be reached or refused the request; the message says why."""


def fetch_state(url: str, token: str | None, timeout_s: float) -> ServiceState:
    request = urllib.request.Request(f"{url.rstrip('/')}/api/state")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        hint = " (pass --token or set STREAMER_DASHBOARD_TOKEN)" if exc.code in (401, 403) else ""
        raise StatsUnavailable(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatsUnavailable(f"{url}: cannot read the service's state: {reason}") from None
    try:
        return ServiceState.model_validate_json(body)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the answer"
        raise StatsUnavailable(
            f"{url}/api/state: not a streamer state ({where}: {problem['msg']})"
        ) from None


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], left: int) -> list[str]:
    """Columns sized to their content; the first `left` columns left-aligned, the rest right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def format_state(state: ServiceState) -> str:
    """The same per-camera figures as the dashboard tiles, plus models and sinks."""
    cameras = [
        [
            c.name,
            c.status,
            _number(c.processed_fps, 1),
            _number(c.decoded_fps, 1),
            _number(c.latency_ms, 1),
            _number(c.tracks),
            _number(c.dropped),
            _number(c.skipped),
            _number(c.gated) if c.motion_gated else "-",
            f"{c.motion_area * 100:.1f}%" if c.motion_gated else "-",
            _number(c.reconnects),
            f"{c.quality * 100:.0f}%",
        ]
        for c in state.cameras
    ]
    lines = _table(
        ["CAMERA", "STATUS", "FPS", "DECODED", "LATENCY_MS", "TRACKS", "DROPPED", "SKIPPED",
         "GATED", "MOTION", "RECONNECTS", "QUALITY"],
        cameras,
        left=2,
    )
    models = [
        [
            m.name,
            _number(m.requests_per_s, 1),
            _number(m.requests),
            _number(m.failures),
            _number(m.recent_batch, 2),
            _number(m.queue_ms, 1),
            _number(m.compute_ms, 1),
        ]
        for m in state.models
    ]
    if models:
        lines += ["", *_table(
            ["MODEL", "REQ/S", "REQUESTS", "FAILURES", "BATCH", "QUEUE_MS", "COMPUTE_MS"], models, left=1
        )]
    sinks = [
        [
            s.name,
            "connected" if s.connected else "DISCONNECTED",
            _number(s.published),
            _number(s.buffered),
            _number(s.dropped),
            _number(s.errors),
        ]
        for s in state.sinks
    ]
    if sinks:
        lines += ["", *_table(
            ["SINK", "STATE", "PUBLISHED", "BUFFERED", "DROPPED", "ERRORS"], sinks, left=2
        )]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Print the table every `--interval` seconds until interrupted, or once with `--once`."""
    token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    refresh_in_place = sys.stdout.isatty()
    try:
        while True:
            try:
                text = format_state(fetch_state(args.url, token, args.timeout))
            except StatsUnavailable as exc:
                if args.once:
                    print(f"error: {exc}", file=sys.stderr)
                    return EXIT_FAILED
                text = f"waiting for the service — {exc}"
            if args.once:
                print(text)
                return EXIT_OK
            stamp = time.strftime("%H:%M:%S")
            header = f"streamer stats  {args.url}  {stamp}  (Ctrl-C to quit)"
            print(f"{CLEAR_SCREEN if refresh_in_place else ''}{header}\n\n{text}\n", flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # piped into `head` and the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the service's dashboard address"
    )
    parser.add_argument("--token", help=f"dashboard access token (default: ${TOKEN_ENV_VAR})")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    parser.add_argument("--once", action="store_true", help="print the table once and exit")
