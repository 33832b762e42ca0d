"""The identities REST API: who the gallery thinks is who, and the operator's corrections.

`GET /api/identities` lists the identities held (their tracks per camera) and, per camera pair,
the current calibration and how many links were confirmed; `confirm`, `reject`, `merge` and
`split` correct them. Changes pass the camera API's checks (the token, or loopback when allowed;
`application/json` only) and are logged with the client's address. The gallery keeps each
decision and honours it later (a rejected track does not rejoin, a split stays apart), and the
service keeps them across restarts (`streamer/identities/decisions.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer.config import format_loc
from streamer.control.responses import error_response
from streamer.identities.decisions import OperatorGallery
from streamer.identities.gallery import Identity, UnknownIdentity

log = logging.getLogger(__name__)

MAX_GLOBAL_ID = (1 << 53) - 1  # global ids stay exact as JavaScript numbers
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_TRACKS = 1000
IDENTITIES_OFF = (
    "identities: cross-camera identities are off: set reid.enabled: true in the config"
)

# Why a change request is refused (the camera API's checks), or None: (request, needs_json).
Refusal = Callable[[web.Request, bool], web.Response | None]


class Body(BaseModel):
    """JSON types exactly (no "5" for 5), no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid")


class TrackRef(Body):
    """One track of one camera."""

    camera: str = Field(min_length=1, max_length=200)
    track_id: int = Field(ge=0, le=MAX_GLOBAL_ID)


class RejectBody(TrackRef):
    """The track that is not this person."""


class MergeBody(Body):
    """Identities that are one person; the oldest (smallest) id stays."""

    ids: list[Annotated[int, Field(ge=0, le=MAX_GLOBAL_ID)]] = Field(min_length=2, max_length=MAX_TRACKS)


class SplitBody(Body):
    """Tracks of identity `id` that are somebody else: they get a new id, kept apart from it."""

    id: int = Field(ge=0, le=MAX_GLOBAL_ID)
    tracks: list[TrackRef] = Field(min_length=1, max_length=MAX_TRACKS)


def identity_view(identity: Identity) -> dict[str, Any]:
    members = [
        {
            "camera": member.camera,
            "track_id": member.track_id,
            "first_seen": round(member.first_seen, 3),
            "last_seen": round(member.last_seen, 3),
            "active": member.active,
        }
        for member in identity.members
    ]
    return {
        "id": identity.global_id,
        "confirmed": identity.confirmed,
        "cameras": sorted({member.camera for member in identity.members}),
        "first_seen": min((round(m.first_seen, 3) for m in identity.members), default=None),
        "last_seen": max((round(m.last_seen, 3) for m in identity.members), default=None),
        "members": members,
    }


