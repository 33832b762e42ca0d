"""The dashboard server's connections: a cap, a deadline for the first request, and the probes first.

Every open connection holds a file descriptor, and a client needs no token to open one: without a
limit, a thousand silent connections took the process to its open-file limit, and then the
liveness probe, event pictures and broker reconnects failed with it. So:

* a new connection must send a whole request head within `header_timeout_s` (aiohttp's keep-alive
  timeout, `idle_timeout_s`, closes a kept-alive connection that sends nothing more);
* at most `max_connections` are open: one more closes the connection idle the longest (no
  request under way), or else the oldest one, so a new connection, a probe's included, is
  always served;
* the process's soft open-file limit is raised to its hard limit at start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

RESERVED_FILES = 256  # descriptors the rest of the service needs (cameras, brokers, files, Triton)
EVICTIONS_LOG_INTERVAL_S = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; (soft, hard) after, None where unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, exc)
    return soft, hard


class ConnectionGuard:
    """Watches one aiohttp `Server`: `watch(runner.server)` after setup, and `middleware` first."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.evicted = 0
        self.timed_out = 0
        self._opened: dict[RequestHandler, float] = {}  # connection -> when it was opened
        self._served: set[RequestHandler] = set()  # sent a whole request head at least once
        self._busy: dict[RequestHandler, int] = {}  # requests under way per connection
        self._deadlines: dict[RequestHandler, asyncio.TimerHandle] = {}
        self._logged_evicted = 0
        self._logged_at = -EVICTIONS_LOG_INTERVAL_S

    @property
    def open(self) -> int:
        return len(self._opened)

    def watch(self, server: Any) -> None:
        """Hook the server's connection callbacks (aiohttp calls them for every connection)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._opened[handler] = time.monotonic()
            loop = asyncio.get_running_loop()
            self._deadlines[handler] = loop.call_later(self.header_timeout_s, self._deadline, handler)
            if len(self._opened) > self.max_connections:
                self._evict(handler)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._forget(handler)
            lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = request.protocol
        self._served.add(connection)
        deadline = self._deadlines.pop(connection, None)
        if deadline is not None:
            deadline.cancel()
        self._busy[connection] = self._busy.get(connection, 0) + 1
        try:
            return await handler(request)
        finally:
            left = self._busy.get(connection, 1) - 1
            if left > 0:
                self._busy[connection] = left
            else:
                self._busy.pop(connection, None)

    def _deadline(self, handler: RequestHandler) -> None:
        self._deadlines.pop(handler, None)
        if handler in self._opened and handler not in self._served:
            self.timed_out += 1
            handler.force_close()

    def _evict(self, newcomer: RequestHandler) -> None:
        """Close the connection idle the longest, else the oldest; never the newcomer."""
        others = [h for h in self._opened if h is not newcomer]
        idle = [h for h in others if h not in self._busy]
        victim = min(idle or others, key=self._opened.__getitem__, default=None)
        if victim is None:
            return
        self.evicted += 1
        self._forget(victim)
        victim.force_close()
        now = time.monotonic()
        if now - self._logged_at >= EVICTIONS_LOG_INTERVAL_S:
            log.warning(
                "dashboard: %d connections open, the cap (dashboard.max_connections %d) reached: "
                "closed %d idle or old connections since the last report",
                len(self._opened), self.max_connections, self.evicted - self._logged_evicted,
            )
            self._logged_at, self._logged_evicted = now, self.evicted

    def _forget(self, handler: RequestHandler) -> None:
        self._opened.pop(handler, None)
        self._served.discard(handler)
        self._busy.pop(handler, None)
        deadline = self._deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()
