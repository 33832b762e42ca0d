"""Stopping a long-lived task for sure."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

CANCEL_RETRY_S = 1.0


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel the task and wait until it has ended, cancelling again should something inside it
    swallow the cancellation (some client calls do), so a stop never hangs."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_RETRY_S)
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())
