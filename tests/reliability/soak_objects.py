"""No object half-written: what the soak's jobs left in the artifact store is whole, and is what is served.

Read through the store the deployment uses (jobs.store.get_store: local files or the S3 bucket), so every
object of every attempt counts, also those of attempts a kill or a cancel cut short: an object is either
there whole or not there at all. Then each completed job's listed artifacts exist at their declared size,
and for a sample the download through the API (as the owner; a redirect to the store followed) returns
exactly the stored bytes.
"""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import httpx
from PIL import Image

from jobs.locations import job_prefix, url_key
from jobs.models import GenerationJob
from jobs.store import get_store


def _whole(key: str, data: bytes) -> str | None:
    """Why the object is not whole (None when it is): an image must decode, JSON must parse."""
    if not data:
        return "empty"
    try:
        if key.endswith(".png"):
            Image.open(io.BytesIO(data)).verify()
        elif key.endswith(".json"):
            json.loads(data)
    except Exception as exc:  # noqa: BLE001 - the reason is the report
        return f"{type(exc).__name__}: {exc}"
    return None


def stored_object_problems(job_ids: Iterable[str]) -> tuple[int, list[str]]:
    """(objects read, problems) over every object stored under the jobs' prefixes."""
    store = get_store()
    keys = [key for job_id in job_ids for key in store.keys(job_prefix(job_id))]

    def check(key: str) -> str | None:
        problem = _whole(key, store.read_bytes(key))
        return f"{key}: {problem}" if problem else None

    with ThreadPoolExecutor(4) as executor:
        return len(keys), [problem for problem in executor.map(check, keys) if problem]


def listed_artifact_problems(jobs: Iterable[GenerationJob]) -> list[str]:
    """Each completed job's result artifacts are stored at the size the result declares."""
    store = get_store()
    problems = []
    for job in jobs:
        for artifact in job.result["artifacts"]:
            key = url_key(job.pk, artifact["url"])
            size = store.size(key) if key and store.exists(key) else None
            if size != artifact["bytes"]:
                problems.append(f"{artifact['url']}: stored {size} bytes, result says {artifact['bytes']}")
    return problems


def served_artifact_problems(base_url: str, token: str, jobs: Iterable[GenerationJob]) -> list[str]:
    """Each artifact downloaded through the API is exactly the stored object."""
    store = get_store()
    wanted = [(job, artifact) for job in jobs for artifact in job.result["artifacts"]]

    def check(item) -> str | None:
        job, artifact = item
        with httpx.Client(base_url=base_url, timeout=30, follow_redirects=True,
                          headers={"Authorization": f"Token {token}"}) as http:
            response = http.get(artifact["url"])
        if response.status_code != 200 or response.content != store.read_bytes(url_key(job.pk, artifact["url"])):
            return f"{artifact['url']}: {response.status_code}, {len(response.content)} bytes served"
        return None

    with ThreadPoolExecutor(4) as executor:
        return [problem for problem in executor.map(check, wanted) if problem]
