"""The embedded Triton server: the real `tritonserver` from the nvidia-pytriton wheel, on loopback.

Facts this relies on: the Python-backend stub needs the
running interpreter's LIBDIR *and* the wheel's `nvidia_pytriton.libs` on LD_LIBRARY_PATH, and the
virtual environment's `bin` first on PATH; without them models never load and the server never
becomes ready. SIGINT stops it cleanly in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc.aio as grpcclient

from streamer.inference.repository import build_embedded_repository

log = logging.getLogger(__name__)

SHM_DEFAULT_BYTES = 16 * 1024 * 1024
# A healthy server stops on SIGINT in a few seconds; one that does not (a backend that hangs) is
# escalated, so that stopping the service stays under 10 s.
STOP_GRACE_S = 5.0
KILL_GRACE_S = 2.0
WORKDIR_PREFIX = "streamer-triton-"
OWNER_LOCK = ".owner.lock"  # flock-ed by the owning process for the folder's life
READY_POLL_S = 0.2
LOG_TAIL_LINES = 15


class TritonStartError(RuntimeError):
    """The embedded server did not become ready; the message carries its last log lines."""


@dataclass(frozen=True)
class TritonInstallation:
    binary: Path
    backends: Path
    stub: Path
    libraries: Path

    @classmethod
    def locate(cls) -> TritonInstallation:
        try:
            import pytriton
        except ImportError as exc:
            raise TritonStartError(
                "nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0"
            ) from exc
        root = Path(pytriton.__file__).parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        site = Path(pytriton.__file__).parent.parent
        found = cls(
            binary=root / "bin" / "tritonserver",
            backends=root / "backends",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            libraries=site / "nvidia_pytriton.libs",
        )
        for path in (found.binary, found.backends / "python", found.stub, found.libraries):
            if not path.exists():
                raise TritonStartError(f"{path}: missing from the nvidia-pytriton installation")
        return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hold_lock(path: Path) -> int:
    """An exclusive flock held while the descriptor is open (not inherited by the server); locked
    before it gets its name, so that a sweeper never finds it unlocked."""
    unnamed = path.with_name(f"{path.name}.new")
    descriptor = os.open(unnamed, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(unnamed, path)
    return descriptor


def claim_workdir() -> tuple[tempfile.TemporaryDirectory[str], int]:
    """A new runtime folder in the temporary directory, and the lock that says its owner lives."""
    workdir = tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX)
    try:
        return workdir, _hold_lock(Path(workdir.name) / OWNER_LOCK)
    except BaseException:
        workdir.cleanup()
        raise


def sweep_leftover_workdirs(folder: Path) -> list[Path]:
    """Remove the runtime folders of embedded servers whose owner died (kill -9 leaves them).

    A folder is its owner's while the owner holds the flock on its OWNER_LOCK: a lock that can be
    taken belongs to a dead process. Folders without that file (being created, or made by an
    older version) are left alone. Returns what was removed.
    """
    removed = []
    for workdir in folder.glob(f"{WORKDIR_PREFIX}*"):
        lock = workdir / OWNER_LOCK
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its owner runs
        finally:
            os.close(descriptor)
        shutil.rmtree(workdir, ignore_errors=True)
        removed.append(workdir)
    if removed:
        log.info(
            "removed %d runtime folders left by embedded Triton servers of processes that died: %s",
            len(removed), ", ".join(path.name for path in removed),
        )
    return removed


# The server is started through this, run by a fresh interpreter (`-I -S -c`) that then becomes
# the server (execv): Linux sends it SIGTERM if the service dies, so no server outlives the
# service (kill -9 included). Not a `preexec_fn`: that runs Python in the forked child of a
# threaded process, which frees the other threads' thread-locals there (a camera thread's PyAV
# reformatter then waits for its worker threads, which do not exist in the child: a hang).
DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("the service ended before its Triton server started")
os.execv(sys.argv[2], sys.argv[2:])
"""


def die_with_parent(command: list[str]) -> list[str]:
    """`command`, run so that it gets SIGTERM when this process dies (Linux)."""
    return [sys.executable, "-I", "-S", "-c", DIE_WITH_PARENT, str(os.getpid()), *command]


