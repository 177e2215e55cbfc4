"""Artifact records, the stage's view of the artifact store (StageFiles), and atomic local file writes.

Stages exchange object keys, never paths: each stage records what it stored in a manifest under its
attempt's prefix, and the next stage (possibly on another machine) reads the manifest and fetches the files.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PermanentError
from .local_store import LocalStore
from .store import ArtifactMissing, ArtifactStore, check_key

ARTIFACT_KINDS = ("scenes", "image", "audio", "video", "captions")
MANIFEST_DIR = "manifests"


@dataclass(frozen=True)
class Artifact:
    """One stored file produced by a stage, named by its key in the artifact store."""

    key: str
    kind: str  # one of ARTIFACT_KINDS
    content_type: str
    bytes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file name (last part of the key): "scene_001.png"."""
        return self.key.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (manifests, the plan's result before it gets URLs)."""
        return {"kind": self.kind, "key": self.key, "bytes": self.bytes, "content_type": self.content_type,
                "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        """Inverse of `to_dict`."""
        return cls(key=str(data["key"]), kind=data["kind"], content_type=data["content_type"],
                   bytes=int(data["bytes"]), meta=dict(data.get("meta") or {}))


def check_kind(kind: str) -> str:
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    return kind


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


class StageFiles:
    """What a stage reads and writes: keys under its attempt's `prefix` in `store`, and its own `scratch` folder.

    A stage never shares a folder with another stage: it `fetch`es its inputs into scratch, works there and
    `save`s what it made, each file as soon as it is made. `prefix` is the attempt's own (jobs/locations.py),
    so an attempt never overwrites or deletes what another attempt stored.
    """

    def __init__(self, store: ArtifactStore, prefix: str, scratch: Path) -> None:
        self.store = store
        self.prefix = check_key(prefix)
        self.scratch = Path(scratch)
        self.on_saved: list[Callable[[Artifact], None]] = []  # hooks told of each artifact once it is stored

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}"

    def work_path(self, relative: str) -> Path:
        """A path in scratch to make a file at (its folder exists)."""
        path = self.scratch.joinpath(*relative.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save(self, relative: str, path: Path, kind: str, content_type: str,
             meta: dict[str, Any] | None = None) -> Artifact:
        """Store the scratch file `path` as `prefix/relative`; its Artifact."""
        key = self.key(relative)
        size = self.store.put_file(key, path, content_type)
        return self._saved(Artifact(key, check_kind(kind), content_type, size, meta or {}))

    def save_bytes(self, relative: str, data: bytes, kind: str, content_type: str,
                   meta: dict[str, Any] | None = None) -> Artifact:
        """Store `data` as `prefix/relative`; its Artifact."""
        key = self.key(relative)
        size = self.store.put_bytes(key, data, content_type)
        return self._saved(Artifact(key, check_kind(kind), content_type, size, meta or {}))

    def _saved(self, artifact: Artifact) -> Artifact:
        for hook in self.on_saved:
            hook(artifact)
        return artifact

    def fetch(self, artifact: Artifact | str) -> Path:
        """A local copy of a stored file in scratch (downloaded once per stage)."""
        key = artifact.key if isinstance(artifact, Artifact) else artifact
        dest = self.scratch.joinpath("inputs", *check_key(key).split("/"))
        if not dest.is_file():
            self.store.download(key, dest)
        return dest

    def read_json(self, key: str) -> Any:
        return json.loads(self.store.read_bytes(key).decode("utf-8"))

    def manifest_key(self, kind: str) -> str:
        return self.key(f"{MANIFEST_DIR}/{kind}.json")

    def write_manifest(self, kind: str, artifacts: Iterable[Artifact]) -> None:
        """Record a stage's artifacts; written last, so its presence means the stage completed."""
        data = {"kind": kind, "artifacts": [artifact.to_dict() for artifact in artifacts]}
        self.store.put_bytes(self.manifest_key(kind), json_bytes(data), "application/json")

    def has_manifest(self, kind: str) -> bool:
        return self.store.exists(self.manifest_key(kind))

    def load_artifacts(self, kind: str) -> list[Artifact]:
        """Artifacts a completed stage produced; PermanentError if that stage has not completed."""
        try:
            data = self.read_json(self.manifest_key(kind))
        except ArtifactMissing:
            raise PermanentError(f"no {kind} artifacts yet; the stage producing them has not completed") from None
        except ValueError as exc:
            raise PermanentError(f"the {kind} manifest is unreadable", detail=str(exc)) from exc
        return [Artifact.from_dict(item) for item in data.get("artifacts", [])]

    def with_prefix(self, prefix: str) -> StageFiles:
        """The same store and scratch, reading another prefix (another job's files)."""
        return StageFiles(self.store, prefix, self.scratch)

    @classmethod
    def local(cls, root: Path, prefix: str = "job") -> StageFiles:
        """Files in a LocalStore under `root`/store with scratch in `root`/scratch (tests, benchmarks)."""
        return cls(LocalStore(Path(root) / "store"), prefix, Path(root) / "scratch")


def json_bytes(data: Any) -> bytes:
    """Pretty, key-sorted UTF-8 JSON (sorted keys keep reruns byte-identical)."""
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def load_artifacts(files: StageFiles, kind: str) -> list[Artifact]:
    """`files.load_artifacts(kind)`."""
    return files.load_artifacts(kind)
