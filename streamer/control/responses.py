"""What every API route answers a refusal with: one line first, then every problem."""

from __future__ import annotations

from aiohttp import web

JSON_TYPE = "application/json"


def error_response(status: int, lines: list[str]) -> web.Response:
    return web.json_response({"error": lines[0] if lines else "", "errors": lines}, status=status)
