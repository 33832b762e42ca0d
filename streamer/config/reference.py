"""The configuration reference, generated from the models so it never drifts from the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from streamer.config.root import StreamerConfig


def _type_name(annotation: Any) -> str:
    if getattr(annotation, "__origin__", None) is Literal:
        return " \\| ".join(repr(a) for a in annotation.__args__)
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation)
    for module in ("typing.", "pathlib.", "pydantic.types."):
        text = text.replace(module, "")
    return text.replace("|", "\\|")


def _plain(value: Any) -> str:
    return str(value) if isinstance(value, Path) else repr(value)


def reference_markdown() -> str:
    """The configuration reference, generated from the models so it never drifts from the code."""
    lines = ["# Configuration reference", "", "Generated from `streamer/config/` "
             "(`python -m streamer.config > docs/configuration.md`).", "",
             "Paths: a relative path, written or default, is relative to the folder of the config "
             "file (`~` is the user's home). Command-line options such as `--repository` are "
             "relative to the working directory.", ""]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows, nested = [], []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            args = getattr(annotation, "__args__", ())
            inner = next(
                (a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )
            key = f"{prefix}{name}"
            if inner is not None:
                suffix = "[]" if getattr(annotation, "__origin__", None) is list else ""
                nested.append((inner, f"{key}{suffix}.", field.description or ""))
                continue
            default = field.get_default(call_default_factory=True)
            shown = "required" if field.is_required() else f"`{_plain(default)}`"
            rows.append(f"| `{key}` | {_type_name(annotation)} | {shown} | {field.description or ''} |")
        if rows:
            lines.extend(["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        for inner, child_prefix, description in nested:
            lines.extend([f"## `{child_prefix.rstrip('.')}`", "", description, ""])
            walk(inner, child_prefix)

    walk(StreamerConfig, "")
    return "\n".join(lines).rstrip() + "\n"

