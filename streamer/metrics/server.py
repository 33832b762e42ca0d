"""The HTTP side: dashboard page, live updates (SSE), live view pictures, JSON state and its schema,
/metrics and the health probes /healthz and /readyz (aiohttp).

Everything is served from the package (the machines are offline: no CDN). With a token set, every
request except the page's static code and the two probes must carry it, as `Authorization: Bearer
TOKEN` or `?token=TOKEN` (browsers: EventSource cannot send headers). The probes are open because
Kubernetes and Docker cannot send a secret; so they tell only what a supervisor needs (up or not,
why, counts) and never a URL, nor a camera's name unless the request carries the token.

Connections are capped and must send a request in time (connections.py): at the cap the longest
idle connection makes room, so the probes keep answering while hostile clients hold sockets open.

The Host header is checked before the token (DNS rebinding: a web page re-points its own name at
127.0.0.1 and reads the answers, which a loopback dashboard without a token would give it). Accepted:
`localhost`, any IP address (the browser connected to that address itself: no name, no rebinding,
so NAT and port mappings keep working), the listen address and `dashboard.allowed_hosts`; any Host
when that list holds '*', or when a token is set and the list is empty (the page cannot know the
token). Others get 421. The probes answer any Host: the kubelet sends the pod's IP and port, and
they reveal nothing secret.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamer.config import DashboardConfig, MetricsConfig
from streamer.core.redaction import scrub
from streamer.core.stats import (
    CameraState,
    CameraStats,
    IdentityStoreStats,
    ModelStats,
    PartHealth,
    PartState,
    ServerStats,
    StatsKind,
)
from streamer.metrics.connections import RESERVED_FILES, ConnectionGuard, raise_open_files_limit
from streamer.metrics.live_view import LiveViewStore
from streamer.metrics.sampler import Sampler
from streamer.metrics.state import published_schema
from streamer.metrics.state_view import StateView

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PREFIX = "/static/"  # page code and style: no data, served without the token
STATIC_TYPES = {  # by suffix: every such file in static/ is served (the page's ES modules)
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
INDEX_FILE = "index.html"
HEALTH_PATH = "/healthz"  # liveness: the event loop answers
READY_PATH = "/readyz"  # readiness: inference server up, enough cameras streaming; `degraded` says
# what works less well without stopping frames (a shared identity store down)
PROBE_PATHS = frozenset({HEALTH_PATH, READY_PATH})  # served without the token: probes send none
NOT_STARTED_STATE = "not started"  # enabled in the config, not registered by the pipeline yet
URL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s()<>'\"]+")
NAMED_CAMERAS_MAX = 5
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
ANY_HOST = "*"
REFUSED_HOSTS_LOGGED = 64  # each refused Host name is logged once, up to this many
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token may be in the page's URL
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


class DashboardUnavailable(RuntimeError):
    """The HTTP server could not start (e.g. the port is taken); the message says where."""


class DashboardServer:
    """Owns the aiohttp runner; start()/stop(). `url` is known after start (port 0 = free port)."""

    def __init__(
        self,
        sampler: Sampler,
        state_view: StateView,
        prometheus: CollectorRegistry,
        live_view: LiveViewStore,
        settings: DashboardConfig,
        metrics: MetricsConfig,
        routes: Sequence[web.AbstractRouteDef] = (),
    ) -> None:
        self.sampler = sampler
        self.state_view = state_view
        self.prometheus = prometheus
        self.routes = list(routes)  # more endpoints from the layers above (camera API, events)
        self.live_view = live_view
        self.settings = settings
        self.metrics = metrics
        self.port: int | None = None
        self._token = settings.token.get_secret_value().encode() if settings.token else None
        self._hosts = host_names(settings.host, settings.allowed_hosts)
        self._any_host = ANY_HOST in settings.allowed_hosts or (
            self._token is not None and not settings.allowed_hosts
        )
        self._refused_hosts: set[str] = set()
        self.connections = ConnectionGuard(settings.max_connections, settings.header_timeout_s)
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._created_monotonic = time.monotonic()
        self._files = {
            path.name: path.read_bytes()
            for path in sorted(STATIC_DIR.iterdir())
            if path.suffix in STATIC_TYPES or path.name == INDEX_FILE
        }
        self._state_schema = published_schema()

    @property
    def url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self.connections.middleware, self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get(STATIC_PREFIX + "{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/state/schema", self._state_schema_file)
        app.router.add_get("/api/live", self._live)
        app.router.add_get("/api/live-view/{camera}", self._live_picture)
        # The name this route had before "snapshot" came to mean event pictures only.
        app.router.add_get("/api/snapshot/{camera}", self._live_picture)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get(HEALTH_PATH, self._healthz)
        app.router.add_get(READY_PATH, self._readyz)
        app.router.add_routes(self.routes)
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=self.settings.shutdown_timeout_s,
            keepalive_timeout=self.settings.idle_timeout_s,
        )
        await runner.setup()
        assert runner.server is not None
        self.connections.watch(runner.server)
        self._check_open_files_limit()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise DashboardUnavailable(
                f"dashboard: cannot listen on {self.settings.host}:{self.settings.port}: "
                f"{exc.strerror or exc}"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self._token is None and self.settings.host not in LOOPBACK_HOSTS:
            log.warning("dashboard listens on %s without a token: anyone who can reach it can "
                        "watch the cameras; set dashboard.token", self.settings.host)
        log.info("dashboard at %s/ (metrics at /metrics)", self.url)

    def _check_open_files_limit(self) -> None:
        limits = raise_open_files_limit()
        if limits is not None and limits[0] < self.settings.max_connections + RESERVED_FILES:
            log.warning(
                "dashboard: the open-file limit (%d) leaves little room beside %d connections "
                "(dashboard.max_connections): lower it or raise the limit (ulimit -n)",
                limits[0], self.settings.max_connections,
            )

    async def stop(self) -> None:
        self._stopping = True
        self.sampler.wake()  # live-update streams notice and end
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- access ---------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in PROBE_PATHS and not self._any_host:
            name = host_name(request.headers.get("Host", ""))
            if not host_allowed(name, self._hosts):
                return self._misdirected(name)
        if self._token is not None and not self._is_public(request.path):
            supplied = supplied_token(request)
            if not supplied:
                return self._refuse(401, "access token required (Authorization: Bearer or ?token=)")
            if not hmac.compare_digest(supplied.encode(), self._token):
                return self._refuse(403, "wrong access token")
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
        return response

    @staticmethod
    def _is_public(path: str) -> bool:
        """Static page code and the two probes, matched exactly: nothing else skips the token."""
        return path.startswith(STATIC_PREFIX) or path in PROBE_PATHS

    def _misdirected(self, name: str) -> web.Response:
        """421 for a Host this server does not answer to; the Host is not echoed back."""
        if name not in self._refused_hosts and len(self._refused_hosts) < REFUSED_HOSTS_LOGGED:
            self._refused_hosts.add(name)
            log.warning("dashboard: refused a request for Host %r (not localhost, an IP address, "
                        "the listen address or in dashboard.allowed_hosts)", name[:100])
        text = "421: this server does not answer to that Host name; add it to dashboard.allowed_hosts\n"
        return web.Response(status=421, text=text, headers=SECURITY_HEADERS)

    @staticmethod
    def _refuse(status: int, reason: str) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="streamer"', **SECURITY_HEADERS}
        return web.Response(status=status, text=f"{status}: {reason}\n", headers=headers)

    # -- handlers -------------------------------------------------------------------------------

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._files[INDEX_FILE], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._files.get(name)
        if body is None or name == INDEX_FILE:
            raise web.HTTPNotFound()
        return web.Response(body=body, headers={"Content-Type": STATIC_TYPES[Path(name).suffix]})

    def state(self) -> dict[str, Any]:
        """The state as JSON-ready data (`ServiceState`, see state.schema.json)."""
        return self.state_view.state().model_dump(mode="json")

    async def _state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _state_schema_file(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._state_schema, content_type="application/schema+json")

    async def _live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the full state after every sample."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **SECURITY_HEADERS}
        )
        await response.prepare(request)
        try:
            while not self._stopping:
                payload = json.dumps(self.state(), separators=(",", ":"))
                await response.write(f"data: {payload}\n\n".encode())
                await self.sampler.next_update()
        except ConnectionResetError:
            pass  # the viewer went away
        return response

    async def _live_picture(self, request: web.Request) -> web.Response:
        camera = request.match_info["camera"]
        if camera not in self.live_view.cameras:
            raise web.HTTPNotFound(text="unknown camera")
        picture = await self.live_view.picture(camera)
        if picture is None:
            return web.Response(status=204)  # watched from now on; an image follows shortly
        return web.Response(
            body=picture.jpeg,
            content_type="image/jpeg",
            headers={"X-Frame-Index": str(picture.frame_index),
                     "X-Capture-Time": f"{picture.capture_ts:.3f}"},
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        if not self.metrics.enabled:
            raise web.HTTPNotFound(text="metrics are disabled (metrics.enabled: false)")
        body = generate_latest(self.prometheus)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- health -----------------------------------------------------------------------------------

    async def _healthz(self, _request: web.Request) -> web.Response:
        """Liveness: an answer proves the event loop runs. Nothing else is checked, since a restart
        cures a hung loop but brings back neither Triton nor a camera (that is /readyz's part)."""
        uptime_s = round(time.monotonic() - self._created_monotonic, 1)
        return web.json_response({"status": "ok", "uptime_s": uptime_s})

    async def _readyz(self, request: web.Request) -> web.Response:
        supplied = supplied_token(request)
        named = self._token is not None and supplied is not None and hmac.compare_digest(
            supplied.encode(), self._token
        )
        ready, body = self.readiness(named)
        return web.json_response(body, status=200 if ready else 503)

    def readiness(self, named: bool = False) -> tuple[bool, dict[str, Any]]:
        """(ready, JSON body saying why): read from the stats registry only, like every reader.
        Camera names only when `named` (the caller sent the token): counts and states otherwise."""
        stats = self.sampler.stats
        inference_reasons, inference = inference_readiness(
            stats.server(), stats.models(), time.monotonic(), self.sampler.secrets
        )
        camera_reasons, cameras = camera_readiness(
            stats.cameras(), self.sampler.cameras, self.metrics.ready_min_streaming_ratio, named
        )
        processing_reasons = processing_readiness(stats.cameras())
        part_reasons, parts = parts_readiness(stats.parts(), self.sampler.secrets)
        reasons = (
            (["service is stopping"] if self._stopping else [])
            + inference_reasons + processing_reasons + camera_reasons + part_reasons
        )
        degraded, identity_store = identity_store_readiness(
            stats.read(StatsKind.IDENTITY_STORE).values(), time.monotonic(), self.sampler.secrets
        )
        body = {
            "ready": not reasons, "reasons": reasons, "degraded": degraded, "inference": inference,
            "cameras": cameras, "parts": parts,
        }
        if identity_store is not None:
            body["identity_store"] = identity_store
        return not reasons, body


def supplied_token(request: web.Request) -> str | None:
    """The token a request carries (`?token=` or `Authorization: Bearer`), if any."""
    supplied = request.query.get("token")
    header = request.headers.get("Authorization", "")
    if supplied is None and header.lower().startswith("bearer "):
        supplied = header[len("bearer "):].strip()
    return supplied


def host_names(listen: str, allowed: Iterable[str]) -> frozenset[str]:
    """The names a request's Host may carry: localhost, the listen address and the configured ones."""
    return frozenset({"localhost", listen.lower().strip("[]"), *allowed})


def host_name(header: str) -> str:
    """The name in a Host header, without port, brackets or trailing dot, in lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        name = header[1:].partition("]")[0]
    elif header.count(":") == 1:
        name = header.partition(":")[0]
    else:
        name = header  # no port, or an IPv6 address written without brackets
    return name.rstrip(".")


def host_allowed(name: str, names: Collection[str]) -> bool:
    """A listed name, an IP address (DNS rebinding needs a name), or no Host at all (no browser)."""
    if not name or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def inference_readiness(
    server: ServerStats | None, models: dict[str, ModelStats], now: float, secrets: Iterable[str]
) -> tuple[list[str], dict[str, Any]]:
    """Why inference keeps the service from being ready (none: the server is up and every model
    answers its requests). A model whose requests all fail is down whatever the server says."""
    if server is None:
        return ["inference server not started"], {"up": False, "models": [], "models_down": {}}
    loaded = sorted(models)
    down_for_s = None
    if not server.up and server.down_since_monotonic is not None:
        down_for_s = round(max(0.0, now - server.down_since_monotonic), 1)
    error = public_error(server.last_error, server.url, secrets)
    down_models = {name: model for name, model in models.items() if not model.up}
    body = {
        "up": server.up and not down_models,
        "mode": server.mode,
        "restarts": server.restarts,
        "down_for_s": down_for_s,
        "last_error": error,
        "models": loaded,
        "models_down": {
            name: public_error(model.last_error, server.url, secrets) for name, model in down_models.items()
        },
    }
    if not server.up:
        since = "" if down_for_s is None else f" for {down_for_s} s"
        return [f"inference server down{since}: {error or 'no error reported'}"], body
    if not loaded:
        return ["inference server up, but no model is ready yet"], body
    reasons = []
    for name, model in down_models.items():
        down_since = model.down_since_monotonic
        took = "" if down_since is None else f" for {round(max(0.0, now - down_since), 1)} s"
        problem = public_error(model.last_error, server.url, secrets) or "requests fail"
        reasons.append(f"model {name} down{took}: {problem}")
    return reasons, body


def processing_readiness(registered: dict[str, CameraStats]) -> list[str]:
    """Cameras whose frames arrive but are not processed (degraded) are the service's own fault,
    never left out by `ready_min_streaming_ratio`."""
    degraded = sum(camera.state == CameraState.DEGRADED for camera in registered.values())
    if not degraded:
        return []
    return [f"{degraded} of {len(registered)} cameras receive frames that are not processed (degraded)"]


def parts_readiness(
    parts: dict[str, PartHealth], secrets: Iterable[str]
) -> tuple[list[str], dict[str, Any]]:
    """Optional parts (event pictures, stores, sinks) that cannot work as configured: each one a
    reason; the cameras run without them."""
    body = {
        name: {"state": part.state.value, "problem": public_error(part.problem, "", secrets)}
        for name, part in parts.items()
    }
    reasons = [
        f"{name} {entry['state']}: {entry['problem'] or 'no detail'}"
        for name, entry in body.items()
        if entry["state"] != PartState.OK
    ]
    return reasons, body


def public_error(error: str | None, server_url: str, secrets: Iterable[str]) -> str | None:
    """The error without the server's address, any URL or camera credentials: probes need no token."""
    if error is None:
        return None
    text = URL_PATTERN.sub("<url>", scrub(error, secrets) or "")
    return text.replace(server_url, "<server>") if server_url else text


def identity_store_readiness(
    stores: Iterable[object], now: float, secrets: Iterable[str]
) -> tuple[list[str], dict[str, Any] | None]:
    """A shared identity store that is down degrades the service without failing it: cameras run
    and identities are matched in this instance alone (global ids provisional until it is back)."""
    store = next((s for s in stores if isinstance(s, IdentityStoreStats)), None)
    if store is None:
        return [], None
    down_for_s = None
    if not store.connected and store.down_since_monotonic is not None:
        down_for_s = round(max(0.0, now - store.down_since_monotonic), 1)
    body = {"connected": store.connected, "down_for_s": down_for_s, "queued": store.queued,
            "dropped": store.dropped}
    if store.connected:
        return [], body
    error = public_error(store.last_error, store.endpoint.rpartition("/")[0], secrets)
    since = "" if down_for_s is None else f" for {down_for_s} s"
    return [f"identity store down{since}: {error or 'not connected yet'}; global ids are "
            "provisional (matched in this instance only)"], body


def camera_readiness(
    registered: dict[str, CameraStats], enabled: Collection[str], min_ratio: float, named: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """Whether enough cameras stream. Finished files are left out; enabled but unregistered
    cameras (the pipeline is still starting) count as not streaming. The reason names the idle
    cameras only when `named`; otherwise it counts them by state."""
    states: dict[str, CameraState | str] = {name: NOT_STARTED_STATE for name in enabled}
    states.update({name: camera.state for name, camera in registered.items()})
    # a file that ended is neither needed nor held against readiness
    counted = {name: state for name, state in states.items() if state != CameraState.FINISHED}
    streaming = sum(state == CameraState.STREAMING for state in counted.values())
    required = math.ceil(min_ratio * len(counted) - 1e-9)
    body = {
        "streaming": streaming,
        "total": len(states),
        "finished": len(states) - len(counted),
        "required": required,
        "states": dict(Counter(states.values())),
    }
    if streaming >= required:
        return [], body
    if named:
        idle = [f"{name} ({state})" for name, state in counted.items() if state != CameraState.STREAMING]
        more = len(idle) - NAMED_CAMERAS_MAX
        listed = ", ".join(idle[:NAMED_CAMERAS_MAX]) + (f" and {more} more" if more > 0 else "")
    else:
        idle_states = Counter(str(state) for state in counted.values() if state != CameraState.STREAMING)
        listed = ", ".join(f"{count} {state}" for state, count in sorted(idle_states.items()))
    reason = (
        f"{streaming} of {len(counted)} cameras streaming, {required} needed "
        f"(metrics.ready_min_streaming_ratio {min_ratio:g}): {listed}"
    )
    return [reason], body
