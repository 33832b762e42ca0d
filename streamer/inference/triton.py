"""The connection to Triton, embedded or external, owned for the life of the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

from streamer.config import StreamerConfig
from streamer.core.backoff import Backoff
from streamer.core.stats import ServerStats, StatsKind, StatsRegistry
from streamer.core.tasks import cancel_and_wait
from streamer.inference.catalog import ensure_prepared
from streamer.inference.client import TritonModel
from streamer.inference.server import EmbeddedTritonServer

log = logging.getLogger(__name__)

# A refused health check right after the embedded server died: the exit is reaped moments later.
EXIT_REAP_WAIT_S = 2.0

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
EXTERNAL_READY_POLL_S = 0.5
HEALTH_TIMEOUT_MARGIN_S = 2.0
# A live server too busy to answer one health check in time (all cores computing) is not down:
# restarting it would turn a slow minute into an outage. This many timeouts in a row are.
UNANSWERED_CHECKS_BEFORE_DOWN = 3
_KEEPALIVE = KeepAliveOptions()
CHANNEL_DEFAULTS = [  # what tritonclient sets when it is given no channel arguments
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", _KEEPALIVE.keepalive_time_ms),
    ("grpc.keepalive_timeout_ms", _KEEPALIVE.keepalive_timeout_ms),
    ("grpc.keepalive_permit_without_calls", _KEEPALIVE.keepalive_permit_without_calls),
    ("grpc.http2.max_pings_without_data", _KEEPALIVE.http2_max_pings_without_data),
]
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TritonUnavailable(RuntimeError):
    """The server cannot be reached or a model is not ready; the message says which."""


def resolve_repository(config: StreamerConfig) -> Path:
    """The configured repository; `load_config` made it absolute (relative to the config file),
    a config built without a file has it relative to the working directory."""
    return config.triton.model_repository.absolute()


def connect(url: str) -> grpcclient.InferenceServerClient:
    """A gRPC client that reconnects within about a second once a lost server is back.

    gRPC's default reconnect backoff grows to 120 s: after an outage of a few seconds the channel
    could sit idle long after the server returned.
    """
    return grpcclient.InferenceServerClient(url, channel_args=[*CHANNEL_DEFAULTS, *FAST_RECONNECT])


class TritonConnection:
    """Starts (embedded) or reaches (external) the server, hands out batched models, keeps it alive.

    A supervisor task checks the server every `health_interval_s`: the embedded process still
    running, the server ready, and this process's shared-memory regions still registered (a server
    that restarted between two checks has forgotten them). On a failure it restarts the embedded
    server, or waits for the external one, with backoff; then it re-registers shared memory
    (falling back to plain gRPC where that fails) and requests resume. One WARNING at the failure,
    one INFO at recovery with the downtime and the frames skipped meanwhile.

    A server can look alive while a model serves nothing (its Python-backend stub killed or
    stopped: every request fails, the health endpoint still says ready). Each model's own
    requests tell (`ModelStats.up`): a model down makes the embedded server restart (the same
    backoff between restarts that do not help, and `give_up_after_s` counted from the first
    failure); an external server's model is reported down, per model, until it answers again.
    """

    def __init__(
        self,
        config: StreamerConfig,
        models: list[str],
        registry: StatsRegistry | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.model_names = models
        self.registry = registry if registry is not None else StatsRegistry()
        self.on_fatal = on_fatal
        self.server: EmbeddedTritonServer | None = None
        self.client: grpcclient.InferenceServerClient | None = None
        self.models: dict[str, TritonModel] = {}
        self.url = config.triton.url
        self.stats = ServerStats(url=self.url, mode=config.triton.mode)
        self._supervisor: asyncio.Task[None] | None = None
        self._unanswered_checks = 0  # health checks in a row that timed out (server alive)
        # A model down (its requests fail) with no answered request since: when it began, the
        # backoff between restarts for it, and whether give_up_after_s was already reported.
        self._model_outage_since: float | None = None
        self._model_restarts = Backoff(config.triton.restart)
        self._next_model_restart = 0.0
        self._answered_at_restart = 0
        self._model_outage_reported = False

    @property
    def is_local(self) -> bool:
        if self.config.triton.mode == "embedded":
            return True
        host = urlsplit(f"//{self.url}").hostname or ""
        return host in LOOPBACK_HOSTS

    @property
    def exits_on_failure(self) -> bool:
        setting = self.config.triton.exit_on_failure
        return setting == "on" or (setting == "auto" and self.config.triton.mode == "embedded")

    async def start(self) -> None:
        settings = self.config.triton
        if settings.mode == "embedded":
            repository = resolve_repository(self.config)
            await asyncio.to_thread(
                ensure_prepared, self.model_names, repository, self.config.assets_dir
            )
            self.server = EmbeddedTritonServer(
                repository,
                self.model_names,
                ort_threads=settings.ort_threads,
                startup_timeout_s=settings.startup_timeout_s,
                log_verbose=settings.log_verbose,
            )
            await self.server.start()
            self.url = self.server.grpc_url
        self.client = connect(self.url)
        self.stats.url = self.url
        await self._wait_models_ready(self.client, settings.startup_timeout_s)
        self.stats.up = True
        self.stats.fetch_statistics = self._fetch_statistics
        self.registry.register(StatsKind.SERVER, "triton", self.stats)
        use_shm = settings.shared_memory == "on" or (
            settings.shared_memory == "auto" and self.is_local
        )
        for name in self.model_names:
            model = TritonModel(
                self.client,
                name,
                requests_in_flight=self.config.inference.requests_in_flight,
                queue_size=self.config.inference.queue_size,
                use_shared_memory=use_shm,
                request_timeout_s=settings.request_timeout_s,
                max_request_batch=self.config.inference.max_request_batch,
            )
            await model.start()
            self.models[name] = model
            self.registry.register(StatsKind.MODEL, name, model.stats)
        self._supervisor = asyncio.create_task(self._supervise(), name="triton:supervisor")

    async def _fetch_statistics(self, model: str) -> dict[str, Any]:
        """Triton's statistics JSON for one model (batch sizes, queue and compute time)."""
        if self.client is None:
            raise TritonUnavailable("not connected")
        response: dict[str, Any] = await self.client.get_inference_statistics(model, as_json=True)
        return response

    async def _wait_models_ready(
        self, client: grpcclient.InferenceServerClient, timeout_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending = list(self.model_names)
        last_error = "no answer"
        while pending:
            try:
                pending = [m for m in pending if not await client.is_model_ready(m)]
                last_error = f"models not ready: {', '.join(pending)}"
            except Exception as exc:
                last_error = _first_line(exc)
            if pending and loop.time() > deadline:
                raise TritonUnavailable(f"Triton at {self.url}: {last_error}")
            if pending:
                await asyncio.sleep(EXTERNAL_READY_POLL_S)

    # -- supervision --------------------------------------------------------------------------

    async def _supervise(self) -> None:
        interval = self.config.triton.health_interval_s
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a cancellation a library call swallowed
            await asyncio.sleep(interval)
            try:
                problem = await self._problem()
                if problem is not None:
                    await self._recover(problem)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Triton supervision failed; checking again in %.1f s", interval)

    async def _problem(self) -> str | None:
        """What is wrong with the server now, or None when it serves as it should."""
        if self.server is not None and self.server.returncode is not None:
            return f"embedded tritonserver exited with code {self.server.returncode}"
        assert self.client is not None
        timeout = self.config.triton.health_interval_s + HEALTH_TIMEOUT_MARGIN_S
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the call completes, and stop() would then wait on this task for ever.
            async with asyncio.timeout(timeout):
                ready = await self.client.is_server_ready()
            if not ready:
                return "server not ready"
            expected = set().union(*(m.region_names() for m in self.models.values()))
            if expected:
                async with asyncio.timeout(timeout):
                    status = await self.client.get_system_shared_memory_status(as_json=True)
                known = {region.get("name") for region in (status.get("regions") or {}).values()}
                if expected - known:
                    return "server restarted (it no longer knows this service's shared memory)"
        except Exception as exc:
            if self.server is not None:
                code = await self.server.exited(within_s=EXIT_REAP_WAIT_S)
                if code is not None:
                    return f"embedded tritonserver exited with code {code}"
            if isinstance(exc, TimeoutError):
                self._unanswered_checks += 1
                if self._unanswered_checks < UNANSWERED_CHECKS_BEFORE_DOWN:
                    # Not serving now (readiness says so at once), but not restarted yet.
                    unanswered = (
                        f"no health answer within {timeout:.1f} s ({self._unanswered_checks} in a row)"
                    )
                    log.info("Triton at %s: %s; asking again", self.url, unanswered)
                    self.stats.up, self.stats.last_error = False, unanswered
                    if self.stats.down_since_monotonic is None:
                        self.stats.down_since_monotonic = time.monotonic()
                    return None
                self._unanswered_checks = 0
                return (
                    f"unreachable: no answer within {timeout:.1f} s, "
                    f"{UNANSWERED_CHECKS_BEFORE_DOWN} times in a row"
                )
            return f"unreachable: {_first_line(exc)}"
        if self._unanswered_checks:
            log.info("Triton at %s answers again", self.url)
            self._unanswered_checks = 0
            self.stats.up, self.stats.down_since_monotonic, self.stats.last_error = True, None, None
        return self._model_problem()

    def _model_problem(self) -> str | None:
        """A model whose requests all fail while the server looks fine: the restart to make (the
        embedded server), or None (all well, a restart not due yet, or an external server)."""
        now = time.monotonic()
        down = {name: model.stats for name, model in self.models.items() if not model.stats.up}
        if not down:
            answered = sum(model.stats.requests for model in self.models.values())
            if self._model_outage_since is not None and answered > self._answered_at_restart:
                self._model_outage_since = None  # a restart that worked: frames flow again
                self._model_outage_reported = False
                self._model_restarts.reset()
            return None
        if self._model_outage_since is None:
            self._model_outage_since = min(m.down_since_monotonic or now for m in down.values())
        give_up = self.config.triton.give_up_after_s
        if (
            not self._model_outage_reported
            and give_up is not None
            and now - self._model_outage_since >= give_up
        ):
            self._model_outage_reported = True
            name, stats = next(iter(down.items()))
            self._give_up(now - self._model_outage_since, f"model {name} down: {stats.last_error}")
        if self.server is None or now < self._next_model_restart:
            return None  # external: reported per model (readiness, dashboard) until it answers
        name, stats = next(iter(down.items()))
        return (
            f"model {name} fails every request ({stats.last_error}): its backend is dead or hung"
        )

    async def _recover(self, problem: str) -> None:
        """Bring the server back (restart or reconnect) with backoff; report downtime and loss."""
        settings = self.config.triton
        down_at = self.stats.down_since_monotonic or time.monotonic()  # since it stopped answering
        if self._model_outage_since is not None:
            down_at = min(down_at, self._model_outage_since)  # frames stopped with the model
        skipped_before = self._frames_skipped()
        self.stats.up, self.stats.down_since_monotonic, self.stats.last_error = False, down_at, problem
        action = "restarting it" if self.server is not None else "waiting for it to come back"
        log.warning("Triton at %s: %s; %s", self.url, problem, action)
        backoff = Backoff(settings.restart)
        gave_up = False
        while True:
            try:
                await self._bring_back()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.last_error = _first_line(exc)
                log.debug("Triton not back yet: %s", self.stats.last_error)
            down_s = time.monotonic() - down_at
            if not gave_up and settings.give_up_after_s is not None and down_s >= settings.give_up_after_s:
                gave_up = True
                self._give_up(down_s)
            await asyncio.sleep(backoff.next_delay())
        down_s = time.monotonic() - down_at
        self._unanswered_checks = 0
        self.stats.up, self.stats.down_since_monotonic, self.stats.last_error = True, None, None
        self.stats.restarts += 1
        for model in self.models.values():
            model.health_restored()
        if self._model_outage_since is not None:  # this restart was for a model: prove it worked
            self._next_model_restart = time.monotonic() + self._model_restarts.next_delay()
            self._answered_at_restart = sum(m.stats.requests for m in self.models.values())
        log.info(
            "Triton at %s is back after %.1f s down; %d frames skipped meanwhile",
            self.url, down_s, self._frames_skipped() - skipped_before,
        )

    async def _bring_back(self) -> None:
        """One attempt: restart the embedded server or reach the external one, then reattach."""
        settings = self.config.triton
        if self.server is not None:
            # Killed, not asked: a server that is restarted serves nothing, and one whose backend
            # hangs would wait for it.
            await self.server.stop(grace_s=0.0)
            await self.server.start()
            self.url = self.stats.url = self.server.grpc_url
        client = connect(self.url)
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_MARGIN_S * 2):
                ready = await client.is_server_ready()
            if not ready:
                raise TritonUnavailable("server not ready")
            await self._wait_models_ready(client, settings.startup_timeout_s)
            for model in self.models.values():
                await model.reattach(client)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close()
            raise
        old, self.client = self.client, client
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    def _give_up(self, down_s: float, reason: str | None = None) -> None:
        message = (
            f"Triton at {self.url} has been down for {down_s:.0f} s "
            f"(triton.give_up_after_s={self.config.triton.give_up_after_s:g}): "
            f"{reason or self.stats.last_error}"
        )
        if self.exits_on_failure and self.on_fatal is not None:
            log.error("%s; exiting so that systemd or Kubernetes restarts the service", message)
            self.on_fatal(message)
        else:
            log.error("%s; frames are not processed; still trying", message)

    def _frames_skipped(self) -> int:
        return sum(camera.inference_errors for camera in self.registry.cameras().values())

    async def stop(self) -> None:
        """Bounded even when the server or a model's backend hangs."""
        if self._supervisor is not None:
            await cancel_and_wait(self._supervisor)
            self._supervisor = None
        healthy = self.stats.up and all(model.stats.up for model in self.models.values())
        self.stats.up = False
        self.stats.fetch_statistics = None
        for model in self.models.values():
            with contextlib.suppress(Exception):
                await model.stop()
        self.models = {}
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None
        if self.server is not None:
            # A server with a dead or hung backend would not stop when asked: no grace for it.
            await self.server.stop(grace_s=None if healthy else 0.0)
            self.server = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

