"""jobs.progress_rules: the one-statement PostgreSQL path and the locked ORM path follow the same rules.

Every case runs on both paths, each called explicitly; on SQLite only the locked path exists, so the
one-statement cases skip there.
"""
from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs import progress_rules, services
from jobs.exceptions import JobNotFound
from jobs.models import GenerationJob, JobEvent
from tests.factories import make_processing_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["one_statement", "locked"])
def report(request):
    """job_report_progress's signature, bound to one implementation of the rules."""
    if request.param == "one_statement" and connection.vendor != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL only")
    implementation = (progress_rules.STATEMENT_PATHS["postgresql"] if request.param == "one_statement"
                      else progress_rules.report_progress_locked)

    def call(*, job_id, progress, stage=None, part=None, attempt=None) -> bool:
        return implementation(job_id, progress=progress, stage=stage, part=part, attempt=attempt)

    return call


def events(job) -> list[tuple[int, str, float, str]]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", "kind", "progress", "stage"))


def test_progress__event_state_and_committed_message(report, captured_events) -> None:
    job = make_processing_job()
    assert report(job_id=job.pk, progress=12.34, stage="Generating images") is True
    job.refresh_from_db()
    assert (job.seq, job.progress, job.current_stage) == (3, 12.3, "Generating images")
    assert events(job)[-1] == (3, "progress", 12.3, "Generating images")
    last = captured_events[-1]
    assert (last.job_id, last.seq, last.kind, last.status, last.progress, last.current_stage) == (
        str(job.pk), 3, "progress", "processing", 12.3, "Generating images")
    assert last.project_id == str(job.project_id) and last.attempt == 1 and last.result is None


def test_progress__clamped_never_down_and_unchanged_is_no_event(report) -> None:
    job = make_processing_job()
    assert report(job_id=job.pk, progress=40, stage="a") is True
    assert report(job_id=job.pk, progress=20, stage="a") is False
    assert report(job_id=job.pk, progress=40.04, stage="a") is False  # rounds to 40.0
    assert report(job_id=job.pk, progress=20, stage="b") is True  # stage moved, progress kept
    assert report(job_id=job.pk, progress=float("nan"), stage=None) is False
    assert report(job_id=job.pk, progress=250, stage="x" * 500) is True
    job.refresh_from_db()
    assert job.progress == 100 and len(job.current_stage) == 200
    assert [e[:3] for e in events(job)[2:]] == [(3, "progress", 40.0), (4, "progress", 40.0), (5, "progress", 100.0)]


def test_progress__parts_weighted_by_job_type(report) -> None:
    job = make_processing_job(job_type="full_video")  # weights parse 5, images 35, audio 25, video 35
    report(job_id=job.pk, progress=100, stage="Parsing script", part="parse")
    report(job_id=job.pk, progress=50, stage="Generating images", part="images")
    report(job_id=job.pk, progress=30, stage="Generating narration", part="audio")
    job.refresh_from_db()
    assert job.progress == round(5 + 35 * 0.5 + 25 * 0.3, 1) == 30.0
    assert job.stage_progress == {"parse": 100.0, "images": 50.0, "audio": 30.0}
    # A part going back is kept at its maximum, and a report that moves nothing writes no event...
    assert report(job_id=job.pk, progress=10, stage="Generating narration", part="audio") is False
    # ...but a part that moved without moving the rounded total is still remembered.
    assert report(job_id=job.pk, progress=50.1, stage=None, part="images") is False
    job.refresh_from_db()
    assert job.progress == 30.0 and job.stage_progress["images"] == 50.1 and job.stage_progress["audio"] == 30.0
    assert job.seq == 5


def test_progress__refused_when_not_processing_or_stale_attempt(report) -> None:
    job = make_processing_job()
    assert report(job_id=job.pk, progress=10, stage="s", attempt=2) is False
    services.job_record_lost_worker(job_id=job.pk, attempt=1, reason="worker lost")
    assert report(job_id=job.pk, progress=10, stage="s") is False
    job.refresh_from_db()
    assert job.status == "queued" and job.progress == 0 and job.seq == 3


def test_progress__unknown_job_raises(report) -> None:
    for bad in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", None):
        with pytest.raises(JobNotFound):
            report(job_id=bad, progress=1, stage="s")


def test_progress__inside_a_transaction_is_handed_on_after_its_commit(report, captured_events) -> None:
    job = make_processing_job()
    with transaction.atomic():
        report(job_id=job.pk, progress=5, stage="s")
        assert [e.seq for e in captured_events if e.job_id == str(job.pk)] == [1, 2]
    assert [e.seq for e in captured_events if e.job_id == str(job.pk)] == [1, 2, 3]


def test_progress__concurrent_reporters_and_cancel_keep_seq_gap_free(report) -> None:
    job = make_processing_job(job_type="full_video")
    errors: list[BaseException] = []

    def reporter(part: str) -> None:
        try:
            for step in range(1, 41):
                report(job_id=job.pk, progress=step * 2.5, stage=part, part=part)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reporter, args=(part,)) for part in ("images", "audio")]
    for thread in threads:
        thread.start()
    services.job_cancel(job_id=job.pk)
    for thread in threads:
        thread.join()
    assert errors == []
    job = GenerationJob.objects.get(pk=job.pk)
    seqs = [e[0] for e in events(job)]
    assert seqs == list(range(1, job.seq + 1))
    assert job.status == "cancelled" and events(job)[-1][1] == "status"  # nothing recorded after the cancel


def test_job_report_progress__the_database_vendor_picks_the_path() -> None:
    # Given a processing job
    job = make_processing_job()
    # When the service records a report
    with CaptureQueriesContext(connection) as queries:
        assert services.job_report_progress(job_id=job.pk, progress=10, stage="s") is True
    # Then PostgreSQL took the one statement, any other database the locked path (its own transaction)
    if connection.vendor == "postgresql":
        assert len(queries) == 1 and "WITH prev AS" in queries[0]["sql"]
    else:
        assert len(queries) > 1 and progress_rules.STATEMENT_PATHS.get(connection.vendor) is None
