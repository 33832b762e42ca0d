"""`streamer cameras list|add|remove|enable|disable`: a thin client of the service's camera API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from streamer.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

TOKEN_ENV_VAR = "STREAMER_DASHBOARD_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 30.0


class ApiError(RuntimeError):
    """The service refused or could not be reached; the message is what to tell the operator."""


def request(
    base_url: str, method: str, path: str, token: str | None, body: Any = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(f"{base_url.rstrip('/')}{path}", data=data, method=method)
    call.add_header("Accept", "application/json")
    if method != "GET":
        call.add_header("Content-Type", "application/json")
    if token:
        call.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(call, timeout=TIMEOUT_S) as response:
            text = response.read().decode()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            lines = json.loads(text)["errors"]
        except (ValueError, KeyError, TypeError):
            lines = [text.strip() or exc.reason]
        hint = " (pass --token or set STREAMER_DASHBOARD_TOKEN)" if exc.code == 401 else ""
        raise ApiError("\n".join(f"HTTP {exc.code}: {line}{hint}" for line in lines)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"{base_url}: cannot reach the service: {getattr(exc, 'reason', exc)}") from None


def _format(cameras: list[dict[str, Any]]) -> str:
    rows = [["CAMERA", "STATE", "FPS", "LATENCY_MS", "MAX_FPS", "URL"]]
    for camera in cameras:
        config = camera["config"]
        latency = camera.get("latency_ms")
        rows.append([
            camera["name"], camera["state"], f"{camera['processed_fps']:.1f}",
            "-" if latency is None else f"{latency:.0f}",
            "-" if config.get("max_fps") is None else f"{config['max_fps']:g}", config["url"],
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _settings(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are JSON when they parse (numbers, true/false, null), else text."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ApiError(f"'{pair}': write settings as KEY=VALUE (e.g. max_fps=5)")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


def main(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV_VAR)
    url = service_url(args)
    try:
        if args.action == "list":
            print(_format(request(url, "GET", "/api/cameras", token)["cameras"]))
        elif args.action == "add":
            camera = request(url, "POST", "/api/cameras", token,
                             {"name": args.name, "url": args.camera_url, **_settings(args.set)})
            print(f"added {camera['name']} ({camera['state']})")
        elif args.action == "remove":
            request(url, "DELETE", f"/api/cameras/{args.name}", token)
            print(f"removed {args.name}")
        else:
            enabled = args.action == "enable"
            request(url, "PATCH", f"/api/cameras/{args.name}", token, {"enabled": enabled})
            print(f"{args.action}d {args.name}")
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if "write settings" in str(exc) else EXIT_FAILED
    return EXIT_OK


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--url/--token/--config, before or after the action (`cameras --url U list` or `list --url U`)."""
    default = None if defaults else argparse.SUPPRESS
    parser.add_argument(
        "--url", default=default, help=f"dashboard URL (default: from --config, else {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token", default=default, help=f"dashboard token (default ${TOKEN_ENV_VAR})"
    )
    parser.add_argument(
        "--config", default=default, help="the service's config file, for its dashboard address"
    )


def service_url(args: argparse.Namespace) -> str:
    """--url, else the dashboard address in --config (a wildcard listen address is loopback)."""
    if args.url:
        return str(args.url)
    if args.config:
        from streamer.cli.common import load_config_or_exit

        dashboard = load_config_or_exit(args.config).dashboard
        host = dashboard.host if dashboard.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{dashboard.port}"
    return DEFAULT_URL


def add_cameras_parser(commands: Any) -> None:
    cameras = commands.add_parser(
        "cameras", help="list, add, remove, enable or disable cameras of a running service"
    )
    _connection_options(cameras, defaults=True)
    actions = cameras.add_subparsers(dest="action", required=True)
    parsers = [actions.add_parser(
        "list", help="every camera: state, FPS, latency, URL (credentials hidden)"
    )]
    add = actions.add_parser("add", help="add a camera; it starts at once and is saved to the file")
    add.add_argument("name")
    add.add_argument("camera_url", metavar="url")
    add.add_argument("set", nargs="*", metavar="KEY=VALUE", help="more settings, e.g. max_fps=5")
    parsers.append(add)
    for action, text in (("remove", "remove a camera (its tracks end)"),
                         ("enable", "start a disabled camera"),
                         ("disable", "stop a camera but keep it in the config")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("name")
        parsers.append(parser)
    for parser in parsers:
        _connection_options(parser, defaults=False)
    cameras.set_defaults(handler=main)
