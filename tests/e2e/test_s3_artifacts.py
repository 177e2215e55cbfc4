"""Workers on many machines: artifacts in an S3 bucket (a real moto_server), no shared filesystem.

Each worker consumes one queue and has its own empty MEDIA_ROOT (scratch only); this test process, the web
side, has its own and must end with nothing in it. The bucket is reached through a proxy the tests stop
and start (the store going away) or slow down (an upload in flight when a worker is SIGKILLed).
"""
from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import queues, services, states
from jobs.locations import url_key
from jobs.models import GenerationJob
from jobs.pipeline import probe_duration, probe_streams
from tests.e2e.fake_backend import script
from tests.factories import make_project, make_user
from tests.processes import kill_stage_holder, wait_until
from tests.s3store import TcpProxy, presign_expired_at

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMITS = {
    "JOBS_HEARTBEAT_INTERVAL_S": "1",
    "JOBS_STALE_AFTER_S": "4",
    "JOBS_REAPER_INTERVAL_S": "1",
    "JOBS_CANCEL_GRACE_S": "3",
    "JOBS_RETRY_BACKOFF_S": "0.3",
    "JOBS_RETRY_BACKOFF_MAX_S": "1",
    "JOBS_RETRY_MAX": "8",
    # A store that is down is noticed in about a second (then the task retries with its backoff).
    "ARTIFACT_STORE_CONNECT_TIMEOUT_S": "1",
    "ARTIFACT_STORE_READ_TIMEOUT_S": "5",
    "ARTIFACT_STORE_MAX_ATTEMPTS": "1",
}
PARAMS = {"width": 320, "height": 180, "fps": 10}
POOLS = {"video": f"{queues.VIDEO},{queues.MAINTENANCE}", "images": queues.IMAGE, "audio": queues.AUDIO}


@pytest.fixture
def web(s3, settings, tmp_path):
    """This process is the web side: its own empty MEDIA_ROOT, the bucket as its store, short URL lifetime."""
    settings.MEDIA_ROOT = tmp_path / "web"
    settings.ARTIFACT_URL_TTL_S = 60
    settings.JOBS = {**settings.JOBS, "STALE_AFTER_S": 4.0, "REAPER_INTERVAL_S": 1.0, "RETRY_MAX": 8}
    return settings


def start_pools(processes, s3, tmp_path: Path, **endpoints: str) -> dict[str, Path]:
    """One worker per queue, each with its own empty MEDIA_ROOT; `endpoints` gives a pool another store URL."""
    roots = {}
    for name, pool_queues in POOLS.items():
        roots[name] = tmp_path / f"machine-{name}"
        roots[name].mkdir()
        env = s3.env(**({"AWS_S3_ENDPOINT_URL": endpoints[name]} if name in endpoints else {}))
        processes.start_worker(name, queues=pool_queues, concurrency=1, wait=False, MEDIA_ROOT=str(roots[name]),
                               **LIMITS, **env)
    processes.wait_ready()
    return roots


def create_job(texts: tuple[str, ...] = ("A calm sea at dawn.", "Boats come home.")) -> GenerationJob:
    project = make_project(owner=make_user(), script=script(*texts))
    return services.job_create(project=project, job_type="full_video", params=PARAMS)


def wait_done(job: GenerationJob, timeout: float = 150.0) -> GenerationJob:
    return wait_until(lambda: (j := GenerationJob.objects.get(pk=job.pk)).status in states.TERMINAL and j, timeout,
                      message=f"job {job.pk} to finish")


def files_under(root: Path) -> list[Path]:
    """Files in `root`, read again while a stage is still removing its scratch folder."""
    for _ in range(50):
        try:
            return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []
        except FileNotFoundError:
            continue
    raise AssertionError(f"{root} keeps changing")


def disk_is_clean(root: Path) -> bool:
    """The last stage removes its scratch folder just after completing the job: give it a moment."""
    return bool(wait_until(lambda: files_under(root) == [] or None, 10, message=f"{root} to hold no file"))


