"""What a token holder may make the service do through the camera API: only what the operator allowed.

Against the real service (tests/control/conftest.py): its file lists 127.0.0.1 (the test's RTSP
camera), the config folder and sample_videos/, and the variable VAULT_PASSWORD; everything else
keeps the defaults. Each refusal is a 422 naming the rule, and leaves the file, the running
cameras and every surface as they were.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.config import ConfigError, parse_config
from tests.control.conftest import Running
from tests.control.support import Answer, call, until
from tests.support.credentials import FORMS
from tests.support.listeners import FileServer, TcpRecorder

INJECTED = "SET injected-key injected-value"
ENV_NAME, ENV_SECRET = "STREAMER_TEST_ENV_SECRET", "EnvSecret-4711-xyzzy"
TEXT_FILE = "root:x:0:0:root:/root:/bin/bash\nOPERATOR-ONLY-TEXT\n"


async def refused(running: Running, body: dict[str, object], method: str = "POST",
                  path: str = "/api/cameras") -> Answer:
    """Send a change that must be refused with 422, and check that nothing changed."""
    before_file = running.config_path.read_bytes()
    before = await configured(running)
    answer = await call(running.url, method, path, body)
    assert answer.status == 422, answer.text
    assert running.config_path.read_bytes() == before_file, "a refused change wrote the file"
    assert await configured(running) == before, "a refused change changed the cameras"
    return answer


async def configured(running: Running) -> list[dict[str, object]]:
    return [c["config"] for c in (await call(running.url, "GET", "/api/cameras")).body["cameras"]]


@pytest.fixture
def secret_in_environment() -> Iterator[str]:
    os.environ[ENV_NAME] = ENV_SECRET
    try:
        yield ENV_SECRET
    finally:
        os.environ.pop(ENV_NAME, None)


# -- 1: a URL is a URI, not a string handed to FFmpeg -----------------------------------------------


async def test_a_line_break_in_a_url_never_reaches_the_service_it_points_at(running: Running) -> None:
    """Previously `rtsp://127.0.0.1:6379/x\\r\\nSET k v\\r\\n` ran SET on the local Redis."""
    with TcpRecorder() as redis:
        base = f"rtsp://127.0.0.1:{redis.port}/x"
        for url in (f"{base}\r\n{INJECTED}\r\n", f"{base}\n{INJECTED}", f"{base} {INJECTED}",
                    f"{base}\t", f"{base}\x00"):
            answer = await refused(running, {"name": "redis", "url": url})
            assert re.match(r"cameras\[1\]\.url: character '.+' at position \d+: a camera URL holds "
                            r"no control character or whitespace", answer.body["error"]), answer.text
        patched = await refused(running, {"url": f"{base}\r\n{INJECTED}"}, "PATCH", "/api/cameras/lobby")
        assert patched.body["error"].startswith("cameras[0].url: character '\\r'")
        await asyncio.sleep(2.0)  # a camera started by mistake would have connected by now
        assert INJECTED.encode() not in redis.received and redis.connections == 0, redis.received


def test_the_file_refuses_the_same_urls_in_one_line() -> None:
    text = 'cameras:\n  - name: redis\n    url: "rtsp://127.0.0.1:6379/x\\r\\nSET k v"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={})
    assert caught.value.lines == [
        "cfg.yaml:3: cameras[0].url: character '\\r' at position 23: a camera URL holds no "
        "control character or whitespace (percent-encode a space as %20)"
    ]


# -- 2: files and internal URLs -----------------------------------------------------------------------


async def test_files_outside_the_allowed_folders_and_loopback_urls_are_refused(
    running: Running, tmp_path: Path, sample_clip: Path
) -> None:
    """Previously any file the service could read (0600 too) and any loopback URL came back as
    pictures through /api/live-view (formerly /api/snapshot)."""
    private = Path(shutil.copy(sample_clip, tmp_path / "private.mp4"))
    private.chmod(0o600)
    inside_link = running.config_path.parent / "innocent.mp4"
    inside_link.symlink_to(private)
    (tmp_path / "notes.asc").write_text(TEXT_FILE)
    try:
        for url in (str(private), f"file://{private}", str(inside_link), "innocent.mp4"):
            answer = await refused(running, {"name": "stolen", "url": url})
            assert "dashboard.api.file_folders" in answer.body["error"], answer.text
        with FileServer(tmp_path, host="127.0.0.2") as internal:
            answer = await refused(running, {"name": "internal", "url": internal.url("notes.asc")})
            assert answer.body["error"] == (
                "cameras[1].url: host '127.0.0.2' is a loopback address (127.0.0.2); list it in "
                "dashboard.api.stream_hosts to let the API point cameras at it"
            )
        for url in ("http://169.254.169.254/latest/meta-data", "http://[::1]:8080/x",
                    "http://2130706434:8080/x", "rtsp://[::ffff:127.0.0.2]/x"):
            answer = await refused(running, {"name": "internal", "url": url})
            assert "dashboard.api.stream_hosts" in answer.body["error"], (url, answer.text)
        assert (await call(running.url, "GET", "/api/live-view/stolen")).status == 404
        assert (await call(running.url, "GET", "/api/snapshot/internal")).status == 404
    finally:
        inside_link.unlink()


async def test_a_file_camera_detail_says_the_same_for_missing_unreadable_and_not_a_video(
    running: Running,
) -> None:
    """Previously `no such file` and `invalid data` told an API client which files exist."""
    folder = running.config_path.parent
    (folder / "notes.asc").write_text(TEXT_FILE)
    (folder / "secret.mp4").write_bytes(b"\x00" * 4096)
    names = {"missing": "missing.mp4", "text": "notes.asc", "garbage": "secret.mp4"}
    try:
        for name, file in names.items():
            added = await call(running.url, "POST", "/api/cameras", {"name": name, "url": file})
            assert added.status == 201, added.text

        async def details() -> dict[str, str] | None:
            cameras = {c["name"]: c for c in (await call(running.url, "GET", "/api/cameras")).body["cameras"]}
            found = {n: cameras[n]["detail"] for n in names if cameras[n]["state"] == "failed"}
            return found if len(found) == len(names) else None

        found = await until(details, "the three file cameras failing")
        generic = {found[n].replace(file, "FILE") for n, file in names.items()}
        assert generic == {
            "cannot read FILE as a video: missing, not readable by the service, or not a video "
            "format it reads (the service's log says which)"
        }, found
        assert (await call(running.url, "GET", "/api/live-view/text")).status == 204, "no picture of text"
    finally:
        for name in names:
            await call(running.url, "DELETE", f"/api/cameras/{name}")
        for file in ("notes.asc", "secret.mp4"):
            (folder / file).unlink()


# -- 3: the environment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"name": f"${{{ENV_NAME}}}", "url": "x.mp4"},
         "cameras[1].name: ${...} is accepted only in a camera URL's credentials"),
        ({"name": "envcam", "url": f"rtsp://admin:${{{ENV_NAME}}}@10.0.0.7/s"},
         f"cameras[1].url: ${{{ENV_NAME}}} is not an environment variable the API may use "
         "(dashboard.api.env_allowed: VAULT_PASSWORD)"),
        ({"name": "envcam", "url": f"${{{ENV_NAME}}}"},
         f"cameras[1].url: ${{{ENV_NAME}}} is not an environment variable the API may use"),
        ({"name": "envcam", "url": "rtsp://${VAULT_PASSWORD}/s"},
         "cameras[1].url: ${VAULT_PASSWORD} is accepted only in the user:password@ part or a "
         "query value of the URL"),
        ({"name": "envcam", "url": "rtsp://10.0.0.7/s?channel=${VAULT_PASSWORD}"},
         "cameras[1].url: ${VAULT_PASSWORD} is accepted only in the user:password@ part"),
        ({"name": "envcam", "url": "x.mp4", "zones": [{"name": f"${{{ENV_NAME}}}",
                                                       "points": [[0, 0], [9, 0], [9, 9]]}]},
         "cameras[1].zones.0.name: ${...} is accepted only in a camera URL's credentials"),
        ({"name": "envcam", "url": f"rtsp://admin:${{{ENV_NAME}:-x}}@10.0.0.7/s"},
         f"cameras[1].url: ${{{ENV_NAME}:-x}} is not an environment variable the API may use"),
    ],
    ids=["name", "unlisted-password", "whole-url", "listed-in-host", "listed-in-harmless-value",
         "zone-name", "default-form"],
)
async def test_environment_references_are_refused_outside_listed_credentials(
    running: Running, secret_in_environment: str, body: dict[str, object], rule: str
) -> None:
    """Previously `${VAR}` was filled from the service's environment and shown back: in the
    answer, /api/state, /metrics, and (as a name) on the tokenless /readyz."""
    answer = await refused(running, body)
    assert answer.body["error"].startswith(rule), answer.text
    for path in ("/api/cameras", "/api/state", "/metrics", "/readyz"):
        shown = await call(running.url, "GET", path)
        assert secret_in_environment not in shown.text, path
    assert secret_in_environment not in answer.text


async def test_a_listed_variable_in_the_password_is_accepted_and_never_shown(
    running: Running, secret_in_environment: str
) -> None:
    url = "rtsp://admin:${VAULT_PASSWORD}@10.0.0.7:9/vault?pw=${VAULT_PASSWORD}"
    added = await call(running.url, "POST", "/api/cameras", {"name": "vaulted", "url": url, "enabled": False})
    try:
        assert added.status == 201, added.text
        assert added.body["config"]["url"] == "rtsp://***@10.0.0.7:9/vault?pw=***"
    finally:
        assert (await call(running.url, "DELETE", "/api/cameras/vaulted")).status == 204


# -- 4: literal credentials of every form -------------------------------------------------------------


NEW_FORMS = [f for f in FORMS if f.id.startswith(("query-srt", "query-pw", "query-sig", "query-signed",
                                                  "query-encoded-name", "query-unknown", "rtmp"))]


@pytest.mark.parametrize("form", [pytest.param(f, id=f.id) for f in NEW_FORMS])
async def test_literal_credentials_of_every_form_are_refused(running: Running, form: object) -> None:
    """Previously only user:password@ and parameters named like passwords were refused."""
    url = form.url.replace("127.0.0.1:9", "10.0.0.7:9")  # type: ignore[attr-defined]
    answer = await refused(running, {"name": "literal", "url": url})
    assert "send them as ${ENV_VAR} references" in answer.body["error"], answer.text
    assert not any(secret in answer.text for secret in form.secrets)  # type: ignore[attr-defined]


# -- 9: listeners ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["udp://0.0.0.0:{port}", "udp://10.0.0.7:{port}", "rtsp://10.0.0.7:{port}/s?listen=1",
     "srt://10.0.0.7:{port}?mode=listener", "rtsp://0.0.0.0:{port}/s"],
)
async def test_listener_urls_are_refused(running: Running, url: str) -> None:
    """Previously `udp://0.0.0.0:PORT` was accepted and listened on every interface."""
    answer = await refused(running, {"name": "listener", "url": url.format(port=5004)})
    assert "dashboard.api.allow_listeners" in answer.body["error"], answer.text


async def test_schemes_can_be_narrowed_and_every_refusal_names_its_rule(running: Running) -> None:
    answer = await refused(running, {"name": "ftp", "url": "ftp://10.0.0.7/x"})
    assert answer.body["error"].startswith("cameras[1].url: unsupported URL scheme 'ftp'")
    answer = await refused(running, {"name": "nohost", "url": "rtsp:///x"})
    assert answer.body["error"] == (
        "cameras[1].url: a stream URL needs a host (rtsp://HOST[:PORT]/...); none given"
    )
