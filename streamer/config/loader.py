"""Reading a configuration file: YAML, `${ENV}` interpolation, validation, one line per problem.

Every problem is reported as one line `FILE:LINE: key.path: what is wrong`, so an operator can go
straight to it. `${VAR}` / `${VAR:-default}` in any string is replaced from the environment, which
keeps passwords out of the file.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from streamer.config.root import DuplicateCameraName, StreamerConfig


class ConfigError(Exception):
    """Configuration problems, one line each: `FILE:LINE: key.path: message`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


Loc = tuple[str | int, ...]
_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_map(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    """Remember the 1-based line of every key path, for messages an operator can act on."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*loc, str(key_node.value))
            _line_map(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*loc, index), lines)


def _interpolate(value: Any, loc: Loc, env: dict[str, str], missing: list[tuple[Loc, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), env, missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append((loc, name))
        return ""

    return _ENV_PATTERN.sub(replace, value)


def _describe(error: Any) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind in {"value_error", "assertion_error"}:
        return loc, message
    return loc, f"{message} (got {error.get('input')!r})"


def _suggest(loc: Loc) -> str:
    """For an unknown key, name the closest valid key of that section."""
    model: Any = StreamerConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type)]
        model = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_config(
    text: str, source: str = "<config>", env: dict[str, str] | None = None
) -> StreamerConfig:
    """Parse YAML text into a validated config, or raise ConfigError with one line per problem."""
    env = dict(os.environ) if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: expected a mapping with a 'cameras' list at the top level"])
    lines: dict[Loc, int] = {}
    if root is not None:
        _line_map(root, (), lines)

    def line_of(loc: Loc) -> str:
        for end in range(len(loc), -1, -1):
            if loc[:end] in lines:
                return f"{source}:{lines[loc[:end]]}"
        return source

    missing: list[tuple[Loc, str]] = []
    data = _interpolate(raw, (), env, missing)
    if missing:
        raise ConfigError(
            [f"{line_of(loc)}: {format_loc(loc)}: environment variable {name} is not set"
             for loc, name in missing]
        )
    try:
        return StreamerConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe(error)
            context = error.get("ctx") or {}
            inner = context.get("error")
            if isinstance(inner, DuplicateCameraName):
                loc = inner.loc
            if message == "unknown key":
                message += _suggest(loc)
            problems.append(f"{line_of(loc)}: {format_loc(loc)}: {message}")
        raise ConfigError(problems) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> StreamerConfig:
    """Load a YAML file; relative camera file paths are taken relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    config = parse_config(text, str(path), env)
    base = path.resolve().parent
    # Paths the operator wrote are relative to the file; defaults stay the project's own.
    repository = config.triton.model_repository
    if "model_repository" in config.triton.model_fields_set and not repository.is_absolute():
        config.triton.model_repository = Path(os.path.normpath(base / repository))
    store = config.identities.faces_store
    if "faces_store" in config.identities.model_fields_set and not store.is_absolute():
        config.identities.faces_store = Path(os.path.normpath(base / store))
    for camera in config.cameras:
        if camera.is_file and not camera.file_path.is_absolute():
            camera.url = os.path.normpath(base / camera.file_path)
    return config
