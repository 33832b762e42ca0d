"""Reading a configuration file: YAML, `${ENV}` interpolation, validation, one line per problem.

Every problem is reported as one line `FILE:LINE: key.path: what is wrong`, so an operator can go
straight to it. `${VAR}` / `${VAR:-default}` in any string is replaced from the environment, which
keeps passwords out of the file; a value taken from the environment is never shown in a message.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from streamer.config.base import REGISTERED_CONTEXT, LocatedError, Registered
from streamer.config.root import StreamerConfig
from streamer.core.assets import assets_dir
from streamer.core.redaction import scrub


class ConfigError(Exception):
    """Configuration problems, one line each: `FILE:LINE: key.path: message`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


Loc = tuple[str | int, ...]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_EXPRESSION = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_ENV_OPERATOR = re.compile(r"[-:=?+#%/^,@]+")
ENV_FORMS = "write ${NAME}, ${NAME:-default} or $$ for a literal $"


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


class Interpolation:
    """`${VAR}` / `${VAR:-default}` replaced from the environment, the shell's way.

    `${VAR}` is an error when VAR is unset (set but empty gives ""); `${VAR:-default}` gives the
    default when VAR is unset or empty; `$$` is a literal `$`, as is a `$` not followed by `{`.
    Any other `${...}` (nesting, `${VAR-d}`, `${VAR:=d}`, spaces, an unclosed `${`) is an error
    rather than literal text that would reach a camera as a wrong password. The values taken
    from the environment are remembered per key path, so that no error message shows them.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[Loc, str]] = []
        self.values: dict[Loc, list[str]] = {}

    def apply(self, value: Any, loc: Loc = ()) -> Any:
        if isinstance(value, dict):
            return {k: self.apply(v, (*loc, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v, (*loc, i)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value
        return self._string(value, loc)

    def _string(self, text: str, loc: Loc) -> str:
        out: list[str] = []
        position = 0
        while (start := text.find("$", position)) >= 0:
            out.append(text[position:start])
            if text.startswith("$$", start):
                out.append("$")
                position = start + 2
            elif text.startswith("${", start):
                end = text.find("}", start)
                if end < 0:
                    self.problems.append((loc, f"unclosed '${{' ({ENV_FORMS})"))
                    return text
                out.append(self._expression(text[start + 2:end], loc))
                position = end + 1
            else:
                out.append("$")
                position = start + 1
        out.append(text[position:])
        return "".join(out)

    def _expression(self, inner: str, loc: Loc) -> str:
        match = None if "${" in inner else _ENV_EXPRESSION.fullmatch(inner)
        if match is None:
            self.problems.append((loc, _malformed(inner)))
            return ""
        name, default = match.group("name"), match.group("default")
        value = self.env.get(name)
        if value is not None and (value or default is None):
            self.values.setdefault(loc, []).append(value)
            return value
        if default is not None:
            return default
        self.problems.append((loc, f"environment variable {name} is not set"))
        return ""

    def hidden(self, loc: Loc) -> list[str]:
        """Environment values at `loc`, above it or below it: what a message about `loc` must hide."""
        return [
            value
            for where, values in self.values.items()
            if where[: len(loc)] == loc or loc[: len(where)] == where
            for value in values
            if value
        ]


def _malformed(inner: str) -> str:
    """What is wrong with `${inner}`, without showing a default (it may be a password)."""
    name = _ENV_NAME.match(inner)
    if "${" in inner:
        problem = "nested '${' inside '${...}' is not supported"
    elif inner.strip() != inner and _ENV_EXPRESSION.fullmatch(inner.strip()):
        problem = "spaces inside '${...}'"
    elif name is None:
        problem = "'${...}' needs a variable name of letters, digits and _"
    else:
        operator = _ENV_OPERATOR.match(inner, name.end())
        shown = operator.group(0) if operator else ""
        problem = f"'${{{name.group(0)}{shown}...}}' is not supported"
    return f"{problem} ({ENV_FORMS})"


def _describe(error: Any, show_input: bool = True) -> tuple[Loc, str]:
    """The key path and message of one validation error; the input is shown unless it came from
    the environment (a password in the wrong place must not end up in a log)."""
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
    if not show_input:
        return loc, f"{message} (the value from the environment is not shown)"
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
    text: str,
    source: str = "<config>",
    env: dict[str, str] | None = None,
    registered: Registered | None = None,
) -> StreamerConfig:
    """Parse YAML text into a validated config, or raise ConfigError with one line per problem.

    `registered`: the names the service has components for (URL schemes, detector families);
    given them, validation refuses others."""
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

    return _validate(raw, env, line_of, registered)


def validate_data(
    raw: Any, env: dict[str, str] | None = None, registered: Registered | None = None
) -> StreamerConfig:
    """Validate already-parsed data (e.g. the file with an API change applied) the same way as a
    file, `${ENV}` included; ConfigError lines are `key.path: message`, without file and line."""
    return _validate(raw, dict(os.environ) if env is None else env, None, registered)


def _validate(
    raw: Any,
    env: dict[str, str],
    line_of: Callable[[Loc], str] | None,
    registered: Registered | None,
) -> StreamerConfig:
    def line(loc: Loc, message: str) -> str:
        prefix = f"{line_of(loc)}: " if line_of is not None else ""
        return f"{prefix}{format_loc(loc)}: {message}"

    interpolation = Interpolation(env)
    data = interpolation.apply(raw)
    if interpolation.problems:
        raise ConfigError([line(loc, problem) for loc, problem in interpolation.problems])
    try:
        context = None if registered is None else {REGISTERED_CONTEXT: registered}
        return StreamerConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            context = error.get("ctx") or {}
            inner = context.get("error")
            hidden = interpolation.hidden(tuple(error["loc"]))
            loc, message = _describe(error, show_input=not hidden)
            if isinstance(inner, LocatedError):
                loc = (*tuple(error["loc"]), *inner.loc)
                hidden += interpolation.hidden(loc)
            if message == "unknown key":
                message += _suggest(loc)
            message = scrub(message, hidden) or ""
            problems.append(line(loc, message))
        raise ConfigError(problems) from None


def load_config(
    path: str | Path, env: dict[str, str] | None = None, registered: Registered | None = None
) -> StreamerConfig:
    """Load a YAML file; every relative path in it is taken relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([not_utf8(path, exc)]) from None
    config = parse_config(text, str(path), env, registered)
    resolve_relative_paths(config, path)
    return config


