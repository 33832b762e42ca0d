"""The faces store: enrolled names and face embeddings in one `.npz` file. Biometric data.

The file holds arrays `names` (str), `embeddings` (N x D float32, unit length), `sources` (str:
the image each embedding came from) and `model` (the embedder that produced them).

* Private: the file is written 0600 and a folder the store creates is 0700; opening a store that
  others can read logs a warning (it was written by an older version, or copied carelessly).
* Atomic: a write goes to a temporary file renamed over the old one, so a running service never
  reads half a file written here.
* Serialised: `editing()` holds an exclusive `flock` on a lock file beside the store while it
  re-reads, changes and writes the file, so concurrent `streamer faces enroll/remove` commands
  never lose each other's changes.
* A file that cannot be read (copied half-way, not a store) is `CorruptFaceStore`, one line
  naming the path. When the service reloads a changed file (`refresh_if_changed`) it keeps the
  last good store instead and logs that once per change of the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.identities.gallery import EmbeddingSizeMismatch

log = logging.getLogger(__name__)

FILE_MODE = 0o600
FOLDER_MODE = 0o700
OTHERS_READ = stat.S_IRGRP | stat.S_IROTH
# What numpy raises on a truncated or foreign file (np.load reads members lazily).
READ_ERRORS = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class CorruptFaceStore(ValueError):
    """The store file exists but is not a readable faces store."""


@dataclass(frozen=True)
class FaceMatch:
    name: str
    similarity: float


@dataclass(frozen=True)
class _Contents:
    names: np.ndarray
    sources: np.ndarray
    embeddings: np.ndarray
    model: str


@dataclass(frozen=True)
class _Version:
    """What tells one file from another at the same path: a rename changes the inode."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> _Version | None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        return cls(info.st_mtime_ns, info.st_size, info.st_ino)


