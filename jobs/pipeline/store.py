"""The artifact store's interface: what stages, the download view and maintenance may do with stored files.

Files are named by *keys* (`jobs/<job id>/a<attempt>/images/scene_001.png`), never by paths, so a stage
on one machine can hand its output to a stage on another. Two backends implement it: `local_store.LocalStore`
(files under MEDIA_ROOT, one machine) and `jobs.store.s3.S3Store` (an S3-compatible bucket, any number of machines).
Every write is all-or-nothing: a reader sees the whole object under its key or no object at all.
"""
from __future__ import annotations

import abc
from pathlib import Path
from .errors import PermanentError, TransientError


class StoreUnavailable(TransientError):
    """The store did not answer, or answered "try later" (5xx, throttling): retrying may succeed."""


class StoreRefused(PermanentError):
    """The store refused us (credentials, permissions, a missing bucket): an operator has to fix it."""


class ArtifactMissing(PermanentError):
    """The key names no object (deleted, expired, or never finished)."""


def check_key(key: str) -> str:
    """`key` if it is a clean relative key (no empty, `.` or `..` parts, no backslash or NUL); else ValueError."""
    parts = key.split("/")
    if not key or any(part in ("", ".", "..") for part in parts) or "\\" in key or "\x00" in key:
        raise ValueError(f"not a valid artifact key: {key!r}")
    return key


class ArtifactStore(abc.ABC):
    """Stored files by key. Implementations raise StoreUnavailable / StoreRefused / ArtifactMissing."""

    backend: str  # "local" or "s3": metrics labels, /healthz

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Store the file at `path` under `key` (replacing it), all or nothing; returns its size in bytes."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        """Store `data` under `key` (replacing it), all or nothing; returns its size in bytes."""

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object (small ones: manifests, scenes.json)."""

    @abc.abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy the object into the local file `dest` (a stage's scratch space); returns `dest`."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; ArtifactMissing if there is none."""

    @abc.abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix/`, sorted."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix/`; returns how many were deleted."""

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> int:
        """Delete these objects (missing ones are fine); returns how many were asked for."""

    def presigned_url(self, key: str, *, ttl_s: int, content_type: str, filename: str) -> str | None:
        """A URL the client may GET for `ttl_s` seconds without our auth; None when the store has none (local)."""
        return None

    def local_path(self, key: str) -> Path | None:
        """The file holding `key` on this machine, for stores that have one (local), else None."""
        return None

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StoreUnavailable / StoreRefused unless the store answers and lets us in (/healthz)."""