class IdentityApi:
    """`routes()` go to the dashboard server; `gallery` None: reid is off (every route says so)."""

    def __init__(self, gallery: OperatorGallery | None, refusal: Refusal) -> None:
        self.gallery = gallery
        self.refusal = refusal

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/identities", self._list),
            web.post("/api/identities/merge", self._merge),
            web.post("/api/identities/split", self._split),
            web.post("/api/identities/{id}/confirm", self._confirm),
            web.post("/api/identities/{id}/reject", self._reject),
        ]

    # -- reading --------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        if self.gallery is None:
            return error_response(404, [IDENTITIES_OFF])
        camera = request.query.get("camera") or None
        raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return error_response(422, [f"limit: a whole number from 1 to {MAX_LIMIT} (got {raw_limit!r})"])
        identities = self.gallery.identities(camera)
        return web.json_response({
            "identities": [identity_view(i) for i in identities[: int(raw_limit)]],
            "total": len(identities),
            "pairs": self.gallery.pairs(),
            "saved": self.gallery.saved,
        })

    # -- changing -------------------------------------------------------------------------------

    async def _confirm(self, request: web.Request) -> web.Response:
        async def confirm(gallery: OperatorGallery, global_id: int) -> dict[str, Any]:
            await self._body(request, None)
            return {"identity": identity_view(await gallery.confirm(global_id))}

        return await self._change(request, "confirmed", confirm)

    async def _reject(self, request: web.Request) -> web.Response:
        async def reject(gallery: OperatorGallery, global_id: int) -> dict[str, Any]:
            body = await self._body(request, RejectBody)
            assert isinstance(body, RejectBody)
            kept, rejected = await gallery.reject(global_id, body.camera, body.track_id)
            return {"identity": identity_view(kept), "rejected": identity_view(rejected)}

        return await self._change(request, "rejected a track of", reject)

    async def _merge(self, request: web.Request) -> web.Response:
        async def merge(gallery: OperatorGallery, _: int | None) -> dict[str, Any]:
            body = await self._body(request, MergeBody)
            assert isinstance(body, MergeBody)
            return {"identity": identity_view(await gallery.merge(body.ids))}

        return await self._change(request, "merged", merge)

    async def _split(self, request: web.Request) -> web.Response:
        async def split(gallery: OperatorGallery, _: int | None) -> dict[str, Any]:
            body = await self._body(request, SplitBody)
            assert isinstance(body, SplitBody)
            kept, split = await gallery.split(body.id, [(t.camera, t.track_id) for t in body.tracks])
            return {"identity": identity_view(kept), "split": identity_view(split)}

        return await self._change(request, "split", split)

    async def _change(
        self,
        request: web.Request,
        verb: str,
        change: Callable[[OperatorGallery, Any], Awaitable[dict[str, Any]]],
    ) -> web.Response:
        """Checks, the change, its answer; refusals as one-line errors, nothing changed."""
        refusal = self.refusal(request, True)
        if refusal is not None:
            return refusal
        if self.gallery is None:
            return error_response(404, [IDENTITIES_OFF])
        global_id: int | None = None
        if "id" in request.match_info:
            raw = request.match_info["id"]
            if not raw.isdigit() or int(raw) > MAX_GLOBAL_ID:
                return error_response(404, [f"identities: no identity '{raw[:40]}' (ids are whole numbers)"])
            global_id = int(raw)
        try:
            answer = await change(self.gallery, global_id)
        except _BadBody as exc:
            return error_response(exc.status, exc.lines)
        except UnknownIdentity as exc:
            return error_response(404, [f"identities: {exc}"])
        except ValueError as exc:  # kept apart by an operator, or nothing to change
            return error_response(409, [f"identities: {exc}"])
        answer["saved"] = self.gallery.saved
        log.info("identities: %s %s from %s", verb, answer["identity"]["id"], request.remote)
        return web.json_response(answer)

    async def _body(self, request: web.Request, model: type[Body] | None) -> Body | None:
        """The validated body; an empty or `{}` body when `model` is None."""
        try:
            data = json.loads(await request.text() or ("{}" if model is None else "null"))
        except ValueError as exc:
            raise _BadBody(400, [f"body: not valid JSON: {exc}"]) from None
        if model is None:
            if data != {}:
                raise _BadBody(422, ["body: expected no body or {}"])
            return None
        if not isinstance(data, dict):
            raise _BadBody(422, [f"body: expected a JSON object ({model.__doc__})"])
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _BadBody(422, [
                f"body.{format_loc(tuple(error['loc']))}: {error['msg']}" for error in exc.errors()
            ]) from None


