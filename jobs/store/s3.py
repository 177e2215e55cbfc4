"""The S3 backend: objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2), through django-storages.

Writes go through Django's storage API (`S3Storage.save`, boto3's managed transfer: multipart above 8 MB,
and an object appears under its key only once the whole upload completed, so an interrupted upload never
leaves a half-written object behind a final name). Reads, listings and deletes use the storage's boto3
client. Every botocore failure becomes one of the store's three errors, with a message an operator can act on.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from django.core.files import File
from django.core.files.base import ContentFile

from jobs.pipeline.store import ArtifactMissing, ArtifactStore, StoreRefused, StoreUnavailable, check_key

# Codes meaning "we are not let in": wrong keys, no permission, no such bucket. Retrying cannot fix them.
REFUSED_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "AllAccessDisabled", "NoSuchBucket",
    "InvalidBucketName", "AuthorizationHeaderMalformed", "InvalidToken", "ExpiredToken", "AccountProblem",
    "403", "Forbidden",
})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
# One boto3 client per process and storage: django-storages keeps one *per thread*, and making one costs
# botocore's model loading (about a second on a busy machine), which a web process answering downloads from
# a pool of threads paid again and again. boto3 clients (unlike resources) are safe to share between threads.
_clients: dict[tuple[int, int], Any] = {}
_clients_lock = threading.Lock()


class S3Store(ArtifactStore):
    backend = "s3"

    def __init__(self, storage: Any) -> None:
        self.storage = storage  # storages.backends.s3.S3Storage

    @property
    def client(self) -> Any:
        key = (os.getpid(), id(self.storage))  # a forked child makes its own: connections are not shared
        client = _clients.get(key)
        if client is None:
            with _clients_lock:
                client = _clients.setdefault(key, self.storage.connection.meta.client)
        return client

    @property
    def bucket(self) -> str:
        return self.storage.bucket_name

    def where(self) -> str:
        return f"bucket {self.bucket!r} at {self.storage.endpoint_url or 'AWS S3'}"

    @contextlib.contextmanager
    def _errors(self, op: str, key: str = "") -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, op, key) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StoreRefused(f"the artifact store has no credentials: set AWS_ACCESS_KEY_ID and "
                               f"AWS_SECRET_ACCESS_KEY ({self.where()})", detail=str(exc)) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StoreUnavailable(f"the artifact store is unreachable ({self.where()}): {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"the artifact store failed to {op} ({self.where()}): {exc}") from exc
        except Exception as exc:
            # boto3's transfer manager wraps a ClientError in S3UploadFailedError / RetriesExceededError.
            if type(exc).__module__.startswith(("boto3", "s3transfer")):
                refused = next((code for code in REFUSED_CODES if f"({code})" in str(exc)), None)
                if refused:
                    raise self._refused(refused, str(exc)) from exc
                raise StoreUnavailable(f"the artifact store failed to {op} ({self.where()}): {exc}") from exc
            raise

    def _client_error(self, exc: ClientError, op: str, key: str) -> Exception:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in MISSING_CODES and key:
            return ArtifactMissing(f"{key.rsplit('/', 1)[-1]} is not stored (deleted or expired)", detail=key)
        if code in MISSING_CODES:  # a call about the bucket itself (HeadBucket answers a bare 404)
            return self._refused("NoSuchBucket", str(exc))
        if code in REFUSED_CODES or status == 403:
            return self._refused(code or str(status), str(exc))
        if status >= 500 or status in (408, 429) or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable"):
            return StoreUnavailable(f"the artifact store answered {code or status} to {op} ({self.where()})")
        return StoreRefused(f"the artifact store refused to {op} ({code or status}) ({self.where()})",
                            detail=str(exc))

    def _refused(self, code: str, detail: str) -> StoreRefused:
        if code in ("NoSuchBucket", "InvalidBucketName"):
            hint = "check AWS_STORAGE_BUCKET_NAME (the bucket must exist)"
        else:
            hint = "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions"
        return StoreRefused(f"the artifact store refused our credentials ({code}): {hint}; {self.where()}",
                            detail=detail)

    def _save(self, key: str, content: File, content_type: str) -> int:
        content.content_type = content_type  # S3Storage sends it as the object's Content-Type
        with self._errors("upload", key):
            self.storage.save(check_key(key), content)
        return int(content.size)

    def put_file(self, key: str, path: Path, content_type: str) -> int:
        with open(path, "rb") as handle:
            return self._save(key, File(handle, name=key), content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        return self._save(key, ContentFile(data, name=key), content_type)

    def read_bytes(self, key: str) -> bytes:
        with self._errors("download", key):
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()

    def download(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("download", key):
            # The transfer manager writes a temporary file and renames it, so `dest` is whole or absent.
            self.client.download_file(self.bucket, check_key(key), str(dest))
        return dest

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ArtifactMissing:
            return False
        return True

    def size(self, key: str) -> int:
        with self._errors("look up", key):
            return int(self.client.head_object(Bucket=self.bucket, Key=check_key(key))["ContentLength"])

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=check_key(prefix) + "/")
            for page in pages:
                found += [item["Key"] for item in page.get("Contents", ())]
        return sorted(found)

    def delete(self, keys: list[str]) -> int:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": check_key(key)} for key in keys[start:start + DELETE_BATCH]]
            with self._errors("delete"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StoreRefused(f"the artifact store refused to delete {len(answer['Errors'])} objects "
                                   f"({first.get('Code')}) ({self.where()})", detail=str(answer["Errors"][:5]))
        return len(keys)

    def delete_prefix(self, prefix: str) -> int:
        return self.delete(self.keys(prefix))

    def presigned_url(self, key: str, *, ttl_s: int, content_type: str, filename: str) -> str | None:
        # Signing is local (no request), so this cannot fail on a store that is down.
        params = {"Bucket": self.bucket, "Key": check_key(key), "ResponseContentType": content_type,
                  "ResponseContentDisposition": f'inline; filename="{filename}"'}
        with self._errors("sign a URL", key):
            return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(ttl_s))

    def check(self, timeout_s: float = 2.0) -> None:
        # Its own client: a health probe must answer in seconds, not after the stages' timeouts and retries.
        from botocore.config import Config

        config = self.storage.client_config.merge(Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                                                         retries={"max_attempts": 1, "mode": "standard"}))
        with self._errors("reach the bucket"):
            client = self.storage._create_session().client(
                "s3", region_name=self.storage.region_name, endpoint_url=self.storage.endpoint_url,
                use_ssl=self.storage.use_ssl, verify=self.storage.verify, config=config)
            client.head_bucket(Bucket=self.bucket)
