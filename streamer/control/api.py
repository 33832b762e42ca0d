"""The camera REST API on the dashboard's server, and its OpenAPI 3 document.

The document is generated from the same pydantic models as the config file, so the API and the
YAML cannot disagree. Reading needs what the dashboard needs (the server's token check); changing
needs the token too, and with no token configured changes are refused unless
`dashboard.api.allow_unauthenticated_loopback` lets loopback clients in. Changes accept only
`application/json` (a browser form cannot send it, so no cross-site requests) and are logged with
the client's address, never with values.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from streamer.config import CAMERA_NAME_PATTERN, CameraConfig, DashboardConfig
from streamer.control.cameras import CameraControl, ChangeRefused
from streamer.core.redaction import redact_url
from streamer.core.stats import CameraState, StatsRegistry

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
SCHEMA_REF = "#/components/schemas/{model}"
DISABLED_STATE = "disabled"  # switched off in the config: not running, so no CameraState of its own
STATES = [*(state.value for state in CameraState), DISABLED_STATE]
# (processed FPS, decoded FPS, mean latency ms) per camera, from the metrics sampler
Rates = Callable[[str], tuple[float, float, float | None] | None]


def error_response(status: int, lines: list[str]) -> web.Response:
    return web.json_response({"error": lines[0] if lines else "", "errors": lines}, status=status)


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class CameraApi:
    """`routes()` go to the dashboard server (`MetricsService(routes=...)`)."""

    def __init__(
        self,
        control: CameraControl,
        settings: DashboardConfig,
        stats: StatsRegistry,
        rates: Rates | None = None,
    ) -> None:
        self.control = control
        self.settings = settings
        self.stats = stats
        self.rates = rates
        self._document = openapi_document()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/openapi.json", self._openapi),
            web.get("/api/cameras", self._list),
            web.post("/api/cameras", self._add),
            web.get("/api/cameras/{name}", self._get),
            web.patch("/api/cameras/{name}", self._patch),
            web.delete("/api/cameras/{name}", self._delete),
            web.post("/api/reload", self._reload),
        ]

    # -- reading --------------------------------------------------------------------------------

    def view(self, camera: CameraConfig) -> dict[str, Any]:
        """The camera's settings (credentials redacted), its state and recent figures."""
        settings = camera.model_dump(mode="json")
        settings["url"] = redact_url(camera.url)
        stats = self.stats.cameras().get(camera.name) if camera.enabled else None
        rates = self.rates(camera.name) if self.rates is not None and stats is not None else None
        state: CameraState | str = stats.state if stats is not None else (
            DISABLED_STATE if not camera.enabled else CameraState.CONNECTING
        )
        return {
            "name": camera.name,
            "state": state,
            "detail": stats.detail if stats is not None else None,
            "processed_fps": round(rates[0], 2) if rates else 0.0,
            "decoded_fps": round(rates[1], 2) if rates else 0.0,
            "latency_ms": None if not rates or rates[2] is None else round(rates[2], 1),
            "processed": stats.processed if stats is not None else 0,
            "config": settings,
        }

    async def _openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(self._document)

    async def _list(self, _request: web.Request) -> web.Response:
        return web.json_response({"cameras": [self.view(c) for c in self.control.config.cameras]})

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        camera = self.control.camera(name)
        if camera is None:
            return error_response(404, [f"cameras: no camera named '{name}'"])
        return web.json_response(self.view(camera))

    # -- changing -------------------------------------------------------------------------------

    def _refusal(self, request: web.Request, needs_json: bool) -> web.Response | None:
        """Why this change request is not accepted, or None. A token, when set, was already
        checked by the server for every /api path."""
        if self.settings.token is None and not (
            self.settings.api.allow_unauthenticated_loopback and is_loopback(request.remote)
        ):
            reason = (
                "camera changes need the dashboard token: set dashboard.token (clients send "
                "Authorization: Bearer TOKEN)"
                + (", or dashboard.api.allow_unauthenticated_loopback: true to accept changes "
                   "from this machine without one"
                   if not self.settings.api.allow_unauthenticated_loopback
                   else "; without one only loopback clients may change cameras")
            )
            log.warning("refused a camera change from %s: no token configured", request.remote)
            return error_response(403, [reason])
        if needs_json and request.content_type != JSON_TYPE:
            return error_response(415, [f"body: send {JSON_TYPE} (got {request.content_type})"])
        return None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError as exc:
            raise ChangeRefused(400, [f"body: not valid JSON: {exc}"]) from None
        if not isinstance(body, dict):
            raise ChangeRefused(422, ["body: expected a JSON object of camera settings"])
        return body

    async def _add(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request, needs_json=True)
        if refusal is not None:
            return refusal
        try:
            camera = await self.control.add(await self._body(request), who=str(request.remote))
        except ChangeRefused as exc:
            return error_response(exc.status, exc.lines)
        return web.json_response(self.view(camera), status=201)

    async def _patch(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request, needs_json=True)
        if refusal is not None:
            return refusal
        name = request.match_info["name"]
        try:
            camera = await self.control.update(name, await self._body(request), who=str(request.remote))
        except ChangeRefused as exc:
            return error_response(exc.status, exc.lines)
        return web.json_response(self.view(camera))

    async def _delete(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request, needs_json=False)
        if refusal is not None:
            return refusal
        try:
            await self.control.remove(request.match_info["name"], who=str(request.remote))
        except ChangeRefused as exc:
            return error_response(exc.status, exc.lines)
        return web.Response(status=204)

    async def _reload(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request, needs_json=True)
        if refusal is not None:
            return refusal
        try:
            report = await self.control.reload(who=str(request.remote))
        except ChangeRefused as exc:
            return error_response(exc.status, exc.lines)
        return web.json_response(report.as_json())


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 from the config models: CameraConfig as in the file, and a partial form of it
    for PATCH (every key optional; null puts a key back to its default)."""
    camera = CameraConfig.model_json_schema(ref_template=SCHEMA_REF)
    definitions = camera.pop("$defs", {})
    patch = copy.deepcopy(camera)
    patch.pop("required", None)
    patch["title"] = "CameraPatch"
    patch["description"] = "Only the settings to change; null puts a setting back to its default."
    patch["properties"] = {
        key: _nullable({k: v for k, v in value.items() if k != "default"})
        for key, value in patch["properties"].items()
    }
    error = {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "The first problem, one line."},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["error", "errors"],
    }
    view = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "detail": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "processed_fps": {"type": "number"},
            "decoded_fps": {"type": "number"},
            "latency_ms": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "processed": {"type": "integer"},
            "config": {"$ref": SCHEMA_REF.format(model="CameraConfig")},
        },
        "required": ["name", "state", "processed_fps", "decoded_fps", "config"],
    }
    reload_report = {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": {"type": "string"}}
            for key in ("added", "removed", "changed", "restart_needed")
        } | {"message": {"type": "string"}},
        "required": ["added", "removed", "changed", "restart_needed", "message"],
    }

    def ref(model: str) -> dict[str, Any]:
        return {"$ref": SCHEMA_REF.format(model=model)}

    def answer(description: str, model: str = "Error") -> dict[str, Any]:
        return {"description": description, "content": {JSON_TYPE: {"schema": ref(model)}}}

    refusals = {
        "401": answer("The dashboard token is missing."),
        "403": answer("Wrong token, or changes are not allowed without one."),
        "415": answer("The body is not application/json."),
        "503": answer("The pipeline is still starting."),
    }
    name_parameter = {
        "name": "name", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": CAMERA_NAME_PATTERN},
    }
    body = {"required": True, "content": {JSON_TYPE: {"schema": ref("CameraConfig")}}}
    patch_body = {"required": True, "content": {JSON_TYPE: {"schema": ref("CameraPatch")}}}
    bad = {
        "400": answer("The body is not valid JSON."),
        "422": answer("The change is invalid; nothing changed. One line per problem, as the "
                      "config loader reports them (e.g. cameras[3].url: unsupported URL scheme)."),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamer camera API", "version": "1"},
        "paths": {
            "/api/cameras": {
                "get": {
                    "summary": "Every camera: settings (credentials redacted), state, FPS, latency.",
                    "responses": {"200": {"description": "The cameras.", "content": {JSON_TYPE: {
                        "schema": {"type": "object", "properties": {
                            "cameras": {"type": "array", "items": ref("CameraView")}},
                            "required": ["cameras"]}}}}},
                },
                "post": {
                    "summary": "Add a camera; it starts at once and is written to the config file.",
                    "requestBody": body,
                    "responses": {"201": answer("Added.", "CameraView"), **bad,
                                  "409": answer("A camera of that name exists."), **refusals},
                },
            },
            "/api/cameras/{name}": {
                "parameters": [name_parameter],
                "get": {
                    "summary": "One camera.",
                    "responses": {"200": answer("The camera.", "CameraView"),
                                  "404": answer("No such camera.")},
                },
                "patch": {
                    "summary": "Change any of the camera's settings; only this camera restarts.",
                    "requestBody": patch_body,
                    "responses": {"200": answer("Changed.", "CameraView"), **bad,
                                  "404": answer("No such camera."),
                                  "409": answer("The new name is taken."), **refusals},
                },
                "delete": {
                    "summary": "Remove the camera: its tracks end, it leaves the config file.",
                    "responses": {"204": {"description": "Removed."},
                                  "404": answer("No such camera."),
                                  "422": answer("The last camera cannot be removed."),
                                  **refusals},
                },
            },
            "/api/reload": {
                "post": {
                    "summary": "Re-read the config file and apply the camera differences.",
                    "requestBody": {"required": False, "content": {JSON_TYPE: {
                        "schema": {"type": "object", "maxProperties": 0}}}},
                    "responses": {"200": answer("What changed; sections that need a restart.",
                                                "ReloadReport"),
                                  "409": answer("The service was not started from a file."),
                                  **bad, **refusals},
                },
            },
        },
        "components": {
            "schemas": {
                **definitions,
                "CameraConfig": camera,
                "CameraPatch": patch,
                "CameraView": view,
                "ReloadReport": reload_report,
                "Error": error,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
