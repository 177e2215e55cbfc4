"""The local backend: objects are files under one folder (MEDIA_ROOT), for a deployment on one machine."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from .store import ArtifactMissing, ArtifactStore, check_key

PARTIAL_SUFFIX = ".partial"


class LocalStore(ArtifactStore):
    """Keys are paths relative to `root`; writes go to a hidden sibling first and are renamed into place."""

    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _write(self, key: str, fill) -> int:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Hidden and same folder: never served (the download view refuses dot-names), and the rename is atomic.
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            fill(tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final.stat().st_size

    def put_file(self, key: str, path: Path, content_type: str) -> int:
        return self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        return self._write(key, lambda tmp: tmp.write_bytes(data))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactMissing(f"{key.rsplit('/', 1)[-1]} is not stored (deleted or expired)", detail=key) from None

    def download(self, key: str, dest: Path) -> Path:
        source = self.path(key)
        if not source.is_file():
            raise ArtifactMissing(f"{key.rsplit('/', 1)[-1]} is not stored (deleted or expired)", detail=key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            # Stored files are only ever replaced by rename, never rewritten, so a hard link is a safe copy.
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        return dest

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise ArtifactMissing(f"{key.rsplit('/', 1)[-1]} is not stored", detail=key) from None

    def keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        found = [path.relative_to(self.root).as_posix() for path in folder.rglob("*")
                 if path.is_file() and not path.name.startswith(".")]
        return sorted(found)

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix)
        count = len(self.keys(prefix))
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def delete(self, keys: list[str]) -> int:
        for key in keys:
            self.path(key).unlink(missing_ok=True)
        return len(keys)

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