def _read(path: Path) -> _Contents:
    """The store's arrays; CorruptFaceStore (one line naming the path) if they cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = _Contents(
                data["names"].astype(str),
                data["sources"].astype(str),
                data["embeddings"].astype(np.float32),
                str(data["model"]),
            )
    except READ_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise CorruptFaceStore(
            f"{path}: not a readable faces store ({reason}); restore it from a backup, or move it "
            "away and enrol the faces again"
        ) from None
    rows = len(contents.names)
    if contents.embeddings.ndim != 2 or len(contents.embeddings) != rows or len(contents.sources) != rows:
        raise CorruptFaceStore(
            f"{path}: not a readable faces store ({rows} names, {len(contents.sources)} sources, "
            f"embeddings of shape {contents.embeddings.shape}); restore it from a backup"
        )
    return contents


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & OTHERS_READ:
        log.warning(
            "faces store %s is readable by other users (mode %04o); it holds biometric data: "
            "chmod 600 %s",
            path,
            mode,
            path,
        )


def _make_folder(folder: Path) -> None:
    """Create the store's folder private (0700); an existing folder is left as it is."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=FOLDER_MODE)
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode is narrowed by the umask, never widened


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive flock on `lock_path`, held until the block ends (released if we die)."""
    _make_folder(lock_path.parent)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


class FaceStore:
    """Names -> face embeddings, kept in one file (see the module docstring)."""

    def __init__(self, path: Path, unreadable_ok: bool = False) -> None:
        """`unreadable_ok` (the service): a file that cannot be read leaves the store empty with
        `problem` set, until a readable file replaces it (`refresh_if_changed`)."""
        self.path = Path(os.path.abspath(path))
        self.problem: str | None = None
        self.names = np.zeros((0,), str)
        self.sources = np.zeros((0,), str)
        self.embeddings = np.zeros((0, 0), np.float32)
        self.model = ""
        self._loaded: _Version | None = None
        self._refused: _Version | None = None  # the unreadable version already reported
        self._dirty = False
        _warn_if_readable_by_others(self.path)
        try:
            self.load()
        except CorruptFaceStore as exc:
            if not unreadable_ok:
                raise
            self._refused, self.problem = _Version.of(self.path), str(exc)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    @property
    def embedding_size(self) -> int | None:
        return int(self.embeddings.shape[1]) if len(self.names) else None

    @property
    def people(self) -> int:
        return len(set(self.names.tolist()))

    def load(self) -> None:
        """Read the file (no file: nobody enrolled); CorruptFaceStore if it cannot be read."""
        version = _Version.of(self.path)
        if version is None:
            self._set(_Contents(np.zeros((0,), str), np.zeros((0,), str), np.zeros((0, 0), np.float32), ""))
        else:
            self._set(_read(self.path))
        self._loaded, self._refused, self._dirty = version, None, False
        self.problem = None

    def _set(self, contents: _Contents) -> None:
        self.names, self.sources = contents.names, contents.sources
        self.embeddings, self.model = contents.embeddings, contents.model

    def refresh_if_changed(self) -> None:
        """Pick up enrolments made while the service runs (one stat call). An unreadable new
        file is logged once and the last good store kept, so faces are still named."""
        version = _Version.of(self.path)
        if version == self._loaded or (version is not None and version == self._refused):
            return
        try:
            self.load()
        except CorruptFaceStore as exc:
            self._refused = version
            log.error("%s; still using the %d people loaded before", exc, self.people)

    @contextlib.contextmanager
    def editing(self) -> Iterator[FaceStore]:
        """Hold the store's lock, re-read the file, and write it back if it was changed: a
        command that read the store earlier must not overwrite what another wrote since."""
        with _locked(self.lock_path):
            self.load()
            yield self
            if self._dirty:
                self.save()

    def save(self) -> None:
        """Write the file atomically, 0600, in a folder created 0700."""
        _make_folder(self.path.parent)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()  # left by a killed writer of the same pid
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)
                np.savez(
                    handle,
                    names=self.names,
                    sources=self.sources,
                    embeddings=self.embeddings,
                    model=np.array(self.model),
                )
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        self._loaded, self._refused, self._dirty = _Version.of(self.path), None, False

    def check_size(self, embedding_size: int, model: str) -> None:
        """Refuse a model whose embeddings cannot be compared with the enrolled ones."""
        if self.embedding_size is not None and self.embedding_size != embedding_size:
            raise EmbeddingSizeMismatch(
                f"{self.path}: enrolled faces are {self.embedding_size}-d embeddings from "
                f"'{self.model}', but model '{model}' produces {embedding_size}-d ones: enrol the "
                "faces again with this model (`streamer faces remove` / `enroll`) or use another "
                "identities.faces_store"
            )

    def add(self, name: str, embeddings: np.ndarray, sources: list[str], model: str) -> None:
        self.check_size(int(embeddings.shape[1]), model)
        current = self.embeddings if len(self.names) else np.zeros((0, embeddings.shape[1]), np.float32)
        self.embeddings = np.concatenate([current, embeddings.astype(np.float32)])
        self.names = np.concatenate([self.names, np.full(len(embeddings), name)])
        self.sources = np.concatenate([self.sources, np.asarray(sources, str)])
        self.model = model
        self._dirty = True

    def remove(self, name: str) -> int:
        keep = self.names != name
        removed = int((~keep).sum())
        self.names, self.sources = self.names[keep], self.sources[keep]
        self.embeddings = self.embeddings[keep]
        self._dirty = self._dirty or removed > 0
        return removed

    def counts(self) -> dict[str, int]:
        names, counts = np.unique(self.names, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def match(self, embedding: np.ndarray, threshold: float) -> FaceMatch | None:
        """The enrolled person most similar to `embedding` (best of their images), if above."""
        if not len(self.names) or embedding.shape != (self.embeddings.shape[1],):
            return None
        similarities = self.embeddings @ embedding
        best = int(np.argmax(similarities))
        similarity = float(similarities[best])
        if similarity < threshold:
            return None
        return FaceMatch(str(self.names[best]), round(similarity, 4))
