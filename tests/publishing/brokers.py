"""Real redis-server and mosquitto processes on free ports, which tests can restart and freeze."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.02


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_binary(path: str, package: str) -> None:
    if not Path(path).is_file():
        pytest.fail(f"{path} is missing: install the Debian package '{package}' (apt-get install "
                    f"{package}); .ci/run does this", pytrace=False)


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(POLL_S)
    raise RuntimeError(f"broker did not listen on {port} within {READY_TIMEOUT_S} s")


@dataclass
class BrokerProcess:
    """One broker binary with fixed arguments; restart keeps the port and the data folder."""

    command: list[str]
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log(self) -> Path:
        return self.folder / "broker.log"

    def start(self) -> None:
        assert self.process is None, "already running"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.process, self.log)

    def stop(self, crash: bool = False) -> None:
        """SIGTERM: the broker saves its state, like a service restart; `crash`: SIGKILL."""
        if self.process is None:
            return
        self.resume()
        if crash:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)


def mosquitto(
    folder: Path,
    *,
    users: dict[str, str] | None = None,
    acl: str | None = None,
    unlimited_queues: bool = True,
) -> BrokerProcess:
    """Mosquitto with persistence (subscriber sessions survive a restart) and no queue limits.

    `acl`: the text of an `acl_file` (`user NAME` then `topic [read|write|readwrite] PATTERN`
    lines); with it, whatever it does not allow is denied. `unlimited_queues=False` keeps
    mosquitto's default queue limits, as a packaged broker runs: mosquitto 2.0 with
    `max_queued_messages 0` closes the connection of a client whose publish its ACL denied.
    """
    require_binary(MOSQUITTO, "mosquitto")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"listener {port} 127.0.0.1",
        f"user {getpass.getuser()}",  # as root, mosquitto would switch to a user who cannot read tmp
        "persistence true",
        f"persistence_location {folder}/",
        *(["max_queued_messages 0", "max_inflight_messages 0"] if unlimited_queues else []),
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if users:
        passwords = folder / "passwords"
        passwords.touch()
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), user, password], check=True)
        lines += ["allow_anonymous false", f"password_file {passwords}"]
    else:
        lines.append("allow_anonymous true")
    if acl is not None:
        acl_file = folder / "acl"
        acl_file.write_text(acl)
        lines.append(f"acl_file {acl_file}")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return BrokerProcess([MOSQUITTO, "-c", str(config)], port, folder)


def redis_server(folder: Path, *, password: str | None = None, persistent: bool = True) -> BrokerProcess:
    """redis-server with an fsync-always AOF, so streams survive a restart; `persistent=False`:
    nothing kept, a restart starts empty (a cache-style deployment)."""
    require_binary(REDIS_SERVER, "redis-server")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    command = [
        REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
        "--save", "", *persistence, "--protected-mode", "no",
    ]
    if password is not None:
        command += ["--requirepass", password]
    return BrokerProcess(command, port, folder)
