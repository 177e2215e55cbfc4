"""Artifact records, atomic file writes and the per-stage manifests that let stages run in separate tasks."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PermanentError

ARTIFACT_KINDS = ("scenes", "image", "audio", "video", "captions")
MANIFEST_DIR = "manifests"


@dataclass(frozen=True)
class Artifact:
    """One file produced by a stage."""

    path: Path
    kind: str  # one of ARTIFACT_KINDS
    content_type: str
    bytes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, relative_to: Path) -> dict[str, Any]:
        """JSON-ready description with a POSIX path relative to the job's output directory."""
        return {
            "kind": self.kind,
            "path": self.path.relative_to(relative_to).as_posix(),
            "bytes": self.bytes,
            "content_type": self.content_type,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path) -> Artifact:
        """Inverse of `to_dict`, resolving the path against `base`."""
        return cls(
            path=base / data["path"],
            kind=data["kind"],
            content_type=data["content_type"],
            bytes=int(data["bytes"]),
            meta=dict(data.get("meta") or {}),
        )


def make_artifact(path: Path, kind: str, content_type: str, meta: dict[str, Any] | None = None) -> Artifact:
    """Describe an existing file, taking its size from disk."""
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    return Artifact(path=path, kind=kind, content_type=content_type, bytes=path.stat().st_size, meta=meta or {})


def partial_path(final: Path) -> Path:
    """A unique hidden sibling of `final` that can never be mistaken for the finished file."""
    return final.with_name(f".{final.stem}.{secrets.token_hex(4)}.partial")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path in `final`'s directory; move it into place only if the block succeeds.

    Same directory means same filesystem, so `os.replace` is atomic and readers see old or new, never half.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    try:
        yield tmp
        if not tmp.exists():
            raise PermanentError(f"could not write {final.name}", detail=f"{tmp} was not created")
        os.replace(tmp, final)
    finally:
        # Only left behind when the block failed or was cancelled.
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write `data` to `final` atomically (fsynced before the rename)."""
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(final: Path, text: str) -> None:
    """Write UTF-8 `text` to `final` atomically."""
    atomic_write_bytes(final, text.encode("utf-8"))


def atomic_write_json(final: Path, data: Any) -> None:
    """Write `data` as pretty, key-sorted UTF-8 JSON atomically (sorted keys keep reruns byte-identical)."""
    atomic_write_text(final, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def manifest_path(out_dir: Path, kind: str) -> Path:
    """Where the manifest listing a stage's artifacts of `kind` lives."""
    return out_dir / MANIFEST_DIR / f"{kind}.json"


def write_manifest(out_dir: Path, kind: str, artifacts: Iterable[Artifact]) -> None:
    """Record a stage's artifacts; written last, so its presence means the stage completed."""
    items = [artifact.to_dict(out_dir) for artifact in artifacts]
    atomic_write_json(manifest_path(out_dir, kind), {"kind": kind, "artifacts": items})


def load_artifacts(out_dir: Path, kind: str) -> list[Artifact]:
    """Artifacts a completed stage produced; PermanentError if that stage has not completed."""
    path = manifest_path(out_dir, kind)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PermanentError(f"no {kind} artifacts yet; the stage producing them has not completed") from None
    except (OSError, ValueError) as exc:
        raise PermanentError(f"the {kind} manifest is unreadable", detail=str(exc)) from exc
    return [Artifact.from_dict(item, out_dir) for item in data.get("artifacts", [])]


def remove_stale(directory: Path, pattern: str, keep: Iterable[Path]) -> None:
    """Delete files matching `pattern` not in `keep`, so a rerun with fewer scenes leaves no orphans."""
    keep_names = {path.name for path in keep}
    for path in directory.glob(pattern):
        if path.name not in keep_names and path.is_file():
            path.unlink(missing_ok=True)