class EmbeddedTritonServer:
    """Owns one tritonserver process and its temporary runtime repository."""

    def __init__(
        self,
        repository: Path,
        models: list[str],
        *,
        ort_threads: int = 0,
        startup_timeout_s: float = 120.0,
        log_verbose: int = 0,
        grpc_port: int = 0,
    ) -> None:
        self.repository = repository
        self.models = models
        self.ort_threads = ort_threads
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self.fixed_grpc_port = grpc_port  # 0 = a free port at every start
        self.grpc_port = 0
        self.http_port = 0
        self.metrics_port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._owner_lock: int | None = None
        self.shm_prefix = f"streamer_{os.getpid()}_{id(self):x}_"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended (killed, crashed); None while it runs."""
        return self._process.returncode if self._process is not None else None

    async def exited(self, within_s: float) -> int | None:
        """The exit code if the process ends within `within_s` (None: still running), so that a
        failed health check right after a kill names the exit, not the refused connection."""
        if self._process is None:
            return None
        try:
            async with asyncio.timeout(within_s):
                return await asyncio.shield(self._process.wait())
        except TimeoutError:
            return None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path | None:
        return Path(self._workdir.name) / "tritonserver.log" if self._workdir else None

    async def start(self) -> None:
        installation = TritonInstallation.locate()
        sweep_leftover_workdirs(Path(tempfile.gettempdir()))
        self._workdir, self._owner_lock = claim_workdir()
        work = Path(self._workdir.name)
        model_dir = work / "models"
        build_embedded_repository(self.repository, self.models, model_dir, self.ort_threads)
        backends = work / "backends" / "python"
        backends.mkdir(parents=True)
        source = installation.backends / "python"
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            (backends / name).symlink_to(source / name)
        (backends / "triton_python_backend_stub").symlink_to(installation.stub)

        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libdir, str(installation.libraries), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        self.grpc_port = self.fixed_grpc_port or free_port()
        self.http_port, self.metrics_port = free_port(), free_port()
        args = [
            str(installation.binary),
            f"--model-repository={model_dir}",
            f"--backend-directory={work / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
        ]
        log_file = open(work / "tritonserver.log", "wb")  # noqa: SIM115 - owned by the process
        try:
            self._process = await asyncio.create_subprocess_exec(
                *die_with_parent(args),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the service, which stops it in order
            )
        finally:
            log_file.close()
        log.info("embedded Triton starting (pid %d, gRPC %s)", self._process.pid, self.grpc_url)
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._process is not None
        client = grpcclient.InferenceServerClient(self.grpc_url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout_s
        try:
            while True:
                if self._process.returncode is not None:
                    raise TritonStartError(
                        f"embedded tritonserver exited with code {self._process.returncode}: "
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(Exception):
                    if await client.is_server_ready():
                        log.info("embedded Triton ready: models %s", ", ".join(self.models))
                        return
                if loop.time() > deadline:
                    raise TritonStartError(
                        f"embedded tritonserver not ready after {self.startup_timeout_s:.0f}s: "
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(READY_POLL_S)
        finally:
            await client.close()

    def log_tail(self) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        lines = path.read_text(errors="replace").splitlines()
        interesting = [ln for ln in lines if " E" in ln[:8] or "error" in ln.lower()]
        return " | ".join((interesting or lines)[-LOG_TAIL_LINES:])

    async def stop(self, grace_s: float | None = None) -> None:
        """SIGINT, then SIGTERM, then SIGKILL; `grace_s=0` kills at once (a server known broken:
        a backend that hangs keeps it from stopping when asked)."""
        process, self._process = self._process, None
        died = process is not None and process.returncode is not None  # killed, crashed
        steps = (
            ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, KILL_GRACE_S))
            if grace_s is None
            else ((signal.SIGINT, grace_s),) if grace_s > 0 else ()
        )
        if process is not None and process.returncode is None:
            for sig, grace in steps:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                try:
                    async with asyncio.timeout(grace):
                        await process.wait()
                    break
                except TimeoutError:
                    log.warning("embedded Triton ignored %s, escalating", sig.name)
            else:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            log.info("embedded Triton stopped (exit code %s)", process.returncode)
        if process is not None:
            # A server that died leaves its Python-backend stubs orphaned: no grace for them.
            quick = died or grace_s == 0.0
            await self._reap_process_group(process.pid, grace_s=0.0 if quick else KILL_GRACE_S)
        self._remove_leftover_shm()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        if self._owner_lock is not None:
            os.close(self._owner_lock)
            self._owner_lock = None

    async def _reap_process_group(self, group: int, grace_s: float) -> None:
        """Python-backend stubs share the server's process group and may outlive it briefly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while True:
            try:
                os.killpg(group, 0)
            except (ProcessLookupError, PermissionError):
                return
            if loop.time() >= deadline:
                if grace_s:
                    log.warning("embedded Triton left processes behind; killing them")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
                return
            await asyncio.sleep(READY_POLL_S)

    def _remove_leftover_shm(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for leftover in shm.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
