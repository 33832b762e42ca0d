"""What a client of the camera API may point a camera at: the operator's decision, not the client's.

The config file names anything (the operator wrote it); a change sent through the API is checked
here against `dashboard.api`, so that a token holder cannot make the service read local files,
reach loopback or link-local services, listen on a port or read the service's environment:

* `${...}` only for the variables in `env_allowed`, only in the `user:password@` part or a query
  value (both hidden on every surface) of the URL, and only as plain `${NAME}`;
* a file camera only below `file_folders` (default: the config file's folder), symlinks resolved;
* a stream only with a scheme of `stream_schemes`, to a host of `stream_hosts` (default any),
  never to a loopback, unspecified or link-local address unless listed there (names are
  resolved and every address is checked), and never a listener unless `allow_listeners`.

Each refusal is one line naming the rule and the setting that changes it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from streamer.config import FILE_SCHEMES, CameraApiConfig, CameraConfig
from streamer.core.redaction import is_harmless

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LISTENER_SCHEMES = frozenset({"udp", "rtp"})  # reading one binds a local port for any sender
LISTENER_PARAMETERS = frozenset({"listen", "listen_timeout"})
LISTENER_MODES = frozenset({"listener", "server", "rendezvous"})  # SRT's `mode=`
SETTING = "dashboard.api"
ANY_HOST = "*"
# Stream schemes when the service did not say which it reads (a configuration built in code).
DEFAULT_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp"})


@dataclass(frozen=True)
class Reference:
    """One `${...}` in a string: where it starts and ends, and what is inside the braces."""

    start: int
    end: int
    inner: str


def references(text: str) -> Iterator[Reference]:
    """Every `${...}` of `text` as the loader reads it (`$$` is a literal `$`)."""
    position = 0
    while (start := text.find("$", position)) >= 0:
        if text.startswith("$$", start):
            position = start + 2
        elif text.startswith("${", start):
            end = text.find("}", start)
            if end < 0:
                yield Reference(start, len(text), text[start + 2:])
                return
            yield Reference(start, end + 1, text[start + 2:end])
            position = end + 1
        else:
            position = start + 1


def strings(value: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in JSON-like data, with its key path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings(item, (*where, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*where, index))
    elif isinstance(value, str):
        yield where, value


def environment_problems(settings: Mapping[str, Any], allowed: Iterable[str]) -> list[tuple[str, str]]:
    """(key, problem) for each `${...}` the API does not accept in `settings`."""
    allowed = set(allowed)
    problems: list[tuple[str, str]] = []
    for where, text in strings(settings):
        key = ".".join(str(part) for part in where)
        for reference in references(text):
            if where != ("url",):
                problems.append((key, "${...} is accepted only in a camera URL's credentials"))
            elif reference.inner not in allowed:
                listed = ", ".join(sorted(allowed)) or "none is listed"
                problems.append((key, (
                    f"${{{reference.inner}}} is not an environment variable the API may use "
                    f"({SETTING}.env_allowed: {listed})"
                )))
            elif not in_credentials(text, reference):
                problems.append((key, (
                    f"${{{reference.inner}}} is accepted only in the user:password@ part or a "
                    "query value of the URL (never in the scheme, host, port or path)"
                )))
    return problems


def in_credentials(url: str, reference: Reference) -> bool:
    """Whether the reference lies in the userinfo or in the value of a parameter that is hidden."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return False
    authority_start = scheme_end + 3
    ends = [i for i in (url.find(c, authority_start) for c in "/?#") if i >= 0]
    authority_end = min(ends) if ends else len(url)
    at = url.rfind("@", authority_start, authority_end)
    if authority_start <= reference.start and reference.end <= at:
        return True
    query = url.find("?", authority_start)
    if query < 0 or reference.start < query:
        return False
    fragment = url.find("#", query)
    if fragment >= 0 and reference.end > fragment:
        return False
    separators = [url.rfind(c, query, reference.start) for c in "?&;"]
    parameter = url[max(separators) + 1:reference.start]
    name, equals, _value = parameter.partition("=")
    return bool(equals) and not is_harmless(name, "x")