def result_keys(job: GenerationJob) -> set[str]:
    return {url_key(job.pk, item["url"]) for item in job.result["artifacts"]}


def assert_bucket_holds_one_copy_of_each(s3, job: GenerationJob) -> None:
    """Every artifact of the result is stored whole (its size), and nothing else but the attempt's manifests
    (the completing worker deletes earlier attempts' leftovers just after completing: waited for)."""
    prefix = f"jobs/{job.pk}/a{job.attempts}/manifests/"

    def others() -> set[str]:
        return {key for key in s3.keys(f"jobs/{job.pk}/") if not key.startswith(prefix)}

    wait_until(lambda: others() == result_keys(job), 10, message="the bucket to hold the result's objects only")
    client = s3.client()
    for item in job.result["artifacts"]:
        head = client.head_object(Bucket=s3.bucket, Key=url_key(job.pk, item["url"]))
        assert head["ContentLength"] == item["bytes"] > 0, item
    names = [item["name"] for item in job.result["artifacts"]]
    assert len(names) == len(set(names)), names


def presigned(owner: APIClient, url: str) -> str:
    response = owner.get(url)
    assert response.status_code == 302, (response.status_code, getattr(response, "content", b"")[:300])
    assert response["Cache-Control"] == "private, no-store"
    return response["Location"]


def start_short_lived_web(processes, s3, tmp_path: Path) -> int:
    """A web process (daphne) on its own machine whose presigned URLs live 2 s and point at the store's
    front that refuses expired ones (moto alone would serve them forever). 2 s, not 1: X-Amz-Date is
    truncated to the second, so a 1 s URL can be dead a few milliseconds after it is signed."""
    (tmp_path / "machine-web").mkdir()
    return processes.start_daphne("web", wait=False, MEDIA_ROOT=str(tmp_path / "machine-web"),
                                  **s3.env(AWS_S3_ENDPOINT_URL=s3.presign_checked, ARTIFACT_URL_TTL_S="2"))