def not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """Where the first byte that is not UTF-8 stands, as file:line:column."""
    before = exc.object[: exc.start]
    line = before.count(b"\n") + 1
    column = exc.start - (before.rfind(b"\n") + 1) + 1
    byte = exc.object[exc.start : exc.start + 1].hex()
    return f"{path}:{line}:{column}: not UTF-8 text (byte 0x{byte}); save the file as UTF-8"


STANDARD_OUTPUT = "-"


def resolve_relative_paths(config: StreamerConfig, path: str | Path) -> None:
    """One rule for paths: relative to the config file's folder, written or default.

    Every `Path` setting in every section is made absolute (a new one is covered without being
    named here), as are the settings that hold a path in a string: a file camera's URL and the
    JSON-lines file. `assets_dir`, when not set, is found from that folder (`core.assets`).
    A config built without a file keeps its relative paths: they are then relative to the
    working directory.
    """
    base = Path(path).resolve().parent
    _absolute_paths(config, base)
    if config.assets_dir is None:
        config.assets_dir = assets_dir(start=base)
    jsonl = config.publishing.jsonl
    if jsonl.path != STANDARD_OUTPUT:
        jsonl.path = str(_against(base, Path(jsonl.path)))
    for camera in config.cameras:
        if camera.is_file and _against(base, camera.file_path) != camera.file_path:
            camera.url = str(_against(base, camera.file_path))


def _against(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def _absolute_paths(section: BaseModel, base: Path) -> None:
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Path):
            absolute = _against(base, value)
            if absolute != value:
                setattr(section, name, absolute)
        elif isinstance(value, BaseModel):
            _absolute_paths(value, base)
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, BaseModel):
                    _absolute_paths(item, base)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    _absolute_paths(item, base)
