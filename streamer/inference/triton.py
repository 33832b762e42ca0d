"""The connection to Triton, embedded or external, owned for the life of the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tritonclient.grpc.aio as grpcclient

from streamer.config import StreamerConfig
from streamer.core.assets import PROJECT_ROOT
from streamer.core.stats import ServerStats, StatsRegistry
from streamer.inference.catalog import ensure_prepared
from streamer.inference.client import TritonModel
from streamer.inference.server import EmbeddedTritonServer

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
EXTERNAL_READY_POLL_S = 0.5


class TritonUnavailable(RuntimeError):
    """The server cannot be reached or a model is not ready; the message says which."""


def resolve_repository(config: StreamerConfig) -> Path:
    path = config.triton.model_repository
    return path if path.is_absolute() else PROJECT_ROOT / path


class TritonConnection:
    """Starts (embedded) or reaches (external) the server, and hands out batched models."""

    def __init__(
        self, config: StreamerConfig, models: list[str], registry: StatsRegistry | None = None
    ) -> None:
        self.config = config
        self.model_names = models
        self.registry = registry if registry is not None else StatsRegistry()
        self.server: EmbeddedTritonServer | None = None
        self.client: grpcclient.InferenceServerClient | None = None
        self.models: dict[str, TritonModel] = {}
        self.url = config.triton.url
        self.stats = ServerStats(url=self.url, mode=config.triton.mode)

    @property
    def is_local(self) -> bool:
        if self.config.triton.mode == "embedded":
            return True
        host = urlsplit(f"//{self.url}").hostname or ""
        return host in LOOPBACK_HOSTS

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
        self.client = grpcclient.InferenceServerClient(self.url)
        self.stats.url = self.url
        await self._wait_models_ready()
        self.stats.up = True
        self.stats.fetch_statistics = self._fetch_statistics
        self.registry.register("server", "triton", self.stats)
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
            )
            await model.start()
            self.models[name] = model
            self.registry.register("model", name, model.counters)

    async def _fetch_statistics(self, model: str) -> dict[str, Any]:
        """Triton's statistics JSON for one model (batch sizes, queue and compute time)."""
        if self.client is None:
            raise TritonUnavailable("not connected")
        response: dict[str, Any] = await self.client.get_inference_statistics(model, as_json=True)
        return response

    async def _wait_models_ready(self) -> None:
        assert self.client is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.triton.startup_timeout_s
        pending = list(self.model_names)
        last_error = "no answer"
        while pending:
            try:
                pending = [m for m in pending if not await self.client.is_model_ready(m)]
                last_error = f"models not ready: {', '.join(pending)}"
            except Exception as exc:
                last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if pending and loop.time() > deadline:
                raise TritonUnavailable(f"Triton at {self.url}: {last_error}")
            if pending:
                await asyncio.sleep(EXTERNAL_READY_POLL_S)

    async def stop(self) -> None:
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
            await self.server.stop()
            self.server = None
