"""Credentials never leave the process: one place that hides them, used by every surface."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """Hide credentials in a URL before it reaches a log, a metric or a message."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()


def url_secrets(urls: Iterable[str]) -> list[str]:
    """Every raw URL with credentials, and its password, longest first (so URLs go before parts)."""
    found: set[str] = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.password or parts.username:
            found.add(url)
        if parts.password:
            found.add(parts.password)
    return sorted(found, key=len, reverse=True)


def scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    """Remove credentials from free text (error messages) before it leaves the process."""
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
