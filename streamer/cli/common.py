"""What every command shares: the event loop, signal handling, loading the config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from streamer.config import ConfigError, StreamerConfig, load_config

log = logging.getLogger("streamer")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run under uvloop where available (measured: about twice the broker throughput)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_EXIT_BASE = 128  # shells report "ended by signal N" as 128 + N: 130 Ctrl-C, 143 SIGTERM
STOP_LIMIT_S = 60.0  # a guard against a hang; sinks flush and Triton stops well within it


class StartupInterrupted(SystemExit):
    """A signal arrived before start() finished: exit code 128 + its number (130, 143).

    Not 0 as after a normal run: a supervisor or script should see that the service never ran.
    """

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(SIGNAL_EXIT_BASE + sig)
        self.signal = sig


async def run_until_signal(
    start: Callable[[], Awaitable[None]],
    wait: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    *,
    stop_limit_s: float = STOP_LIMIT_S,
    reload: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Start, then stop cleanly on SIGINT/SIGTERM or when `wait` returns by itself.

    The first signal counts at any moment: start() may wait minutes for Triton, so it runs as a
    task that the signal cancels (raising StartupInterrupted after the stop); later signals are
    only logged. stop() runs exactly once whatever happened, bounded by `stop_limit_s`.
    SIGHUP runs `reload` (one at a time, once started); without it SIGHUP is only logged.
    """
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []
    stop_requested = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if received:
            log.info("%s: already stopping", sig.name)
            return
        received.append(sig)
        log.info("stopping (%s)", sig.name)
        stop_requested.set()

    reloads: set[asyncio.Task[Any]] = set()
    started = False

    def on_hangup() -> None:
        if reload is None or not started or received:
            log.info("SIGHUP: %s", "nothing to reload" if reload is None else "not running; ignored")
            return
        log.info("SIGHUP: reloading the configuration")
        task = asyncio.ensure_future(_logged(reload))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    waiter: asyncio.Future[None] | None = None
    try:
        started = await _start_unless_stopped(start, stop_requested, stop_limit_s)
        if started:
            waiter = asyncio.ensure_future(wait())
            await _until_done_or_set(waiter, stop_requested)
    finally:
        for task in list(reloads):
            task.cancel()
        await asyncio.gather(*reloads, return_exceptions=True)
        try:
            await _bounded(stop, stop_limit_s)
        finally:
            for sig in (*STOP_SIGNALS, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)
            if waiter is not None:
                waiter.cancel()  # wait() ends by itself once stop() stopped the cameras
    if waiter is not None and waiter.done() and not waiter.cancelled():
        waiter.result()  # wait() failing is an error of the run
    if not started:
        print(
            f"interrupted: {received[0].name} during startup; stopped before the service ran",
            file=sys.stderr,
        )
        raise StartupInterrupted(received[0])


async def _logged(action: Callable[[], Awaitable[Any]]) -> None:
    """A reload that fails is logged; the service goes on as it was."""
    try:
        await action()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("reload failed")


async def _until_done_or_set(task: asyncio.Future[None], event: asyncio.Event) -> None:
    """Return when `task` ends or `event` is set, whichever comes first; `task` keeps running."""
    setter = asyncio.ensure_future(event.wait())
    either: set[asyncio.Future[Any]] = {task, setter}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        setter.cancel()


async def _start_unless_stopped(
    start: Callable[[], Awaitable[None]], stop_requested: asyncio.Event, unwind_limit_s: float
) -> bool:
    """True once start() ends (its exception propagates), False when a stop request came first.

    Then start() is cancelled and given `unwind_limit_s` to run its own except/finally (the
    pipeline stops what it had started), so that stop() afterwards finds a settled state.
    """
    task = asyncio.ensure_future(start())
    await _until_done_or_set(task, stop_requested)
    if task.done() and not task.cancelled():
        task.result()
        return True
    task.cancel()
    await asyncio.wait({task}, timeout=unwind_limit_s)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.debug("start ended with an error once cancelled", exc_info=task.exception())
    return False


async def _bounded(stop: Callable[[], Awaitable[None]], limit_s: float) -> None:
    """stop(), but never longer than `limit_s`: a hung component must not keep the process alive."""
    task = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        log.error("stopping took longer than %.0f s; exiting anyway", limit_s)
        task.cancel()
        return
    task.result()


def load_config_or_exit(path: str) -> StreamerConfig:
    """The config, or its problems on stderr (one line each) and exit code 2."""
    from streamer.assembly import registered  # the components' modules load only when needed

    try:
        return load_config(path, registered=registered())
    except ConfigError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