def redirect_from(port: int, path: str, token: str) -> str:
    """The Location of the web process's 302 for `path` (not followed)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Token {token}"})
        answer = connection.getresponse()
        assert answer.status == 302, (answer.status, answer.read()[:300])
        return answer.getheader("Location")
    finally:
        connection.close()


def test_full_video__workers_on_separate_machines_share_only_the_bucket(processes, web, s3, tmp_path):
    # Given one worker per queue, each on its own "machine" (an empty MEDIA_ROOT of its own), and a web
    # process of short URL lifetime (it boots while the job runs: waited for where it is used)
    roots = start_pools(processes, s3, tmp_path)
    web_port = start_short_lived_web(processes, s3, tmp_path)

    # When a full video is made
    job = create_job()
    done = wait_done(job)

    # Then it completed from keys in the bucket, and no disk holds an artifact: not the web side's, and
    # every worker's scratch space was cleaned up
    assert done.status == states.COMPLETED, (done.error_message, processes.log("video")[-3000:])
    assert {a["kind"] for a in done.result["artifacts"]} == {"scenes", "image", "audio", "video"}
    assert files_under(Path(web.MEDIA_ROOT)) == []
    for root in roots.values():
        assert disk_is_clean(root)
    assert_bucket_holds_one_copy_of_each(s3, done)
    assert done.result["expires_at"]

    # The owner downloads the MP4 through a 302 to a presigned URL living ARTIFACT_URL_TTL_S, and a range of it
    owner = APIClient()
    owner.force_authenticate(done.project.owner)
    video = next(a for a in done.result["artifacts"] if a["kind"] == "video")
    location = presigned(owner, video["url"])
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert location.startswith(s3.endpoint) and query["X-Amz-Expires"] == ["60"]
    with urllib.request.urlopen(location) as answer:
        body = answer.read()
        assert answer.headers["Content-Type"] == "video/mp4"
    assert len(body) == video["bytes"]
    local = tmp_path / "download.mp4"
    local.write_bytes(body)
    streams = probe_streams(local)
    assert streams["has_video"] and streams["has_audio"] and (streams["width"], streams["height"]) == (320, 180)
    assert probe_duration(local) == pytest.approx(done.result["duration_s"], abs=0.2)
    ranged = urllib.request.Request(presigned(owner, video["url"]), headers={"Range": "bytes=100-1123"})
    with urllib.request.urlopen(ranged) as answer:
        assert (answer.status, answer.read()) == (206, body[100:1124])

    # Another user gets 404 and an anonymous client 401, for the file and for a key outside the result
    stranger = APIClient()
    stranger.force_authenticate(make_user())
    for url in (video["url"], f"/api/jobs/{done.pk}/artifacts/a1/nothing.mp4"):
        assert stranger.get(url).status_code == 404
        assert APIClient().get(url).status_code == 401
    assert owner.get(f"/api/jobs/{done.pk}/artifacts/a1/nothing.mp4").status_code == 404
    assert files_under(Path(web.MEDIA_ROOT)) == []

    # A presigned URL stops working after its lifetime: the short-lived web process's URL downloads the
    # MP4 at once, and the same URL is refused as S3 refuses it once X-Amz-Date + X-Amz-Expires has passed
    processes.wait_ready("web")
    location = redirect_from(web_port, video["url"], Token.objects.create(user=done.project.owner).key)
    query = urllib.parse.urlsplit(location).query
    assert location.startswith(s3.presign_checked) and urllib.parse.parse_qs(query)["X-Amz-Expires"] == ["2"]
    with urllib.request.urlopen(location) as answer:
        assert answer.read() == body
    time.sleep(max(0.0, (presign_expired_at(query) - datetime.now(dt_timezone.utc)).total_seconds()) + 0.5)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(location)
    assert refused.value.code == 403
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in refused.value.read()


def test_store_stopped_mid_job_and_started_again__the_job_completes_with_whole_objects(processes, web, s3,
                                                                                        tmp_path):
    # Given workers on separate machines, and a job that has begun storing its scenes' images and narration
    start_pools(processes, s3, tmp_path)
    job = create_job(tuple(f"Scene {n} has a few words to narrate." for n in range(1, 7)))
    wait_until(lambda: any("/images/" in key or "/audio/" in key for key in s3.keys(f"jobs/{job.pk}/")), 90,
               message="the first scene stored")

    # When the store goes away for a few seconds (connections cut, new ones refused) and comes back
    s3.proxy.stop()
    wait_until(lambda: "artifact store is unreachable" in processes.log("images") + processes.log("audio")
               + processes.log("video"), 30, message="a stage to notice the store is down")
    s3.proxy.start()

    # Then the stages retried and the job completed, with every object whole under its final name
    done = wait_done(job)
    assert done.status == states.COMPLETED, (done.error_message, processes.log("images")[-3000:])
    assert done.attempts == 1  # retried within the attempt (transient), not lost and requeued
    assert_bucket_holds_one_copy_of_each(s3, done)


def test_store_down_for_good__the_job_fails_with_a_clear_message(processes, web, s3, tmp_path):
    # Given workers whose store stays unreachable
    dead = TcpProxy(("127.0.0.1", 9)).port  # nothing listens there
    start_pools(processes, s3, tmp_path, video=f"http://127.0.0.1:{dead}")

    done = wait_done(create_job(), timeout=120)

    assert done.status == states.FAILED
    assert "artifact store is unreachable" in done.error_message, done.error_message


def test_worker_sigkilled_during_an_upload__the_job_completes_with_one_copy_of_each(
        processes, web, s3, tmp_path):
    # Given the image worker's uploads slowed down (so one is in flight), and beat running the reaper
    call_command("setup_periodic_tasks", verbosity=0)
    slow = TcpProxy(("127.0.0.1", s3.port), upload_bytes_per_s=40_000).start()
    try:
        start_pools(processes, s3, tmp_path, images=slow.url)
        processes.start_beat(**LIMITS, **s3.env())
        job = create_job(tuple(f"Scene {n}: the harbour at night." for n in range(1, 5)))

        # When the image worker's pool process is SIGKILLed while it sends an image to the store
        killed: set[int] = set()
        wait_until(lambda: killed or kill_stage_holder(
            job.pk, "images", killed, lambda: slow.uploading() and any("/images/" in k for k in s3.keys(f"jobs/{job.pk}/"))),
            90, interval=0.05, message="an image upload to strike")
        assert killed

        # Then the job completes and the bucket holds one copy of each artifact. Either recovery is right:
        # the reaper requeues the job as a new attempt, or Celery redelivers the lost scene task at once
        # (its pool process died, the worker did not) and it re-runs that scene in the same attempt; which
        # comes first is a race since exited pool children are reaped at once (patches/celery_pool.py).
        done = wait_done(job, timeout=180)
    finally:
        slow.stop()
    assert done.status == states.COMPLETED, (done.error_message, processes.log("images")[-3000:])
    assert_bucket_holds_one_copy_of_each(s3, done)


def test_retention__expired_jobs_objects_are_deleted_by_the_maintenance_task_and_the_page_says_so(
        processes, web, s3, tmp_path, client):
    # Given a completed job (made by workers on separate machines) that finished longer ago than retention
    start_pools(processes, s3, tmp_path)
    old, recent = create_job(), create_job(("Only one scene.",))
    old, recent = wait_done(old), wait_done(recent)
    assert old.status == recent.status == states.COMPLETED
    GenerationJob.objects.filter(pk=old.pk).update(completed_at=timezone.now() - timedelta(days=31))
    client.force_login(old.project.owner)
    assert "Files kept until" in client.get(f"/jobs/{old.pk}/").content.decode()

    # When the maintenance worker runs the retention task
    from config.celery import app

    report = app.send_task("jobs.tasks.expire_artifacts_task", queue=queues.MAINTENANCE).get(timeout=60)

    # Then the old job's objects are gone, its result says so, and its page too (no broken player)
    assert report == {"expired_jobs": 1, "objects": len(result_keys(old)) + 4, "errors": 0}, report
    assert s3.keys(f"jobs/{old.pk}/") == []
    old.refresh_from_db()
    assert old.result["expired"] is True and old.result["artifacts"] == [] and old.result["scenes"] == 2
    page = client.get(f"/jobs/{old.pk}/").content.decode()
    assert "expired and were deleted" in page and "<video" not in page
    assert 'data-kind="image"' not in page and "<audio" not in page  # nor the scenes' deleted files
    # ...and the recent job keeps everything
    assert_bucket_holds_one_copy_of_each(s3, GenerationJob.objects.get(pk=recent.pk))


@pytest.fixture(scope="module")
def s3_with_credentials():
    """A second moto_server that checks credentials (tests/s3store.py)."""
    from tests.s3store import moto_s3

    with moto_s3(check_credentials=True) as server:
        yield server


def test_wrong_credentials__the_job_fails_with_a_message_an_operator_understands_and_healthz_says_so(
        processes, web, s3_with_credentials, tmp_path, client):
    # Given workers (and this web process) whose secret key is wrong for the bucket
    wrong = s3_with_credentials.env(AWS_SECRET_ACCESS_KEY="not-the-secret")
    for name, pool_queues in POOLS.items():
        processes.start_worker(name, queues=pool_queues, concurrency=1, wait=False,
                               MEDIA_ROOT=str(tmp_path / name), **LIMITS, **wrong)
    processes.wait_ready()

    # When a job runs, it fails at once (no retries: retrying cannot fix credentials) saying what to check
    done = wait_done(create_job(), timeout=60)
    assert done.status == states.FAILED and done.attempts == 1
    assert "refused our credentials (SignatureDoesNotMatch)" in done.error_message, done.error_message
    assert "AWS_SECRET_ACCESS_KEY" in done.error_message
    assert s3_with_credentials.keys() == []

    # ...and /healthz reports the store, with the same reason
    from config.artifact_storage import storage_config

    web.STORAGES = {**web.STORAGES, "artifacts": storage_config(wrong)}
    body = client.get("/healthz").json()
    assert body["store"] == "down" and "store" in body["down"] and "AWS_SECRET_ACCESS_KEY" in body["store_error"]
