"""Credentials in every form a camera vendor uses are hidden: in URLs, free text and the logs.

The other surfaces have their own tests with the same forms (tests/support/credentials.py):
`streamer check` in test_cli.py, /metrics, /api/state and the page in tests/metrics/, MQTT and
Redis status messages in tests/publishing/.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, unquote

import pytest

from streamer.config import ConfigError, parse_config
from streamer.core.redaction import MASK, redact_url, scrub, url_secrets
from tests.support.credentials import FORM_PARAMS, FORMS, MALFORMED, CredentialForm, fail_to_connect, leaks

ALL_FORMS = [pytest.param(form, id=form.id) for form in FORMS + MALFORMED]


@pytest.mark.parametrize("form", ALL_FORMS)
def test_redact_url_hides_every_credential_form(form: CredentialForm) -> None:
    redacted = redact_url(form.url)
    assert leaks(redacted, [form]) == [], redacted
    assert redacted.split("://")[0] == form.url.split("://")[0] and MASK in redacted
    assert "127.0.0.1" in redacted, "the host stays visible: the operator must know which camera"


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.5:554/cam/realmonitor?channel=1&subtype=0",
        "rtsp://cam.local/h264?keyframe=1&unicast=true&proto=Onvif",
        "rtsp://[::1]:8554/stream",
        "srt://cam.local:9000?mode=caller&latency=200",
        "rtmp://cam.local/live",
        "/videos/user=admin&password=x.mp4",
        "",
        "not a url at all: @@@ ?? ##",
    ],
)
def test_urls_without_credentials_are_left_as_they_are(url: str) -> None:
    assert redact_url(url) == url
    assert url_secrets([url]) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://cam.local/video?email=ops@example.com", "rtsp://cam.local/video?email=***"),
        ("rtsp://h/s?channel=1&subtype=0&cookie=abc", "rtsp://h/s?channel=1&subtype=0&cookie=***"),
        ("rtsp://h/s?channel=1%26pw%3Dx", "rtsp://h/s?channel=***"),  # not a plain value
        ("rtsp://h/s?CHANN%45L=2", "rtsp://h/s?CHANN%45L=2"),  # a harmless name, encoded
        ("rtmp://h:1935/app/key-1?vhost=v", "rtmp://h:1935/app/***?vhost=***"),
    ],
)
def test_every_value_is_hidden_unless_its_name_is_known_to_be_harmless(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("form", ALL_FORMS)
def test_scrub_removes_every_form_of_every_secret_from_free_text(form: CredentialForm) -> None:
    """Error messages hold the URL raw or decoded, and a secret alone, decoded or encoded."""
    pieces = [form.url, unquote(form.url), quote(form.url, safe="")]
    for secret in form.whole:
        pieces += [secret, quote(secret, safe=""), unquote(secret)]
    text = "OSError: " + " | ".join(f"'{piece}'" for piece in pieces)
    scrubbed = scrub(text, url_secrets([form.url]))
    assert scrubbed is not None and leaks(scrubbed, [form]) == [], scrubbed
    assert scrubbed.startswith("OSError: '")


def test_overlapping_secrets_are_hidden_whole() -> None:
    secrets = url_secrets(["rtsp://h/x?token=abcdef&key=defghi"])
    assert scrub("token abcdefghi end", secrets) == f"token {MASK} end"
    assert scrub(None, secrets) is None


@pytest.mark.parametrize("form", [pytest.param(form, id=form.id) for form in MALFORMED])
def test_a_malformed_url_is_one_config_line_without_the_secret(form: CredentialForm) -> None:
    text = f'cameras:\n  - name: gate\n    url: "{form.url}"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml", env={})
    (line,) = caught.value.lines
    assert line.startswith("cfg.yaml:3: cameras[0].url: malformed URL: ")
    assert "percent-encode" in line
    assert leaks(line, [form]) == [], line


@pytest.mark.parametrize("form", FORM_PARAMS)
async def test_a_camera_that_cannot_connect_logs_no_secret(
    form: CredentialForm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failed = await fail_to_connect(form, [form.url])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"({redact_url(form.url)})" in logged, "the log names the camera's redacted URL"
    assert leaks(logged, [form]) == [], logged
    assert failed.status.status == "backoff"
    detail = failed.status.detail or ""
    assert detail.startswith(("ConnectionRefusedError", "OSError")), detail
    assert leaks(detail, [form]) == [], detail
    assert failed.stats.source == redact_url(form.url)
