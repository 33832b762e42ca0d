"""A registry of named factories: how a configuration's words (a URL scheme, a detector family, a
stage, a sink) become components, without the pipeline naming a concrete class.

A registry is an ordinary object owned by whoever assembles the service (`streamer/assembly.py`),
not module state: a test or an embedding application builds its own and adds to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no entry was registered for; the message lists what is known."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Entries by name, in registration order (the order stages run in)."""

    def __init__(self, what: str) -> None:
        self.what = what  # "camera URL scheme", "detector family", ... for messages
        self._entries: dict[str, T] = {}

    def register(self, names: str | tuple[str, ...], entry: T, *, before: str | None = None) -> T:
        """Add `entry` under each of `names`; `before` places it ahead of an existing entry."""
        for name in (names,) if isinstance(names, str) else names:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' is already registered")
            if before is None:
                self._entries[name] = entry
                continue
            if before not in self._entries:
                raise UnknownName(self._unknown(before))
            items = list(self._entries.items())
            at = [key for key, _ in items].index(before)
            self._entries = dict([*items[:at], (name, entry), *items[at:]])
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def names(self) -> list[str]:
        return list(self._entries)

    def _unknown(self, name: str) -> str:
        known = [n for n in self._entries if n]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown {self.what} '{name}' (known: {', '.join(known) or 'none'}){hint}"
