"""STORAGES["artifacts"] from the environment: the file system (ARTIFACT_STORAGE=local, the default) or an
S3-compatible bucket through django-storages (ARTIFACT_STORAGE=s3 and the AWS_* settings of CONTRACT.md)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .env import env_float, env_int, env_str

BACKENDS = ("local", "s3")


def backend_name(environ: Mapping[str, str] = os.environ) -> str:
    name = (env_str("ARTIFACT_STORAGE", "local", environ=environ) or "local").strip().lower()
    if name not in BACKENDS:
        raise ImproperlyConfigured(f"ARTIFACT_STORAGE must be local or s3, not {name!r}")
    return name


def aws_settings(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The AWS_* settings (empty values mean "not set"); the bucket is required."""
    values = {name: (env_str(name, "", environ=environ) or "").strip() or None for name in (
        "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_S3_REGION_NAME")}
    if not values["AWS_STORAGE_BUCKET_NAME"]:
        raise ImproperlyConfigured("ARTIFACT_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME (an existing bucket)")
    values["AWS_S3_REGION_NAME"] = values["AWS_S3_REGION_NAME"] or "us-east-1"
    return values


def storage_config(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The STORAGES entry of the artifact store."""
    if backend_name(environ) == "local":
        # No OPTIONS: the location follows MEDIA_ROOT, also when a test overrides it.
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    from botocore.config import Config

    aws = aws_settings(environ)
    addressing = env_str("AWS_S3_ADDRESSING_STYLE", "path", environ=environ) or "path"
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": aws["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": aws["AWS_S3_ENDPOINT_URL"],
            "access_key": aws["AWS_ACCESS_KEY_ID"],
            "secret_key": aws["AWS_SECRET_ACCESS_KEY"],
            "region_name": aws["AWS_S3_REGION_NAME"],
            "file_overwrite": True,  # keys are ours and exact: never renamed to "…_a1b2c3"
            "querystring_auth": True,
            "signature_version": "s3v4",
            # Path-style works with every S3-compatible server (MinIO, Ceph, moto) without wildcard DNS.
            "addressing_style": addressing,
            "client_config": Config(
                # A store that does not answer fails a call in seconds (the task then retries with backoff)
                # instead of hanging a stage; botocore's own retries cover a single dropped connection.
                connect_timeout=env_float("ARTIFACT_STORE_CONNECT_TIMEOUT_S", 5.0, environ=environ),
                read_timeout=env_float("ARTIFACT_STORE_READ_TIMEOUT_S", 30.0, environ=environ),
                retries={"max_attempts": env_int("ARTIFACT_STORE_MAX_ATTEMPTS", 3, minimum=1, environ=environ),
                         "mode": "standard"},
                signature_version="s3v4",
                s3={"addressing_style": addressing},
                # Checksums only where S3 requires them: several S3-compatible servers reject the newer defaults.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        },
    }