def file_problems(camera: CameraConfig, folders: Sequence[Path]) -> list[str]:
    """Why this file camera is outside the folders the API may name (symlinks resolved)."""
    target = Path(os.path.realpath(camera.file_path))
    if any(target.is_relative_to(folder) for folder in folders):
        return []
    where = ", ".join(str(f) for f in folders) if folders else "none: the service runs without a config file"
    return [(
        f"a file camera sent through the API must be in an allowed folder ({where}); list more "
        f"in {SETTING}.file_folders"
    )]


def allowed_folders(settings: CameraApiConfig, config_path: Path | None) -> list[Path]:
    """`file_folders` resolved (relative ones against the config file's folder), or that folder."""
    base = Path(os.path.realpath(config_path)).parent if config_path is not None else None
    folders = []
    for folder in settings.file_folders:
        if not folder.is_absolute():
            if base is None:
                continue
            folder = base / folder
        folders.append(Path(os.path.realpath(folder)))
    if not settings.file_folders and base is not None:
        folders.append(base)
    return folders


def is_listener(url: str) -> bool:
    """Whether reading `url` makes the service listen for a sender instead of connecting."""
    parts = urlsplit(url)
    if parts.scheme.lower() in LISTENER_SCHEMES:
        return True
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        name = unquote(name).lower()
        if name in LISTENER_PARAMETERS and value.lower() not in ("0", "false", "no", "off"):
            return True
        if name == "mode" and value.lower() in LISTENER_MODES:
            return True
    if parts.query.lower() in LISTENER_PARAMETERS:  # `?listen` without a value
        return True
    address = _address(parts.hostname or "")
    return address is not None and address.is_unspecified


def stream_problems(
    camera: CameraConfig, settings: CameraApiConfig, schemes: Iterable[str]
) -> list[str]:
    """Why the API may not point a camera at this stream (blocking: resolves host names)."""
    scheme = camera.scheme
    permitted = set(settings.stream_schemes) or {s for s in schemes if s not in FILE_SCHEMES}
    if scheme not in permitted:
        return [(
            f"scheme '{scheme}' is not one the API may use ({', '.join(sorted(permitted))}); "
            f"list it in {SETTING}.stream_schemes"
        )]
    if is_listener(camera.url) and not settings.allow_listeners:
        return [(
            "this URL makes the service listen for a sender (udp://, ?listen, mode=listener or "
            f"an unspecified address); set {SETTING}.allow_listeners: true to accept it"
        )]
    host = (urlsplit(camera.url).hostname or "").rstrip(".").lower()
    if not host:
        return ["the API accepts a stream only by a URL that names its host"]
    any_host = ANY_HOST in settings.stream_hosts
    listed_names = {
        h for h in settings.stream_hosts if h != ANY_HOST and "/" not in h and _address(h) is None
    }
    if host in listed_names:
        return []
    networks = [_network(h) for h in settings.stream_hosts if h != ANY_HOST and h not in listed_names]
    try:
        addresses = resolve(host)
    except OSError as exc:
        return [f"host '{host}' does not resolve ({exc.strerror or exc}); nothing was checked"]
    for address in addresses:
        listed = any(address in network for network in networks)
        if not any_host and not listed:
            return [f"host '{host}' is not in {SETTING}.stream_hosts"]
        kind = _special(address)
        if kind is not None and not listed:
            return [(
                f"host '{host}' is {kind} address ({address}); list it in {SETTING}.stream_hosts "
                "to let the API point cameras at it"
            )]
    return []


def resolve(host: str) -> list[IpAddress]:
    """The addresses `host` stands for: itself when it is an address, else what it resolves to
    (also forms such as `2130706433` or `0x7f.1`, which the resolver reads as addresses)."""
    address = _address(host)
    if address is not None:
        return [address]
    found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    resolved = [_address(str(entry[4][0])) for entry in found]
    return [a for a in resolved if a is not None]


def _address(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(text: str) -> IpNetwork:
    return ipaddress.ip_network(text, strict=False)


def _special(address: IpAddress) -> str | None:
    if address.is_loopback:
        return "a loopback"
    if address.is_unspecified:
        return "an unspecified"
    if address.is_link_local:
        return "a link-local"
    return None
