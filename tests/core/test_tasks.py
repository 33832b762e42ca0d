"""A stop never hangs on a task that swallowed its cancellation (Python 3.11's wait_for can)."""

from __future__ import annotations

import asyncio
import contextlib

from streamer.core.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_still_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 30)
    assert task.cancelled() and swallowed == 2


async def test_a_task_that_failed_is_waited_for_without_raising() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(failing())
    with contextlib.suppress(RuntimeError):
        await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done() and isinstance(task.exception(), RuntimeError)
