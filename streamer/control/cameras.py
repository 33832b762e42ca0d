"""`CameraControl`: the one owner of the running camera set and of the config file it came from.

A change is validated with the config models (the loader's one-line errors), written to the file
(when the service has one) and only then applied to the pipeline: a refused change leaves the
file, the pipeline and every other camera as they were. Changes run one at a time (a lock).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from streamer.config import (
    CameraConfig,
    ConfigError,
    Registered,
    StreamerConfig,
    format_loc,
    load_config,
    resolve_relative_paths,
    validate_data,
)
from streamer.control import rules
from streamer.control.document import ConfigDocument, MemoryDocument, remove_interrupted_writes
from streamer.core.redaction import url_secrets

log = logging.getLogger(__name__)

SECRET_HINT = (
    "credentials in a URL sent through the API (user:password@, a query value other than "
    "harmless ones such as channel or subtype, an RTMP stream key) are not written to the config "
    "file; send them as ${ENV_VAR} references set in the service's environment and listed in "
    "dashboard.api.env_allowed (e.g. rtsp://user:${CAM_PASSWORD}@host/stream), or set "
    "dashboard.api.store_secrets: true"
)


class ChangeRefused(Exception):
    """A change that was not made: HTTP-like status and one line per problem."""

    def __init__(self, status: int, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.status = status
        self.lines = lines


class CameraRunner(Protocol):
    """What the control layer needs of the pipeline."""

    async def add_camera(self, camera: CameraConfig) -> None: ...
    async def remove_camera(self, name: str) -> bool: ...
    async def update_camera(self, camera: CameraConfig) -> None: ...


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (("added", self.added), ("removed", self.removed),
                                ("changed", self.changed))
            if names
        ]
        text = "; ".join(parts) if parts else "no camera changed"
        if self.restart_needed:
            text += (
                f"; changed sections that need a restart to take effect: "
                f"{', '.join(self.restart_needed)}"
            )
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "restart_needed": self.restart_needed,
            "message": self.message,
        }


def stored_secrets(url: Any) -> list[str]:
    """Credentials written literally in a URL (a `${ENV}` reference is fine: it is no secret)."""
    if not isinstance(url, str):
        return []
    return [s for s in url_secrets([url]) if "${" not in unquote(s)]


class CameraControl:
    """add/update/remove/set_enabled/reload; attach the pipeline (and listeners) before use."""

    def __init__(
        self,
        config: StreamerConfig,
        path: Path | None,
        env: dict[str, str] | None = None,
        registered: Registered | None = None,
    ) -> None:
        self.config = config
        self.registered = registered  # URL schemes and detector families the service can build
        self.path = path
        self.env = env
        self.settings = config.dashboard.api
        self._runner: CameraRunner | None = None
        self._listeners: list[Callable[[Sequence[str]], None]] = []
        self._lock = asyncio.Lock()
        if path is not None:
            for leftover in remove_interrupted_writes(path):
                log.info("removed %s, left by a write of %s that was interrupted", leftover, path)

    def attach(self, runner: CameraRunner) -> None:
        self._runner = runner

    def on_change(self, listener: Callable[[Sequence[str]], None]) -> None:
        """`listener(urls)` after every applied change (the URLs of cameras that were started)."""
        self._listeners.append(listener)

    def camera(self, name: str) -> CameraConfig | None:
        return next((c for c in self.config.cameras if c.name == name), None)

    # -- changes --------------------------------------------------------------------------------

    async def add(
        self, settings: Mapping[str, Any], who: str = "internal", from_client: bool = False
    ) -> CameraConfig:
        """`from_client`: sent through the API (or MQTT), so bound by `dashboard.api`'s rules."""
        async with self._lock:
            runner = self._running()
            name = settings.get("name")
            document = await asyncio.to_thread(self._document)  # file I/O off the loop
            if isinstance(name, str) and (self.camera(name) or name in document.names()):
                raise ChangeRefused(409, [f"cameras: a camera named '{name}' already exists"])
            index = document.append_camera(settings)
            if from_client:
                self._refuse_environment(index, settings)
            self._refuse_secrets(index, settings)
            config = self._validate(document)
            camera = config.cameras[index]
            if from_client:
                await self._refuse_target(index, camera)
            await asyncio.to_thread(self._save, document)
            self.config.cameras = [*self.config.cameras, camera]
            await _applied(runner.add_camera(camera))
            log.info("camera %s added (%s) by %s", camera.name, _summary(settings), who)
            self._changed([camera.url])
            return camera

    async def update(
        self, name: str, changes: Mapping[str, Any], who: str = "internal", from_client: bool = False
    ) -> CameraConfig:
        async with self._lock:
            runner = self._running()
            current = self.camera(name)
            document = await asyncio.to_thread(self._document)  # file I/O off the loop
            index = document.index_of(name)
            if current is None or index is None:
                raise ChangeRefused(404, [f"cameras: no camera named '{name}'"])
            new_name = changes.get("name", name)
            if new_name != name and isinstance(new_name, str) and (
                self.camera(new_name) or new_name in document.names()
            ):
                raise ChangeRefused(409, [f"cameras: a camera named '{new_name}' already exists"])
            document.update_camera(index, changes)
            if from_client:
                self._refuse_environment(index, changes)
            self._refuse_secrets(index, changes)
            config = self._validate(document)
            camera = config.cameras[index]
            if from_client and changes.get("url") is not None:
                await self._refuse_target(index, camera)
            if camera.model_dump() == current.model_dump():
                return current  # nothing to change (e.g. ON for an enabled camera): no restart
            await asyncio.to_thread(self._save, document)
            self.config.cameras = [camera if c.name == name else c for c in self.config.cameras]
            if camera.name != name:
                await _applied(runner.remove_camera(name))
                await _applied(runner.add_camera(camera))
            else:
                await _applied(runner.update_camera(camera))
            log.info("camera %s changed (%s) by %s", name, _summary(changes), who)
            self._changed([camera.url])
            return camera

    async def set_enabled(
        self, name: str, enabled: bool, who: str = "internal", from_client: bool = False
    ) -> CameraConfig:
        return await self.update(name, {"enabled": enabled}, who, from_client)

    async def remove(self, name: str, who: str = "internal") -> None:
        async with self._lock:
            runner = self._running()
            document = await asyncio.to_thread(self._document)  # file I/O off the loop
            index = document.index_of(name)
            if self.camera(name) is None or index is None:
                raise ChangeRefused(404, [f"cameras: no camera named '{name}'"])
            if len(self.config.cameras) <= 1:
                raise ChangeRefused(422, [
                    f"cameras: '{name}' is the last camera and a configuration needs at least "
                    "one; disable it instead (enabled: false)"
                ])
            document.remove_camera(index)
            self._validate(document)
            await asyncio.to_thread(self._save, document)
            self.config.cameras = [c for c in self.config.cameras if c.name != name]
            await _applied(runner.remove_camera(name))
            log.info("camera %s removed by %s", name, who)
            self._changed([])

    async def reload(self, who: str = "internal") -> ReloadReport:
        """Re-read the file and apply only the camera differences; other sections are reported."""
        async with self._lock:
            runner = self._running()
            if self.path is None:
                raise ChangeRefused(409, ["reload: the service was not started from a file"])
            try:
                new = load_config(self.path, self.env, self.registered)
            except ConfigError as exc:
                raise ChangeRefused(422, exc.lines) from None
            old = self.config
            report = ReloadReport()
            old_cameras = {c.name: c for c in old.cameras}
            new_cameras = {c.name: c for c in new.cameras}
            report.removed = [n for n in old_cameras if n not in new_cameras]
            report.added = [n for n in new_cameras if n not in old_cameras]
            report.changed = [
                n for n in new_cameras
                if n in old_cameras and new_cameras[n].model_dump() != old_cameras[n].model_dump()
            ]
            report.restart_needed = [
                section for section in StreamerConfig.model_fields
                if section != "cameras" and _dumped(getattr(old, section)) != _dumped(getattr(new, section))
            ]
            for name in report.removed:
                await runner.remove_camera(name)
            for name in report.changed:
                await runner.update_camera(new_cameras[name])
            for name in report.added:
                await runner.add_camera(new_cameras[name])
            self.config.cameras = list(new.cameras)
            level = logging.WARNING if report.restart_needed else logging.INFO
            log.log(level, "config reloaded by %s: %s", who, report.message)
            self._changed([new_cameras[n].url for n in report.added + report.changed])
            return report

    # -- steps ----------------------------------------------------------------------------------

    def _running(self) -> CameraRunner:
        if self._runner is None:
            raise ChangeRefused(503, ["cameras: the pipeline is not running yet; try again"])
        return self._runner

    def _document(self) -> ConfigDocument | MemoryDocument:
        """The file as it is now (an operator may have edited it since); without a file, the
        running configuration (changes are then not persisted)."""
        if self.path is None:
            return MemoryDocument(self.config)
        try:
            return ConfigDocument.read(self.path)
        except Exception as exc:
            raise ChangeRefused(409, [
                f"{self.path}: cannot read the config file to change it: {exc}"
            ]) from None

    def _refuse_secrets(self, index: int, settings: Mapping[str, Any]) -> None:
        if self.path is None or self.settings.store_secrets or not stored_secrets(settings.get("url")):
            return
        raise ChangeRefused(422, [f"{format_loc(('cameras', index, 'url'))}: {SECRET_HINT}"])

    def _refuse_environment(self, index: int, settings: Mapping[str, Any]) -> None:
        """`${...}` in a client's change: checked before validation reads the environment, so
        that no answer tells whether a variable is set."""
        problems = rules.environment_problems(settings, self.settings.env_allowed)
        if problems:
            raise ChangeRefused(422, [
                f"{format_loc(('cameras', index, *key.split('.')))}: {problem}" for key, problem in problems
            ])

    async def _refuse_target(self, index: int, camera: CameraConfig) -> None:
        """A client's camera may point only where the operator allowed (resolving names blocks)."""
        if camera.is_file:
            problems = rules.file_problems(camera, rules.allowed_folders(self.settings, self.path))
        else:
            schemes = self.registered.url_schemes if self.registered is not None else rules.DEFAULT_SCHEMES
            problems = await asyncio.to_thread(rules.stream_problems, camera, self.settings, schemes)
        if problems:
            where = format_loc(("cameras", index, "url"))
            raise ChangeRefused(422, [f"{where}: {problem}" for problem in problems])

    def _validate(self, document: ConfigDocument | MemoryDocument) -> StreamerConfig:
        try:
            config = validate_data(document.plain(), self.env, self.registered)
        except ConfigError as exc:
            raise ChangeRefused(422, exc.lines) from None
        if self.path is not None:
            resolve_relative_paths(config, self.path)
        return config

    def _save(self, document: ConfigDocument | MemoryDocument) -> None:
        try:
            document.save()
        except OSError as exc:
            raise ChangeRefused(409, [
                f"{self.path}: cannot write the config file: {exc.strerror or exc}; nothing changed"
            ]) from None

    def _changed(self, urls: Sequence[str]) -> None:
        for listener in self._listeners:
            try:
                listener(urls)
            except Exception:
                log.exception("camera change listener failed")


async def _applied(change: Awaitable[Any]) -> None:
    """Apply a saved change to the pipeline; a pipeline that is stopping can no longer take it."""
    try:
        await change
    except RuntimeError as exc:
        raise ChangeRefused(503, [
            f"cameras: not applied ({exc}); the change is saved and applies at the next start"
        ]) from None


def _dumped(section: Any) -> Any:
    dump = getattr(section, "model_dump", None)
    return dump(mode="json") if dump is not None else section


def _summary(settings: Mapping[str, Any]) -> str:
    """The keys a change named, never their values (a URL may hold a password)."""
    return ", ".join(sorted(str(k) for k in settings)) or "nothing"
