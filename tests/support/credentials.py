"""Every form of camera credentials the service must hide, shared by the tests of each surface.

Each form points at 127.0.0.1:9 (closed: a connection fails at once) and names the pieces that must
never show anywhere: whole secrets, and the parts of a secret with special characters (a surface
that cut the secret at a `/` or `#` would still show a part). Usernames are not secrets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pytest

from streamer.config import CameraConfig, ReconnectConfig
from streamer.core.events import CameraStatusEvent
from streamer.core.redaction import url_secrets
from streamer.core.stats import CameraStats
from streamer.pipeline.health import CameraWatchdog
from streamer.sources.camera import CameraSource

CLOSED = "127.0.0.1:9"


@dataclass(frozen=True)
class CredentialForm:
    id: str
    url: str
    secrets: tuple[str, ...]  # must never show, not even as a part
    values: tuple[str, ...] = ()  # whole secrets, where `secrets` lists their parts

    @property
    def whole(self) -> tuple[str, ...]:
        """The secrets as an error message may hold them on their own."""
        return self.values or self.secrets

    @property
    def camera(self) -> str:
        """A camera name for this form (names allow letters, digits, - and _)."""
        return self.id[:64]


FORMS = [
    CredentialForm("userinfo", f"rtsp://admin:Uinfo1Pw@{CLOSED}/stream", ("Uinfo1Pw",)),
    CredentialForm(
        "userinfo-special",
        f"rtsp://admin:Qxa1Z@Wyb2Y/Ezc3X?Rvd4W#Tue5V@{CLOSED}/stream",
        ("Qxa1Z", "Wyb2Y", "Ezc3X", "Rvd4W", "Tue5V"),
        ("Qxa1Z@Wyb2Y/Ezc3X?Rvd4W#Tue5V",),
    ),
    CredentialForm("userinfo-encoded", f"rtsp://admin:Encq7%40Hidz8%2F@{CLOSED}/s", ("Encq7", "Hidz8"),
        ("Encq7%40Hidz8%2F",),
    ),
    CredentialForm("user-only-token", f"rtsp://Tokn9AsUser@{CLOSED}/stream", ("Tokn9AsUser",)),
    CredentialForm(
        "query-dahua",
        f"rtsp://{CLOSED}/cam/realmonitor?channel=1&subtype=0&user=admin&password=Dahua9Pw",
        ("Dahua9Pw",),
    ),
    CredentialForm("query-pwd", f"rtsp://{CLOSED}/live?user=admin&pwd=Pwd4Value", ("Pwd4Value",)),
    CredentialForm("query-pass", f"rtsp://{CLOSED}/live?pass=Pass5Value&ch=1", ("Pass5Value",)),
    CredentialForm("query-passwd", f"rtsp://{CLOSED}/live?passwd=Passwd6Value", ("Passwd6Value",)),
    CredentialForm("query-token", f"rtsp://{CLOSED}/live?token=Tok7Value&ch=2", ("Tok7Value",)),
    CredentialForm("query-key", f"rtsp://{CLOSED}/live?key=Key8Value", ("Key8Value",)),
    CredentialForm("query-auth", f"rtsp://{CLOSED}/live?auth=Auth9Value", ("Auth9Value",)),
    CredentialForm("query-secret", f"rtsp://{CLOSED}/live?secret=Sec10Value", ("Sec10Value",)),
    CredentialForm(
        "query-case",
        f"rtsp://{CLOSED}/live?User=admin&PassWord=Case11Pw&TOKEN=Case12Tok&Pwd=Case13Pw",
        ("Case11Pw", "Case12Tok", "Case13Pw"),
    ),
    CredentialForm(
        "query-compound-names",
        f"rtsp://{CLOSED}/live?access_token=Acc14Tok&apiKey=Api15Key",
        ("Acc14Tok", "Api15Key"),
    ),
    CredentialForm(
        "query-special",
        f"rtsp://{CLOSED}/live?user=admin&password=Qsp1a/Qsp2b?Qsp3c#Qsp4d&Qsp5e",
        ("Qsp1a", "Qsp2b", "Qsp3c", "Qsp4d", "Qsp5e"),
        ("Qsp1a/Qsp2b?Qsp3c#Qsp4d&Qsp5e",),
    ),
    CredentialForm(
        "query-encoded", f"rtsp://{CLOSED}/live?password=Penc6%26Penc7%23", ("Penc6", "Penc7"),
        ("Penc6%26Penc7%23",),
    ),
    CredentialForm(
        "path-ampersand",
        f"rtsp://{CLOSED}/user=admin&password=Path16Pw&channel=1&stream=0.sdp?",
        ("Path16Pw",),
    ),
    CredentialForm(
        "path-underscore",
        f"rtsp://{CLOSED}/user=admin_password=Hik17Pw_channel=1_stream=0.sdp?real_stream",
        ("Hik17Pw",),
    ),
    CredentialForm(
        "path-token-key-auth-secret",
        f"rtsp://{CLOSED}/live/token=Pt18Tok&key=Pk19Key&auth=Pa20Auth&secret=Ps21Sec/stream",
        ("Pt18Tok", "Pk19Key", "Pa20Auth", "Ps21Sec"),
    ),
    CredentialForm(
        "path-case", f"rtsp://{CLOSED}/USER=admin&PASSWORD=Pcase22&PWD=Pcase23", ("Pcase22", "Pcase23")
    ),
    CredentialForm(
        "userinfo-and-query",
        f"rtsp://admin:Both24Pw@{CLOSED}/cam?token=Both25Tok&channel=1",
        ("Both24Pw", "Both25Tok"),
    ),
    # Hidden by default: names no list of secret names had (SRT, signed URLs, short names), a
    # name written percent-encoded, a name nobody thought of, an RTMP stream key in the path.
    CredentialForm(
        "query-srt-passphrase", f"rtsp://{CLOSED}/live?passphrase=Srt31Phrase&latency=200",
        ("Srt31Phrase",),
    ),
    CredentialForm("query-pw-passcode", f"rtsp://{CLOSED}/live?pw=Pw32Val&passcode=Pc33Val",
                   ("Pw32Val", "Pc33Val")),
    CredentialForm("query-sig", f"rtsp://{CLOSED}/live?sig=Sig34Val&signature=Sig35Val",
                   ("Sig34Val", "Sig35Val")),
    CredentialForm(
        "query-signed-url",
        f"rtsp://{CLOSED}/clip?X-Amz-Credential=Akia36Cred%2F20240101&X-Amz-Signature=Amz37Sig",
        ("Akia36Cred", "Amz37Sig"),
        ("Akia36Cred%2F20240101", "Amz37Sig"),
    ),
    CredentialForm("query-encoded-name", f"rtsp://{CLOSED}/live?pass%77ord=Enc38Name", ("Enc38Name",)),
    CredentialForm("query-unknown-name", f"rtsp://{CLOSED}/live?session=Unk39Val&channel=1",
                   ("Unk39Val",)),
    CredentialForm("rtmp-stream-key", f"rtmp://{CLOSED}/live/Rtmp40StreamKey", ("Rtmp40StreamKey",)),
]
FORM_PARAMS = [pytest.param(form, id=form.id) for form in FORMS]

# Not a valid URL (an unencoded `/` ends the authority early: port "pa"), so a config error; the
# redaction must still cope, since not every URL comes through the configuration.
MALFORMED = [
    CredentialForm("port-not-a-number", f"rtsp://admin:Mal26Pw@{CLOSED.split(':')[0]}:abc/s", ("Mal26Pw",)),
    CredentialForm("unencoded-slash", f"rtsp://admin:Mal27a/Mal27b@{CLOSED}/s", ("Mal27a", "Mal27b"),
                   ("Mal27a/Mal27b",)),
    CredentialForm("unencoded-hash", f"rtsp://admin:Mal28a#Mal28b@{CLOSED}/s", ("Mal28a", "Mal28b"),
                   ("Mal28a#Mal28b",)),
    CredentialForm("unencoded-question", f"rtsp://admin:Mal29a?Mal29b@{CLOSED}/s", ("Mal29a", "Mal29b"),
                   ("Mal29a?Mal29b",)),
    CredentialForm("unbalanced-bracket", f"rtsp://admin:Mal30a[Mal30b@{CLOSED}/s", ("Mal30a", "Mal30b"),
                   ("Mal30a[Mal30b",)),
]


def variants(secret: str) -> set[str]:
    """A secret as it may appear: raw, percent-encoded, percent-decoded."""
    return {secret, quote(secret, safe=""), unquote(secret)}


def leaks(text: str, forms: list[CredentialForm] | None = None) -> list[str]:
    """Every secret (in any of its forms) of `forms` that `text` still holds."""
    return sorted(
        {
            shown
            for form in (FORMS + MALFORMED if forms is None else forms)
            for secret in form.secrets
            for shown in variants(secret)
            if shown in text
        }
    )


@dataclass
class FailedCamera:
    """A real camera source after its first failed connection, and what the pipeline made of it."""

    stats: CameraStats
    status: CameraStatusEvent  # as the pipeline publishes it: the watchdog's state and detail


async def fail_to_connect(form: CredentialForm, urls: list[str], timeout_s: float = 20.0) -> FailedCamera:
    """Run the real source on the form's URL until one attempt failed; the watchdog (told the secrets
    of `urls`, as the pipeline is told every camera's) then derives the state and detail."""
    config = CameraConfig(
        name=form.camera,
        url=form.url,
        open_timeout_s=2.0,
        read_timeout_s=2.0,
        reconnect=ReconnectConfig(initial_delay_s=60.0, max_delay_s=60.0),
    )
    source = CameraSource(config)
    source.start()
    try:
        deadline = time.monotonic() + timeout_s
        while source.stats.reconnects < 1:
            assert time.monotonic() < deadline, f"{form.id}: no failed attempt in {timeout_s} s"
            await asyncio.sleep(0.05)
        changes: list[CameraStats] = []
        watchdog = CameraWatchdog(lambda _c: 5.0, lambda: None, changes.append, url_secrets(urls))
        watchdog.evaluate(source.stats)
        stats = source.stats
        status = CameraStatusEvent(stats.name, stats.state.value, stats.detail)
    finally:
        await source.stop()
    return FailedCamera(stats, status)
