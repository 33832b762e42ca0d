"""Requests to one Triton model: a shared queue drained by concurrent workers.

Triton's dynamic batcher only batches requests that are in flight together, so frames from all
cameras go into one queue and `requests_in_flight` workers keep that many requests open. A worker
also sends whatever else is already queued (up to `max_request_batch` items) in the same request:
one gRPC request costs about a millisecond of this process's CPU whatever it carries, so a
loaded service makes fewer, larger requests, and an idle one never waits for a batch to fill.
Each worker owns its own system shared-memory regions when the server is on this host (about
half the round trip of tensors in gRPC messages), so no region is ever shared by two requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from streamer.core.stats import ModelStats

log = logging.getLogger(__name__)


SHM_DIR = Path("/dev/shm")
# Regions are sized for the fullest request; keep as much again free for the server's own
# (its Python backend passes tensors through /dev/shm too). Writing into a full /dev/shm kills
# the process (SIGBUS), so a region that would not fit is never made.
SHM_HEADROOM = 2


# Requests in a row that failed (timeouts included) before the model counts as down, whatever
# the server's health endpoint says: a Python-backend stub that died or hangs fails every request
# while the server stays "ready".
FAILURES_BEFORE_DOWN = 3
UNREGISTER_LIMIT_S = 2.0  # stopping: how long a server may take to forget this model's regions


class InferenceError(RuntimeError):
    """One request failed; the caller skips that frame and carries on."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # without the batch dimension when the model batches

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class ModelSpec:
    """What the server says about a model: tensors and batching."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Instances that execute requests at once, where the server's config says (None: unknown),
    # and whether Triton batches concurrent requests (else each executes alone, in arrival order).
    instances: int | None = None
    dynamic_batching: bool = True

    def input(self, name: str | None = None) -> TensorSpec:
        return self.inputs[0] if name is None else next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)


@dataclass(frozen=True)
class InferTiming:
    queued_s: float
    request_s: float


@dataclass
class _Job:
    inputs: dict[str, np.ndarray]
    future: asyncio.Future[tuple[dict[str, np.ndarray], InferTiming]]
    queued_at: float = field(default_factory=time.monotonic)
    start: float = 0.0  # the fair queue's start tag (virtual time)


ROUND = 1.0  # virtual time of one request of a camera of weight 1
# Requests queued at a server that runs each alone, beyond its instances (see
# `requests_worth_sending`).
SERVER_BACKLOG = 2


class FairQueue:
    """Requests of many cameras, served in start-time fair queuing order (weights honoured).

    Each request is tagged when it arrives: it may start at the later of the queue's virtual time
    and the end of its camera's previous request, and ends 1/weight later; the smallest start
    goes first. A camera that keeps many requests queued (or floods frames) is therefore served
    in turn with the others instead of ahead of them, and a camera that was idle gets no credit
    for its idle time. One camera's requests keep their order.
    """

    def __init__(self, capacity: int) -> None:
        self._space = asyncio.Semaphore(capacity)
        self._ready = asyncio.Condition()
        self._heap: list[tuple[float, int, _Job]] = []
        self._finish: dict[str, float] = {}
        self._virtual = 0.0
        self._order = itertools.count()

    async def put(self, job: _Job, key: str, weight: float) -> None:
        await self._space.acquire()
        if key:
            start = max(self._virtual, self._finish.get(key, 0.0))
            self._finish[key] = start + ROUND / weight
        else:  # no camera to share with (e.g. the crops of a frame): the current turn, in order
            start = self._virtual
        job.start = start
        heapq.heappush(self._heap, (start, next(self._order), job))
        async with self._ready:
            self._ready.notify()

    async def get(self) -> _Job:
        async with self._ready:
            await self._ready.wait_for(lambda: bool(self._heap))
            return self._pop()

    def take_ready(self, first: _Job, limit: int, fits: Callable[[_Job], bool]) -> list[_Job]:
        """Up to `limit` more queued requests to send with `first`, without waiting.

        In their fair order, and within one round of it: requests that start less than one
        weight-1 turn after `first`. So a batch holds at most one request per camera of weight 1
        (two of weight 2): a camera's backlog never fills a batch ahead of the others, and the
        shares hold when few cameras keep all their frames in flight. Stops at the first request
        that does not `fit` (another shape), which stays first.
        """
        taken: list[_Job] = []
        while (
            len(taken) < limit
            and self._heap
            and self._heap[0][0] < first.start + ROUND
            and fits(self._heap[0][2])
        ):
            taken.append(self._pop())
        return taken

    def _pop(self) -> _Job:
        start, _order, job = heapq.heappop(self._heap)
        self._virtual = max(self._virtual, start)
        self._space.release()
        return job

    def drain(self) -> list[_Job]:
        """Every queued request, taken out (stopping)."""
        jobs = [job for _start, _order, job in sorted(self._heap)]
        for _ in jobs:
            self._space.release()
        self._heap.clear()
        return jobs


def _tensor(dims: object, data_type: str) -> tuple[np.dtype, tuple[int, ...]]:
    dtype = np.dtype(triton_to_np_dtype(data_type.removeprefix("TYPE_")))
    return dtype, tuple(int(d) for d in dims)  # type: ignore[attr-defined]


async def fetch_model_spec(client: grpcclient.InferenceServerClient, name: str) -> ModelSpec:
    response = await client.get_model_config(name, as_json=True)
    config = response["config"]

    def tensors(entries: list[dict[str, object]]) -> tuple[TensorSpec, ...]:
        found = []
        for entry in entries:
            dtype, shape = _tensor(entry["dims"], str(entry["data_type"]))
            found.append(TensorSpec(str(entry["name"]), dtype, shape))
        return tuple(found)

    return ModelSpec(
        name=name,
        max_batch_size=int(config.get("max_batch_size", 0)),
        inputs=tensors(config["input"]),
        outputs=tensors(config["output"]),
        instances=_instances(config.get("instance_group", [])),
        dynamic_batching="dynamic_batching" in config,
    )


def _instances(groups: list[dict[str, object]]) -> int | None:
    """Model instances from the server's own (completed) config: a GPU group's count is per
    listed GPU. None where it cannot be told (no group, a GPU group without its GPUs)."""
    total = 0
    for group in groups:
        count = int(str(group.get("count", 1)))
        if str(group.get("kind", "")) == "KIND_GPU":
            gpus = group.get("gpus") or []
            if not isinstance(gpus, list) or not gpus:
                return None
            count *= len(gpus)
        total += count
    return total or None


def requests_worth_sending(spec: ModelSpec, wanted: int) -> int:
    """Requests to keep in flight: `wanted`, except where the server would only queue them.

    A model without dynamic batching executes each request alone, so requests beyond its
    instances wait in Triton's queue in arrival order, where a camera that refills at once
    (a flooding file) gets ahead of one whose next frame is 100 ms away. Beyond the instances
    and SERVER_BACKLOG more (so that a finishing instance never waits for this process), they
    wait in the fair queue instead, which serves cameras in turn.
    """
    if spec.dynamic_batching or spec.instances is None:
        return wanted
    return max(1, min(wanted, spec.instances + SERVER_BACKLOG))


class _SharedMemorySlot:
    """Input and output regions for one worker, registered with the server."""

    def __init__(self, prefix: str, spec: ModelSpec, batch: int) -> None:
        self.spec = spec
        self.batch = batch
        self.regions: dict[str, tuple[str, object, int]] = {}
        for tensor in (*spec.inputs, *spec.outputs):
            # Tensor names may hold ':' (TF exports: "Identity:0"), which Python's shared-memory
            # resource tracker cannot take in a region name.
            name = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', tensor.name)}"
            size = tensor.nbytes * batch
            handle = shm.create_shared_memory_region(name, f"/{name}", size)
            self.regions[tensor.name] = (name, handle, size)

    async def register(self, client: grpcclient.InferenceServerClient) -> None:
        for name, _handle, size in self.regions.values():
            try:
                await client.register_system_shared_memory(name, f"/{name}", size)
            except InferenceServerException as exc:
                # Still registered (a server that stayed up keeps a region a cancelled request
                # was using): the name is this process's own, so it is this very region.
                if "ALREADY_EXISTS" not in str(exc.status()):
                    raise

    async def unregister(self, client: grpcclient.InferenceServerClient) -> None:
        for name, _handle, _size in self.regions.values():
            with contextlib.suppress(Exception):
                await client.unregister_system_shared_memory(name)

    def destroy(self) -> None:
        for _name, handle, _size in self.regions.values():
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(handle)
        self.regions.clear()


class TritonModel:
    """A model behind a shared queue; `infer` is called by every camera's task."""

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        name: str,
        *,
        requests_in_flight: int,
        queue_size: int,
        use_shared_memory: bool,
        request_timeout_s: float,
        max_request_batch: int = 1,
    ) -> None:
        self.client = client
        self.name = name
        self.requests_in_flight = requests_in_flight
        self.max_request_batch = max_request_batch
        self.use_shared_memory = use_shared_memory
        self.request_timeout_s = request_timeout_s
        self.stats = ModelStats(name, requests_in_flight)
        self.spec: ModelSpec | None = None
        self._queue = FairQueue(queue_size)
        self.weights: dict[str, float] = {}  # share of each key (camera) under overload; default 1
        self._workers: list[asyncio.Task[None]] = []
        self._slots: list[_SharedMemorySlot] = []

    async def start(self) -> ModelSpec:
        self.spec = await fetch_model_spec(self.client, self.name)
        self.stats.max_batch_size = self.spec.max_batch_size
        worth = requests_worth_sending(self.spec, self.requests_in_flight)
        if worth < self.requests_in_flight:
            log.info(
                "%s: %d requests in flight instead of %d: the server runs each request alone "
                "on %s instances, and the rest wait here, in the fair queue",
                self.name, worth, self.requests_in_flight, self.spec.instances,
            )
            self.requests_in_flight = worth
            self.stats.requests_in_flight = worth
        # A model without a batch dimension takes one item per request.
        self.max_request_batch = max(1, min(self.max_request_batch, self.spec.max_batch_size))
        variable = any(d < 0 for t in (*self.spec.inputs, *self.spec.outputs) for d in t.shape)
        if variable and self.use_shared_memory:
            log.info("%s: variable tensor shapes, sending tensors over gRPC", self.name)
            self.use_shared_memory = False
        if self.use_shared_memory:
            self._fit_shared_memory(self.spec)
        if self.use_shared_memory:
            prefix = f"streamer_{os.getpid()}_{self.name}_{id(self):x}"
            for index in range(self.requests_in_flight):
                self._slots.append(
                    _SharedMemorySlot(f"{prefix}_{index}", self.spec, batch=self.max_request_batch)
                )
            await self.reattach(self.client)
        self.stats.shared_memory = self.use_shared_memory
        self._workers = [
            asyncio.create_task(self._work(index), name=f"triton:{self.name}:{index}")
            for index in range(self.requests_in_flight)
        ]
        return self.spec

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for job in self._queue.drain():
            if not job.future.done():
                job.future.set_exception(InferenceError(f"{self.name}: stopped"))
        try:
            # A hung server would never answer: the regions are freed here all the same.
            async with asyncio.timeout(UNREGISTER_LIMIT_S):
                for slot in self._slots:
                    await slot.unregister(self.client)
        except TimeoutError:
            log.debug("%s: the server did not answer the unregistering of shared memory", self.name)
        finally:
            for slot in self._slots:
                slot.destroy()
            self._slots = []

    async def infer(
        self, inputs: dict[str, np.ndarray], key: str = ""
    ) -> tuple[dict[str, np.ndarray], InferTiming]:
        """Run one item (batch 1) through the model; Triton batches it with other cameras' items.

        `key` (the camera) shares the model fairly with the other keys, by `weights[key]`.
        """
        future: asyncio.Future[tuple[dict[str, np.ndarray], InferTiming]] = (
            asyncio.get_running_loop().create_future()
        )
        await self._queue.put(_Job(inputs, future), key, self.weights.get(key, 1.0))
        return await future

    async def reattach(self, client: grpcclient.InferenceServerClient) -> None:
        """Use a (new) connection to a server that (re)started: register the regions again.

        A server that cannot map this process's shared memory (e.g. in a container on loopback)
        refuses the registration; the model then falls back to sending tensors over gRPC.
        """
        self.client = client
        for slot in self._slots:
            try:
                await slot.unregister(client)
                await slot.register(client)
            except Exception as exc:
                log.warning(
                    "%s: shared memory cannot be registered (%s); sending tensors over gRPC",
                    self.name, exc,
                )
                self._drop_shared_memory()
                return

    def _request_failed(self, message: str) -> None:
        stats = self.stats
        stats.failures_in_row += 1
        stats.last_error = (message.strip().splitlines() or ["request failed"])[0]
        if stats.up and stats.failures_in_row >= FAILURES_BEFORE_DOWN:
            stats.up, stats.down_since_monotonic = False, time.monotonic()
            log.warning(
                "model %s is down: %d requests in a row failed (%s)",
                self.name, stats.failures_in_row, stats.last_error,
            )

    def _request_answered(self) -> None:
        stats = self.stats
        if not stats.up:
            down_s = time.monotonic() - (stats.down_since_monotonic or time.monotonic())
            log.info("model %s answers again after %.1f s down", self.name, down_s)
        stats.up, stats.failures_in_row = True, 0
        stats.down_since_monotonic = stats.last_error = None

    def health_restored(self) -> None:
        """The server was restarted (fresh backends): the model counts as up until its requests
        say otherwise."""
        self.stats.failures_in_row = 0
        if not self.stats.up:
            self.stats.up, self.stats.down_since_monotonic, self.stats.last_error = True, None, None

    def _fit_shared_memory(self, spec: ModelSpec) -> None:
        """Size requests to the free space of /dev/shm (64 MiB in a default Docker container)."""
        try:
            free = shutil.disk_usage(SHM_DIR).free
        except OSError:
            return
        per_item = sum(t.nbytes for t in (*spec.inputs, *spec.outputs))
        wanted = self.max_request_batch
        batch = fitting_batch(per_item, self.requests_in_flight, wanted, free)
        if batch == 0:
            log.warning(
                "%s: /dev/shm has %.0f MiB free, too little for %d requests in flight; sending "
                "tensors over gRPC (give the container more, e.g. `--shm-size 1g`)",
                self.name, free / 2**20, self.requests_in_flight,
            )
            self.use_shared_memory = False
        elif batch < wanted:
            log.warning(
                "%s: /dev/shm has %.0f MiB free: at most %d items per request instead of %d "
                "(give the container more, e.g. `--shm-size 1g`)",
                self.name, free / 2**20, batch, wanted,
            )
            self.max_request_batch = batch

    def region_names(self) -> set[str]:
        """The shared-memory regions the server must know for this model's requests."""
        return {name for slot in self._slots for name, _handle, _size in slot.regions.values()}

    def _drop_shared_memory(self) -> None:
        slots, self._slots = self._slots, []
        self.use_shared_memory = False
        self.stats.shared_memory = False
        for slot in slots:
            slot.destroy()

    async def _work(self, index: int) -> None:
        while True:
            first = await self._queue.get()
            jobs = [first]
            if self.max_request_batch > 1:
                jobs += self._queue.take_ready(first, self.max_request_batch - 1, _same_shapes(first))
            jobs = [job for job in jobs if not job.future.done()]  # e.g. a camera that stopped
            if not jobs:
                continue
            slot = self._slots[index] if index < len(self._slots) else None
            started = time.monotonic()
            failure: BaseException | None = None
            try:
                outputs = await self._request([job.inputs for job in jobs], slot)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # this worker is being stopped
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(InferenceError(f"{self.name}: stopped"))
                    raise
                # The call was cancelled under this worker (its connection was closed when the
                # supervisor replaced it): that request failed, the worker goes on.
                failure = exc
            except Exception as exc:
                failure = exc
            if failure is not None:
                self.stats.failures += 1
                if isinstance(failure, InferenceServerException):
                    message = failure.message()
                elif isinstance(failure, asyncio.CancelledError):
                    message = "request cancelled (the connection was replaced)"
                else:
                    message = str(failure)
                if not isinstance(failure, asyncio.CancelledError):  # the supervisor's own doing
                    self._request_failed(message)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(InferenceError(f"{self.name}: {message}"))
                continue
            finished = time.monotonic()
            self._request_answered()
            self.stats.requests += 1
            self.stats.items += len(jobs)
            self.stats.request_seconds += finished - started
            for job, result in zip(jobs, outputs):
                if not job.future.done():
                    job.future.set_result(
                        (result, InferTiming(started - job.queued_at, finished - started))
                    )

    async def _request(
        self, items: list[dict[str, np.ndarray]], slot: _SharedMemorySlot | None
    ) -> list[dict[str, np.ndarray]]:
        """One request carrying `items` (stacked on the batch dimension); outputs per item."""
        assert self.spec is not None
        batched = self.spec.max_batch_size > 0
        count = len(items)
        request_inputs = []
        for name in items[0]:
            arrays = [np.ascontiguousarray(item[name]) for item in items]
            shape = [count, *arrays[0].shape] if batched else list(arrays[0].shape)
            tensor = grpcclient.InferInput(name, shape, np_to_triton_dtype(arrays[0].dtype))
            if slot is not None:
                region, handle, _size = slot.regions[name]
                shm.set_shared_memory_region(handle, arrays)  # one after another: the batch
                tensor.set_shared_memory(region, sum(a.nbytes for a in arrays))
            else:
                tensor.set_data_from_numpy(np.stack(arrays) if batched else arrays[0])
            request_inputs.append(tensor)
        requested = []
        for output in self.spec.outputs:
            wanted = grpcclient.InferRequestedOutput(output.name)
            if slot is not None:
                region, _handle, size = slot.regions[output.name]
                wanted.set_shared_memory(region, size)
            requested.append(wanted)
        result = await self.client.infer(
            self.name,
            request_inputs,
            outputs=requested,
            client_timeout=self.request_timeout_s,
        )
        per_item: list[dict[str, np.ndarray]] = [{} for _ in items]
        for output in self.spec.outputs:
            if slot is not None:
                _region, handle, _size = slot.regions[output.name]
                output_shape = (count, *output.shape) if batched else output.shape
                view = shm.get_contents_as_numpy(handle, output.dtype, output_shape)
                array = np.array(view, copy=True)  # the region is reused by the next request
            else:
                array = result.as_numpy(output.name)
            if batched:
                for position, outputs in enumerate(per_item):
                    outputs[output.name] = array[position]
            else:
                per_item[0][output.name] = array
        return per_item


def fitting_batch(per_item_bytes: int, requests: int, wanted: int, free_bytes: int) -> int:
    """The largest items per request, up to `wanted`, whose regions (one set per request in
    flight, with the headroom) fit in `free_bytes`; 0 when not even one item per request does."""
    for batch in range(wanted, 0, -1):
        if SHM_HEADROOM * per_item_bytes * batch * requests <= free_bytes:
            return batch
    return 0


def _same_shapes(first: _Job) -> Callable[[_Job], bool]:
    """Whether a queued item can share `first`'s request: same tensors, same shapes."""
    shapes = {name: (array.shape, array.dtype) for name, array in first.inputs.items()}

    def fits(job: _Job) -> bool:
        return len(job.inputs) == len(shapes) and all(
            shapes.get(name) == (array.shape, array.dtype) for name, array in job.inputs.items()
        )

    return fits
