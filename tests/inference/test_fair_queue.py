"""The inference queue shares the model fairly: cameras in turn, weights honoured, order kept."""

from __future__ import annotations

import asyncio

import numpy as np

from streamer.inference.client import (
    SERVER_BACKLOG,
    FairQueue,
    ModelSpec,
    _instances,
    _Job,
    _same_shapes,
    fitting_batch,
    requests_worth_sending,
)


async def served_order(queued: list[tuple[str, float]], capacity: int = 64) -> list[str]:
    """Queue jobs in the given (camera, weight) order, then serve them all; the cameras in order."""
    queue = FairQueue(capacity)
    loop = asyncio.get_running_loop()
    for index, (key, weight) in enumerate(queued):
        await queue.put(_Job({"index": np.array(index)}, loop.create_future()), key, weight)
    names = {index: key for index, (key, _weight) in enumerate(queued)}
    return [names[int((await queue.get()).inputs["index"])] for _ in queued]


async def test_a_camera_with_many_queued_requests_is_served_in_turn_with_the_others() -> None:
    order = await served_order([("flood", 1.0)] * 8 + [("a", 1.0), ("b", 1.0)])
    # FIFO would serve all 8 flood requests first; fair queuing serves a and b within 3 requests
    assert set(order[:3]) == {"flood", "a", "b"}


async def test_weights_set_the_shares_of_backlogged_cameras() -> None:
    order = await served_order([("heavy", 2.0)] * 20 + [("light", 1.0)] * 20)
    first = order[:15]
    assert first.count("heavy") == 10 and first.count("light") == 5


async def test_one_cameras_requests_keep_their_order() -> None:
    queue = FairQueue(16)
    loop = asyncio.get_running_loop()
    for index in range(6):
        key = "a" if index % 3 else "b"
        await queue.put(_Job({"index": np.array(index)}, loop.create_future()), key, 1.0)
    served = [int((await queue.get()).inputs["index"]) for _ in range(6)]
    assert [i for i in served if i % 3] == [1, 2, 4, 5]
    assert [i for i in served if not i % 3] == [0, 3]


async def test_an_idle_camera_gets_no_credit_for_its_idle_time() -> None:
    queue = FairQueue(64)
    loop = asyncio.get_running_loop()

    def job(index: int) -> _Job:
        return _Job({"index": np.array(index)}, loop.create_future())

    await queue.put(job(-1), "late", 1.0)
    await queue.get()
    for index in range(10):  # "busy" is served alone for a while
        await queue.put(job(index), "busy", 1.0)
        await queue.get()
    for index in range(10, 20):
        await queue.put(job(index), "busy", 1.0)
    for index in range(100, 110):
        await queue.put(job(index), "late", 1.0)
    first = [int((await queue.get()).inputs["index"]) for _ in range(10)]
    assert 3 <= sum(i >= 100 for i in first) <= 7  # in turn, not "late" ten times over


async def test_a_full_queue_makes_the_caller_wait_and_a_stop_drains_it() -> None:
    queue = FairQueue(2)
    loop = asyncio.get_running_loop()
    for index in range(2):
        await queue.put(_Job({"index": np.array(index)}, loop.create_future()), "a", 1.0)
    third = asyncio.create_task(
        queue.put(_Job({"index": np.array(2)}, loop.create_future()), "a", 1.0)
    )
    await asyncio.sleep(0.05)
    assert not third.done()
    await queue.get()
    await asyncio.wait_for(third, timeout=10)
    assert len(queue.drain()) == 2