class _BadBody(Exception):
    def __init__(self, status: int, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.status = status
        self.lines = lines


def openapi_paths(ref: Callable[[str], dict[str, Any]],
                  answer: Callable[..., dict[str, Any]],
                  refusals: dict[str, Any], json_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The identities routes and their schemas, for the API's OpenAPI document."""
    member = {
        "type": "object",
        "properties": {
            "camera": {"type": "string"},
            "track_id": {"type": "integer"},
            "first_seen": {"type": "number", "description": "Seconds since the epoch."},
            "last_seen": {"type": "number"},
            "active": {"type": "boolean", "description": "The track is still on its camera."},
        },
        "required": ["camera", "track_id", "first_seen", "last_seen", "active"],
    }
    identity = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "The global id."},
            "confirmed": {"type": "boolean", "description": "An operator confirmed its links."},
            "cameras": {"type": "array", "items": {"type": "string"}},
            "first_seen": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "last_seen": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "members": {"type": "array", "items": ref("IdentityMember")},
        },
        "required": ["id", "confirmed", "cameras", "members"],
    }
    pair = {
        "type": "object",
        "properties": {
            "cameras": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
            "threshold": {"type": "number", "description": "Similarity from which two tracks of "
                          "these cameras may be one person."},
            "source": {"type": "string", "enum": ["calibrated", "default"]},
            "negatives": {"type": "integer", "description": "Pairs known to be two people."},
            "confirmed": {"type": "integer", "description": "Links confirmed (by an operator, or "
                          "by an enrolled face)."},
            "transits": {"type": "integer", "description": "Transit times learned."},
        },
        "required": ["cameras", "threshold", "source", "negatives", "confirmed", "transits"],
    }
    saved = {"type": "boolean", "description": "The decisions are saved "
             "(identities.calibration_store); false: the last save failed (logged)."}
    listing = {
        "type": "object",
        "properties": {
            "identities": {"type": "array", "items": ref("Identity")},
            "total": {"type": "integer", "description": "Identities held (before `limit`)."},
            "pairs": {"type": "array", "items": ref("CameraPairCalibration")},
            "saved": saved,
        },
        "required": ["identities", "total", "pairs", "saved"],
    }

    def decided(*also: str) -> dict[str, Any]:
        properties = {"identity": ref("Identity"), **{key: ref("Identity") for key in also}}
        return {"type": "object", "properties": {**properties, "saved": saved},
                "required": [*properties, "saved"]}

    def body(model: str) -> dict[str, Any]:
        return {"required": True, "content": {json_type: {"schema": ref(model)}}}

    id_parameter = {"name": "id", "in": "path", "required": True,
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_GLOBAL_ID}}
    unknown = answer("No such identity or track (unknown, aged out), or identities are off.")
    bad = {"400": answer("The body is not valid JSON."),
           "422": answer("The body is invalid; one line per problem.")}
    paths = {
        "/api/identities": {
            "get": {
                "summary": "Identities held (newest first) with their tracks, and per camera pair "
                           "the calibration and the links confirmed.",
                "parameters": [
                    {"name": "camera", "in": "query", "required": False,
                     "schema": {"type": "string"}, "description": "Only identities seen on it."},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT}},
                ],
                "responses": {"200": answer("The identities.", "IdentityList"),
                              "404": answer("Identities are off (reid.enabled: false)."),
                              "422": answer("A bad limit.")},
            },
        },
        "/api/identities/{id}/confirm": {
            "parameters": [id_parameter],
            "post": {
                "summary": "Every link of the identity is right: kept, and taught to the "
                           "calibration (confirmed links, transit times).",
                "requestBody": {"required": False, "content": {json_type: {
                    "schema": {"type": "object", "maxProperties": 0}}}},
                "responses": {"200": answer("Confirmed.", "IdentityDecision"), **bad,
                              "404": unknown, **refusals},
            },
        },
        "/api/identities/{id}/reject": {
            "parameters": [id_parameter],
            "post": {
                "summary": "The track is not this person: it gets an id of its own and never "
                           "rejoins this identity.",
                "requestBody": body("TrackRef"),
                "responses": {"200": answer("Rejected; `rejected` is the track's new identity.",
                                            "IdentityRejection"), **bad, "404": unknown,
                              "409": answer("The track is the identity's only one."), **refusals},
            },
        },
        "/api/identities/merge": {
            "post": {
                "summary": "The identities are one person: the oldest (smallest) id stays.",
                "requestBody": body("IdentityMerge"),
                "responses": {"200": answer("Merged.", "IdentityDecision"), **bad, "404": unknown,
                              "409": answer("An operator kept two of them apart, or only one "
                                            "identity was named."), **refusals},
            },
        },
        "/api/identities/split": {
            "post": {
                "summary": "The tracks are somebody else: they get a new id, kept apart from "
                           "this identity.",
                "requestBody": body("IdentitySplit"),
                "responses": {"200": answer("Split; `split` is the new identity.", "IdentitySplitDone"),
                              **bad, "404": unknown,
                              "409": answer("Every track of the identity was named."), **refusals},
            },
        },
    }
    schemas = {
        "IdentityMember": member,
        "Identity": identity,
        "CameraPairCalibration": pair,
        "IdentityList": listing,
        "IdentityDecision": decided(),
        "IdentityRejection": decided("rejected"),
        "IdentitySplitDone": decided("split"),
        "TrackRef": _schema(RejectBody, "TrackRef", ref),
        "IdentityMerge": _schema(MergeBody, "IdentityMerge", ref),
        "IdentitySplit": _schema(SplitBody, "IdentitySplit", ref),
    }
    return paths, schemas


def _schema(model: type[BaseModel], title: str, ref: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=ref("{model}")["$ref"])
    schema.pop("$defs", None)
    schema["title"] = title
    return schema
