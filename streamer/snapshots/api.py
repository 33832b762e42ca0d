"""HTTP routes for the dashboard server: the events list and the pictures.

`GET /api/events?camera=&zone=&line=&type=&since=&limit=`: indexed events, newest first: each the
event's published payload with its `id`, its `summary` (what happened in a few words, made by the
event type: "entered zone door", "crossed line gate going in", "track #4 ended") and its
`snapshot_id` (null once retention deleted the picture). `type` may list several, comma
separated; `since` is UNIX seconds. `GET /api/snapshots/{id}.jpg` is the crop,
`/api/snapshots/{id}-frame.jpg` the annotated frame. The dashboard's token and Host rules apply
(the routes join its server). Index reads run in a thread: the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3

from aiohttp import web

from streamer.config import SnapshotsConfig
from streamer.snapshots.archive import FRAME_SUFFIX, EventQuery, EventsIndex

PICTURE_NAME = re.compile(rf"(?P<id>[0-9a-f]{{32}})(?P<frame>{FRAME_SUFFIX})?\.jpg")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message + "\n")


def parse_query(request: web.Request) -> EventQuery:
    """The filters of GET /api/events; a bad value is a 400 naming the parameter."""
    query = request.query
    since = None
    if query.get("since"):
        try:
            since = float(query["since"])
        except ValueError:
            raise bad_request(f"since: not a number (UNIX seconds): {query['since']!r}") from None
        if not math.isfinite(since):
            raise bad_request(f"since: not a finite number: {query['since']!r}")
    limit = DEFAULT_LIMIT
    if query.get("limit"):
        try:
            limit = int(query["limit"])
        except ValueError:
            raise bad_request(f"limit: not an integer: {query['limit']!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise bad_request(f"limit: must be 1..{MAX_LIMIT}, got {limit}")
    types = tuple(t for value in query.getall("type", []) for t in value.split(",") if t)
    return EventQuery(
        camera=query.get("camera") or None,
        zone=query.get("zone") or None,
        line=query.get("line") or None,
        types=types,
        since=since,
        limit=limit,
    )


def snapshot_routes(settings: SnapshotsConfig) -> list[web.RouteDef]:
    index = EventsIndex(settings.directory)

    async def events(request: web.Request) -> web.Response:
        query = parse_query(request)
        try:
            found = await asyncio.to_thread(index.events, query)
        except sqlite3.Error as exc:
            raise web.HTTPServiceUnavailable(text=f"events index unavailable: {exc}\n") from None
        return web.json_response({"events": found})

    async def picture(request: web.Request) -> web.StreamResponse:
        match = PICTURE_NAME.fullmatch(request.match_info["name"])
        if match is None:
            raise web.HTTPNotFound(text="not a snapshot name ({id}.jpg or {id}-frame.jpg)\n")
        path = await asyncio.to_thread(index.picture, match["id"], match["frame"] is not None)
        if path is None:
            raise web.HTTPNotFound(text="no such snapshot (never written, or deleted by retention)\n")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg",
                                               "Cache-Control": "private, max-age=86400"})

    return [web.get("/api/events", events), web.get("/api/snapshots/{name}", picture)]
