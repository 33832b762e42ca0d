"""The HTTP side: dashboard page, live updates (SSE), snapshots, JSON state and /metrics (aiohttp).

Everything is served from the package (the machines are offline: no CDN). With a token set, every
request except the page's static code must carry it, as `Authorization: Bearer TOKEN` or
`?token=TOKEN` (browsers: EventSource cannot send headers).
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer.config import DashboardConfig, MetricsConfig
from streamer.metrics.monitor import PipelineMonitor
from streamer.metrics.snapshots import SnapshotStore

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PREFIX = "/static/"  # page code and style: no data, served without the token
STATIC_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
INDEX_FILE = "index.html"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
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
        monitor: PipelineMonitor,
        snapshots: SnapshotStore,
        settings: DashboardConfig,
        metrics: MetricsConfig,
    ) -> None:
        self.monitor = monitor
        self.snapshots = snapshots
        self.settings = settings
        self.metrics = metrics
        self.port: int | None = None
        self._token = settings.token.get_secret_value().encode() if settings.token else None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._files = {name: (STATIC_DIR / name).read_bytes() for name in (INDEX_FILE, *STATIC_TYPES)}

    @property
    def url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get(STATIC_PREFIX + "{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/snapshot/{camera}", self._snapshot)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.settings.shutdown_timeout_s)
        await runner.setup()
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

    async def stop(self) -> None:
        self._stopping = True
        self.monitor.wake()  # live-update streams notice and end
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- access ---------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._token is not None and not request.path.startswith(STATIC_PREFIX):
            supplied = request.query.get("token")
            header = request.headers.get("Authorization", "")
            if supplied is None and header.lower().startswith("bearer "):
                supplied = header[len("bearer "):].strip()
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
    def _refuse(status: int, reason: str) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="streamer"', **SECURITY_HEADERS}
        return web.Response(status=status, text=f"{status}: {reason}\n", headers=headers)

    # -- handlers -------------------------------------------------------------------------------

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._files[INDEX_FILE], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_TYPES:
            raise web.HTTPNotFound()
        return web.Response(body=self._files[name], headers={"Content-Type": STATIC_TYPES[name]})

    def state(self) -> dict[str, Any]:
        return {
            **self.monitor.state(),
            "snapshot_interval_s": 1.0 / self.settings.snapshot_max_fps,
            "metrics_enabled": self.metrics.enabled,
        }

    async def _state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the full state after every sample."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **SECURITY_HEADERS}
        )
        await response.prepare(request)
        try:
            while not self._stopping:
                payload = json.dumps(self.state(), separators=(",", ":"))
                await response.write(f"data: {payload}\n\n".encode())
                await self.monitor.next_update()
        except ConnectionResetError:
            pass  # the viewer went away
        return response

    async def _snapshot(self, request: web.Request) -> web.Response:
        camera = request.match_info["camera"]
        if camera not in self.snapshots.cameras:
            raise web.HTTPNotFound(text="unknown camera")
        snapshot = await self.snapshots.snapshot(camera)
        if snapshot is None:
            return web.Response(status=204)  # watched from now on; an image follows shortly
        return web.Response(
            body=snapshot.jpeg,
            content_type="image/jpeg",
            headers={"X-Frame-Index": str(snapshot.frame_index),
                     "X-Capture-Time": f"{snapshot.capture_ts:.3f}"},
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        if not self.metrics.enabled:
            raise web.HTTPNotFound(text="metrics are disabled (metrics.enabled: false)")
        body = generate_latest(self.monitor.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
