"""Credentials never leave the process: one place that hides them, used by every surface.

Cameras carry credentials in many forms, and a list of secret names can never be complete (SRT's
`passphrase`, `pw`, `sig`, `X-Amz-Signature`, a name written `pass%77ord`...). So hiding is the
default: every form below is hidden the same way in logs, `streamer check`, /metrics, /api/state,
the dashboard and MQTT/Redis status messages:

* userinfo, `rtsp://user:pass@host/...`, also when an unencoded password holds `/`, `?`, `#` or
  `@` (an environment variable pasted into the URL): the userinfo runs to the last `@` that is
  followed by a host;
* the value of every `name=value` parameter, in the query (`?user=admin&password=...`) and in the
  path (`/user=admin&password=...`, `/user=admin_password=..._channel=1`), unless its name
  (percent-decoded, any case) is on the short list of known-harmless names (`channel`,
  `subtype`, `transport`, ...) and the value is plain. A value runs to the next `name=` that
  follows one of `/ ? & ; # _`, or to the end, so that `&`, `/`, `?` or `#` inside it still count
  as the value;
* an RTMP stream key: the path after the application name (`rtmp://host/live/KEY`).

Hiding works on spans of the original text, merged before they are replaced: a secret that overlaps
another span is hidden whole, never in part. Over-hiding (an `@` in a query value of a URL with
credentials) is accepted; showing a fragment of a secret is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"
# Values of parameters named so are secrets of any length: scrubbed from free text even when short.
CREDENTIAL_NAMES = frozenset({
    "user", "username", "password", "pwd", "pass", "passwd", "pw", "passcode", "passphrase",
    "token", "key", "auth", "secret", "sig", "signature", "credential", "credentials",
})
USER_NAMES = frozenset({"user", "username"})  # hidden in URLs; not scrubbed from free text
SECRET_SUFFIXES = ("password", "passwd", "pwd", "token", "key", "secret", "signature")  # apikey
# Parameters whose values are shown: camera settings, never credentials. Anything else is hidden.
HARMLESS_NAMES = frozenset({
    "transport", "rtsp_transport", "channel", "ch", "chn", "subtype", "stream", "streamtype",
    "profile", "resolution", "fps", "framerate", "keyframe", "unicast", "proto", "protocol",
    "codec", "video", "audio", "width", "height", "latency", "mode", "tcp", "multicast", "listen",
})
# Hidden values at least this long are scrubbed from free text too (shorter ones, such as a "1",
# would mangle every message; a credential-named value is scrubbed whatever its length).
SCRUB_MIN_LENGTH = 4
RTMP_SCHEMES = ("rtmp", "rtmps", "rtmpe", "rtmpt", "rtmpte", "rtmpts")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")
_AUTHORITY_END = re.compile(r"[/?#]")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._~%-]*)(?::[^/?#@]*)?(?=[/?#]|$)")
_PARAM = re.compile(
    r"(?:^|(?<=[/?&;#_]))(?P<name>[A-Za-z%][A-Za-z0-9_.%-]*?)=(?P<value>.*?)"
    r"(?=[/?&;#_][A-Za-z%][A-Za-z0-9_.%-]*=|[&;]*$)",
    re.DOTALL,
)
_NAME_PARTS = re.compile(r"[_.-]")
_VALUE_END = re.compile(r"[/?#]")  # `/token=SECRET/stream`: the secret may end where the path goes on
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:,+-]*")  # a harmless name's value is shown only if plain

Span = tuple[int, int]


def is_credential_name(name: str) -> bool:
    """`password`, `PWD`, `access_token`, `apiKey`, `X-Amz-Signature`, `pass%77ord`: a parameter
    whose value is a secret of any length."""
    lowered = unquote(name).lower()
    if lowered in CREDENTIAL_NAMES or lowered.endswith(SECRET_SUFFIXES):
        return True
    return any(part in CREDENTIAL_NAMES for part in _NAME_PARTS.split(lowered))


def is_harmless(name: str, value: str) -> bool:
    """A parameter shown as it is: a known camera setting with a plain value."""
    lowered = unquote(name).lower()
    return lowered in HARMLESS_NAMES and _PLAIN_VALUE.fullmatch(value) is not None


def redact_url(url: str) -> str:
    """Hide credentials in a URL before it reaches a log, a metric or a message; never raises."""
    spans, _secrets = _credentials(url)
    return _mask(url, spans)


def url_secrets(urls: Iterable[str]) -> list[str]:
    """Everything `scrub` must remove for these URLs, longest first: each URL holding credentials
    (raw and percent-decoded) and each secret value (password, token, key; a user name only when
    it stands alone, as an access token does) raw, percent-decoded and percent-encoded, also up to
    its first `/`, `?` or `#`."""
    found: set[str] = set()
    for url in urls:
        spans, values = _credentials(url)
        if not spans:
            continue
        found.update({url, unquote(url)})
        for value in values + [_VALUE_END.split(value, 1)[0] for value in values]:
            decoded = unquote(value)
            found.update({value, decoded, unquote_plus(value), quote(decoded, safe=""),
                          quote_plus(decoded, safe=""), quote(value, safe="")})
    found.discard("")
    return sorted(found, key=len, reverse=True)


def scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    """Remove credentials from free text (error messages) before it leaves the process.

    Every occurrence of every secret is found in the original text first and the merged spans are
    replaced, so overlapping secrets never leave a fragment behind.
    """
    if text is None:
        return None
    spans: list[Span] = []
    for secret in secrets:
        if not secret:
            continue
        start = text.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    return _mask(text, spans)


def _credentials(url: str) -> tuple[list[Span], list[str]]:
    """Spans of `url` to hide, and the secret values among them (for scrubbing free text)."""
    scheme, separator, rest = url.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        return [], []  # a file path
    offset = len(scheme) + len(separator)
    spans: list[Span] = []
    secrets: list[str] = []
    userinfo_end = _userinfo_end(rest)
    if userinfo_end is not None:
        userinfo = rest[:userinfo_end]
        spans.append((offset, offset + userinfo_end))
        user, colon, password = userinfo.partition(":")
        secrets.append(password if colon and password else user)
    for match in _PARAM.finditer(rest):
        name, value = match.group("name"), match.group("value")
        if not value or is_harmless(name, value):
            continue
        spans.append((offset + match.start("value"), offset + match.end("value")))
        credential = is_credential_name(name)
        if (credential and unquote(name).lower() not in USER_NAMES) or (
            not credential and len(value) >= SCRUB_MIN_LENGTH
        ):
            secrets.append(value)
    if scheme.lower() in RTMP_SCHEMES:
        key = _rtmp_key(rest, 0 if userinfo_end is None else userinfo_end + 1)
        if key is not None:
            spans.append((offset + key[0], offset + key[1]))
            if key[1] - key[0] >= SCRUB_MIN_LENGTH:
                secrets.append(rest[key[0]:key[1]])
    return spans, secrets


def _rtmp_key(rest: str, authority_start: int) -> Span | None:
    """The stream key of an RTMP URL: the path after the application name, up to the query."""
    path_start = rest.find("/", authority_start)
    if path_start < 0:
        return None
    application_end = rest.find("/", path_start + 1)
    if application_end < 0:
        return None
    query = rest.find("?", application_end)
    end = len(rest) if query < 0 else query
    return (application_end + 1, end) if end > application_end + 1 else None


def _userinfo_end(rest: str) -> int | None:
    """Where the userinfo of `rest` (the URL after `scheme://`) ends: at its last `@` followed by
    a host. Only when the authority holds an `@` or a port that is not a number (a password with
    an unencoded `/`, `?` or `#` ends the authority early); otherwise an `@` is in the path."""
    at_signs = [index for index, char in enumerate(rest) if char == "@"]
    if not at_signs:
        return None
    authority = _AUTHORITY_END.split(rest, 1)[0]
    if "@" not in authority and not _bad_port(authority):
        return None
    for index in reversed(at_signs):
        if _HOST.match(rest, index + 1):
            return index
    return at_signs[-1]


def _bad_port(authority: str) -> bool:
    """`host:pa` (the start of `user:pa/ss@host`): a colon followed by something not a port."""
    after_host = authority.rpartition("]")[2] if authority.startswith("[") else authority
    _host, colon, port = after_host.partition(":")
    return bool(colon) and not port.isdigit()


def _mask(text: str, spans: Iterable[Span]) -> str:
    """Replace each merged span of `text` by the mask."""
    pieces: list[str] = []
    position = 0
    for start, end in _merged(spans):
        pieces += [text[position:start], MASK]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _merged(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
