"""The artifact store, both backends, against real files and a real S3-protocol server (moto_server):
the interface's calls, all-or-nothing writes, presigned URLs, and each failure as the error the stages act on."""
from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jobs.pipeline.store import ArtifactMissing, StoreRefused, StoreUnavailable
from jobs.store import get_store
from ops import metrics
from tests.s3store import presign_expired_at

pytestmark = pytest.mark.django_db

# A store that is down must be noticed in well under a second here (one attempt, short connect timeout).
FAST_FAIL = {"ARTIFACT_STORE_CONNECT_TIMEOUT_S": "0.5", "ARTIFACT_STORE_READ_TIMEOUT_S": "2",
             "ARTIFACT_STORE_MAX_ATTEMPTS": "1"}


@pytest.fixture(params=["local", "s3"])
def store(request, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    if request.param == "s3":
        request.getfixturevalue("s3")
    return get_store()


def test_store__put_read_download_list_and_delete(store, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 100_000)

    assert store.put_file("jobs/j1/a1/video.mp4", source, "video/mp4") == 100_000
    assert store.put_bytes("jobs/j1/a1/manifests/video.json", b"{}", "application/json") == 2
    store.put_bytes("jobs/j1/a2/scenes.json", b"[]", "application/json")
    store.put_bytes("jobs/j10/a1/scenes.json", b"[]", "application/json")  # a prefix of j1's name, not under it

    assert store.read_bytes("jobs/j1/a1/manifests/video.json") == b"{}"
    copy = store.download("jobs/j1/a1/video.mp4", tmp_path / "scratch" / "video.mp4")
    assert copy.read_bytes() == source.read_bytes()
    assert store.exists("jobs/j1/a1/video.mp4") and not store.exists("jobs/j1/a1/nothing.mp4")
    assert store.size("jobs/j1/a1/video.mp4") == 100_000
    assert store.keys("jobs/j1") == ["jobs/j1/a1/manifests/video.json", "jobs/j1/a1/video.mp4", "jobs/j1/a2/scenes.json"]

    assert store.delete(["jobs/j1/a2/scenes.json", "jobs/j1/a2/never-was"]) == 2
    assert store.delete_prefix("jobs/j1") == 2
    assert store.keys("jobs/j1") == [] and store.keys("jobs/j10") == ["jobs/j10/a1/scenes.json"]
    with pytest.raises(ArtifactMissing, match="video.mp4 is not stored"):
        store.read_bytes("jobs/j1/a1/video.mp4")
    with pytest.raises(ArtifactMissing):
        store.download("jobs/j1/a1/video.mp4", tmp_path / "scratch" / "again.mp4")
    assert not (tmp_path / "scratch" / "again.mp4").exists()


def test_store__keys_that_could_leave_the_store_are_refused(store) -> None:
    for key in ("../etc/passwd", "jobs//x", "jobs/./x", "/abs", "jobs/x\\y", ""):
        with pytest.raises(ValueError):
            store.put_bytes(key, b"no", "text/plain")


def test_s3_store__presigned_url_serves_the_object_and_ranges_for_its_lifetime(s3) -> None:
    store = get_store()
    store.put_bytes("jobs/j1/a1/video.mp4", bytes(range(256)) * 40, "video/mp4")

    url = store.presigned_url("jobs/j1/a1/video.mp4", ttl_s=120, content_type="video/mp4", filename="video.mp4")

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert url.startswith(f"{s3.endpoint}/{s3.bucket}/jobs/j1/a1/video.mp4?")
    assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    with urllib.request.urlopen(url) as answer:
        assert answer.read() == bytes(range(256)) * 40
        assert answer.headers["Content-Type"] == "video/mp4"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as answer:
        assert (answer.status, answer.read()) == (206, bytes(range(10, 20)))


def test_s3_store__the_expiry_front_passes_every_call_through_and_refuses_an_expired_url(s3, settings, tmp_path) -> None:
    """tests/s3store.py's PresignExpiryFront (moto does not enforce X-Amz-Expires): the store's calls work
    through it unchanged, and its presigned URL works for its lifetime, then gets S3's 403."""
    settings.STORAGES = {**settings.STORAGES, "artifacts": s3.storage(AWS_S3_ENDPOINT_URL=s3.presign_checked)}
    store = get_store()
    source = tmp_path / "in.bin"
    source.write_bytes(bytes(range(256)) * 400)
    assert store.put_file("jobs/j1/a1/video.mp4", source, "video/mp4") == 102_400
    store.put_bytes("jobs/j1/a1/scenes.json", b"[]", "application/json")
    assert store.read_bytes("jobs/j1/a1/scenes.json") == b"[]" and store.size("jobs/j1/a1/video.mp4") == 102_400
    assert store.download("jobs/j1/a1/video.mp4", tmp_path / "out.bin").read_bytes() == source.read_bytes()
    assert store.keys("jobs/j1") == ["jobs/j1/a1/scenes.json", "jobs/j1/a1/video.mp4"]

    url = store.presigned_url("jobs/j1/a1/video.mp4", ttl_s=2, content_type="video/mp4", filename="video.mp4")
    assert url.startswith(s3.presign_checked)
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as answer:
        assert (answer.status, answer.read()) == (206, bytes(range(10, 20)))
    time.sleep(max(0.0, (presign_expired_at(urllib.parse.urlsplit(url).query)
                         - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url)
    assert refused.value.code == 403 and b"<Message>Request has expired</Message>" in refused.value.read()
    assert store.delete_prefix("jobs/j1") == 2  # signed requests (not presigned) still pass


def test_s3_store__unreachable_store_is_a_transient_error(s3, settings) -> None:
    settings.STORAGES = {**settings.STORAGES, "artifacts": s3.storage(**FAST_FAIL)}
    s3.proxy.stop()

    with pytest.raises(StoreUnavailable, match="unreachable"):
        get_store().put_bytes("jobs/j1/a1/x.txt", b"x", "text/plain")
    with pytest.raises(StoreUnavailable):
        get_store().check()
    s3.proxy.start()
    assert get_store().put_bytes("jobs/j1/a1/x.txt", b"x", "text/plain") == 1  # back: the same call succeeds


def test_s3_store__missing_bucket_is_a_permanent_error_an_operator_understands(s3, settings) -> None:
    settings.STORAGES = {**settings.STORAGES, "artifacts": s3.storage(AWS_STORAGE_BUCKET_NAME="no-such-bucket")}

    for call in (lambda store: store.put_bytes("jobs/j/a1/x", b"x", "text/plain"), lambda store: store.check()):
        with pytest.raises(StoreRefused, match="AWS_STORAGE_BUCKET_NAME") as info:
            call(get_store())
        assert "no-such-bucket" in info.value.message


def test_store__metrics_count_calls_bytes_and_errors(s3) -> None:
    before = metrics.render(include_state=False)[0].decode()
    store = get_store()
    store.put_bytes("jobs/j1/a1/x.bin", b"1234567", "application/octet-stream")
    store.read_bytes("jobs/j1/a1/x.bin")
    with pytest.raises(ArtifactMissing):
        store.read_bytes("jobs/j1/a1/missing.bin")

    after = metrics.render(include_state=False)[0].decode()

    def value(text: str, sample: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(sample + " ")]
        return float(lines[0].split()[-1]) if lines else 0.0

    for sample, delta in (('artifact_store_operations_total{backend="s3",op="upload"}', 1),
                          ('artifact_store_bytes_total{backend="s3",direction="upload"}', 7),
                          ('artifact_store_bytes_total{backend="s3",direction="download"}', 7),
                          ('artifact_store_errors_total{backend="s3",kind="missing",op="download"}', 1)):
        assert value(after, sample) - value(before, sample) == delta, sample


def test_healthz__names_the_store_when_it_is_down(client, s3, settings) -> None:
    settings.HEALTHZ = {**settings.HEALTHZ, "PING_TIMEOUT_S": 0.2}
    assert client.get("/healthz").json()["store"] == "ok"

    settings.STORAGES = {**settings.STORAGES, "artifacts": s3.storage(AWS_STORAGE_BUCKET_NAME="no-such-bucket")}
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["store"] == "down" and "store" in body["down"] and "AWS_STORAGE_BUCKET_NAME" in body["store_error"]


def test_deleting_a_project_or_a_job_deletes_their_objects(s3, django_capture_on_commit_callbacks) -> None:
    from rest_framework.test import APIClient

    from jobs import services
    from tests.factories import make_job, make_project, make_user

    owner = make_user()
    project, other = make_project(owner=owner), make_project(owner=owner)
    first, second, kept = make_job(project=project), make_job(project=project), make_job(project=other)
    store = get_store()
    for job in (first, second, kept):
        store.put_bytes(f"jobs/{job.pk}/a1/scenes.json", b"[]", "application/json")
    client = APIClient()
    client.force_authenticate(owner)

    assert client.delete(f"/api/projects/{project.pk}/").status_code == 204

    assert s3.keys(f"jobs/{first.pk}/") == s3.keys(f"jobs/{second.pk}/") == []
    assert s3.keys(f"jobs/{kept.pk}/") == [f"jobs/{kept.pk}/a1/scenes.json"]
    with django_capture_on_commit_callbacks(execute=True):
        services.job_delete(job_id=kept.pk)
    assert s3.keys(f"jobs/{kept.pk}/") == []
