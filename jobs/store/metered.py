"""Counting the artifact store's work for /metrics: calls by operation, bytes each way, failures by kind."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from jobs.pipeline.store import ArtifactMissing, ArtifactStore, StoreRefused, StoreUnavailable

T = TypeVar("T")
ERROR_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (ArtifactMissing, "missing"), (StoreRefused, "refused"), (StoreUnavailable, "unavailable"))


class MeteredStore(ArtifactStore):
    """Wraps a backend: the same calls, each counted in ops.metrics (which never raises)."""

    def __init__(self, inner: ArtifactStore) -> None:
        self.inner = inner
        self.backend = inner.backend

    def _call(self, op: str, call: Callable[[], T], nbytes: Callable[[T], int | None] = lambda _: None) -> T:
        from ops import metrics

        try:
            value = call()
        except Exception as exc:
            kind = next((name for error, name in ERROR_KINDS if isinstance(exc, error)), "other")
            metrics.count_store_error(self.backend, op, kind)
            raise
        metrics.count_store_op(self.backend, op, nbytes(value))
        return value

    def put_file(self, key: str, path: Path, content_type: str) -> int:
        return self._call("upload", lambda: self.inner.put_file(key, path, content_type), lambda n: n)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        return self._call("upload", lambda: self.inner.put_bytes(key, data, content_type), lambda n: n)

    def read_bytes(self, key: str) -> bytes:
        return self._call("download", lambda: self.inner.read_bytes(key), len)

    def download(self, key: str, dest: Path) -> Path:
        return self._call("download", lambda: self.inner.download(key, dest), lambda p: p.stat().st_size)

    def exists(self, key: str) -> bool:
        return self._call("exists", lambda: self.inner.exists(key))

    def size(self, key: str) -> int:
        return self._call("size", lambda: self.inner.size(key))

    def keys(self, prefix: str) -> list[str]:
        return self._call("list", lambda: self.inner.keys(prefix))

    def delete_prefix(self, prefix: str) -> int:
        return self._call("delete", lambda: self.inner.delete_prefix(prefix))

    def delete(self, keys: list[str]) -> int:
        return self._call("delete", lambda: self.inner.delete(keys))

    def presigned_url(self, key: str, *, ttl_s: int, content_type: str, filename: str) -> str | None:
        return self._call("presign", lambda: self.inner.presigned_url(key, ttl_s=ttl_s, content_type=content_type,
                                                                       filename=filename))

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def check(self) -> None:
        self._call("check", self.inner.check)