async def test_a_request_carries_one_round_of_the_fair_order() -> None:
    """What a free worker sends together: queued items in fair order, at most one per camera of
    weight 1 and two of weight 2, so that a backlog never fills a request ahead of the others."""
    queue = FairQueue(32)
    loop = asyncio.get_running_loop()
    queued = [("flood", 1.0)] * 4 + [("a", 1.0), ("heavy", 2.0), ("heavy", 2.0), ("heavy", 2.0)]
    for index, (key, weight) in enumerate(queued):
        await queue.put(_Job({"index": np.array(index)}, loop.create_future()), key, weight)

    def served(jobs: list[_Job]) -> list[str]:
        return [queued[int(job.inputs["index"])][0] for job in jobs]

    first = await queue.get()
    together = [first, *queue.take_ready(first, 8, lambda job: True)]
    assert sorted(served(together)) == ["a", "flood", "heavy", "heavy"]
    first = await queue.get()
    assert sorted(served([first, *queue.take_ready(first, 8, lambda job: True)])) == [
        "flood", "heavy",
    ]
    first = await queue.get()
    assert served([first, *queue.take_ready(first, 1, lambda job: True)]) == ["flood"]
    assert queue.take_ready(first, 8, lambda job: True) == []  # the next round waits


async def test_an_item_of_another_shape_waits_for_its_own_request() -> None:
    queue = FairQueue(16)
    loop = asyncio.get_running_loop()
    shapes = [(4, 4), (4, 4), (2, 2), (4, 4)]
    for index, shape in enumerate(shapes):
        await queue.put(_Job({"x": np.full(shape, index)}, loop.create_future()), f"c{index}", 1.0)
    first = await queue.get()
    same = queue.take_ready(first, 8, _same_shapes(first))
    assert [int(job.inputs["x"].flat[0]) for job in same] == [1]  # stops at the 2x2 item
    assert int((await queue.get()).inputs["x"].flat[0]) == 2  # which is served next, in order


def test_requests_are_sized_to_the_free_shared_memory() -> None:
    detector_item = 416 * 416 * 3 + 3549 * 85 * 4  # uint8 in; anchors x 85 columns (COCO) out
    mib = 2**20
    assert fitting_batch(detector_item, 8, 4, 1024 * mib) == 4
    # Docker's default 64 MiB /dev/shm, partly used: fewer items per request, never a region
    # that could not be written (a full /dev/shm kills the process with SIGBUS)
    assert fitting_batch(detector_item, 8, 4, 60 * mib) == 2
    assert 2 * 8 * 2 * detector_item <= 60 * mib
    assert fitting_batch(detector_item, 8, 4, 20 * mib) == 0  # then tensors go over gRPC


async def test_items_of_no_camera_go_together_in_arrival_order() -> None:
    """The crops of a frame (no camera key) are not rationed per round: one request takes them."""
    queue = FairQueue(32)
    loop = asyncio.get_running_loop()
    for index in range(6):
        await queue.put(_Job({"index": np.array(index)}, loop.create_future()), "", 1.0)
    first = await queue.get()
    together = [first, *queue.take_ready(first, 3, lambda job: True)]
    assert [int(job.inputs["index"]) for job in together] == [0, 1, 2, 3]


def spec_of(config: dict[str, object]) -> ModelSpec:
    return ModelSpec(
        "m", 16, (), (),
        instances=_instances(config.get("instance_group", [])),  # type: ignore[arg-type]
        dynamic_batching="dynamic_batching" in config,
    )


def test_requests_beyond_what_a_non_batching_server_runs_wait_in_the_fair_queue() -> None:
    """A server that runs requests alone queues the rest in arrival order, where flooding
    cameras get ahead: only its instances and a small backlog are sent, the rest stay here."""
    cpu = {"instance_group": [{"kind": "KIND_CPU", "count": 2}]}
    assert requests_worth_sending(spec_of(cpu), 8) == 2 + SERVER_BACKLOG
    assert requests_worth_sending(spec_of(cpu), 1) == 1
    # Triton batches concurrent requests: every one in flight is worth sending
    assert requests_worth_sending(spec_of({**cpu, "dynamic_batching": {}}), 8) == 8
    # GPU groups count per listed GPU; without the list the instances are unknown: unchanged
    gpus = {"instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0, 1, 2]}]}
    assert requests_worth_sending(spec_of(gpus), 16) == 3 + SERVER_BACKLOG
    unknown = {"instance_group": [{"kind": "KIND_GPU", "count": 1}]}
    assert requests_worth_sending(spec_of(unknown), 16) == 16
