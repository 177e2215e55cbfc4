"""DATABASE_REPLICA_URL: lists, admin change lists and /metrics read the replica; snapshots, resume, gap-fill
and every write use the primary.

No second PostgreSQL streaming from the first here: the `replica` alias is a second connection to the same
test database (what settings.py gives it in tests, TEST MIRROR), and each test captures which connection
ran the job queries. That proves the routing; it does not exercise replication lag itself.
"""
from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from config.db_routers import PRIMARY, REPLICA, replica_configured
from jobs.models import GenerationJob
from tests.factories import make_job, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])

JOBS = GenerationJob._meta.db_table


@pytest.fixture(scope="module", autouse=True)
def replica(django_db_setup):
    """A `replica` alias on the test database, as DATABASE_REPLICA_URL makes one; added before each test's
    database set-up (module scope), which then checks that the test may use it."""
    connections.settings[REPLICA] = dict(connections[PRIMARY].settings_dict)
    yield
    connections[REPLICA].close()
    del connections[REPLICA]
    del connections.settings[REPLICA]
    assert not replica_configured()


class Captured:
    def __init__(self) -> None:
        self.primary = CaptureQueriesContext(connections[PRIMARY])
        self.replica = CaptureQueriesContext(connections[REPLICA])

    def __enter__(self) -> Captured:
        self.primary.__enter__()
        self.replica.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.replica.__exit__(*exc)
        self.primary.__exit__(*exc)

    def touched(self, which: str, table: str = JOBS) -> bool:
        queries = (self.primary if which == PRIMARY else self.replica).captured_queries
        return any(table in query["sql"] for query in queries)


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_replica__api_lists_read_the_replica_and_one_job_the_primary(replica):
    user = make_user()
    job = make_job(owner=user)
    client = api(user)

    with Captured() as listed:
        response = client.get("/api/jobs/")
    assert response.status_code == 200 and response.json()["count"] == 1
    assert listed.touched(REPLICA) and not listed.touched(PRIMARY)

    with Captured() as projects:
        assert client.get("/api/projects/").json()["count"] == 1
    assert projects.touched(REPLICA, "projects_project") and not projects.touched(PRIMARY, "projects_project")

    for path in (f"/api/jobs/{job.pk}/", f"/api/jobs/{job.pk}/events/?after_seq=0"):  # snapshot, gap-fill
        with Captured() as one:
            assert client.get(path).status_code == 200
        assert one.touched(PRIMARY) and not one.touched(REPLICA), path


def test_replica__a_list_by_project_checks_the_project_on_the_primary(replica):
    # a project created a moment ago may not have reached the replica: its list must not be a 404 for lag
    user = make_user()
    job = make_job(owner=user)

    with Captured() as listed:
        response = api(user).get(f"/api/jobs/?project_id={job.project_id}")
    assert response.status_code == 200 and response.json()["count"] == 1
    assert listed.touched(PRIMARY, "projects_project")  # the check (the jobs' own query joins projects too)
    assert listed.touched(REPLICA) and not listed.touched(PRIMARY)  # the jobs themselves: the replica


def test_replica__writes_go_to_the_primary_even_from_a_list_request(replica):
    user = make_user()
    project = make_project(owner=user)

    with Captured() as created:
        response = api(user).post("/api/jobs/", {"project_id": str(project.pk), "job_type": "image_generation"},
                                  format="json")
    assert response.status_code == 201
    assert not created.touched(REPLICA)
    assert any(q["sql"].startswith("INSERT") and JOBS in q["sql"] for q in created.primary.captured_queries)


def test_replica__websocket_snapshot_and_resume_read_the_primary(replica):
    from realtime import history
    from realtime.consumers import _job_snapshot_for_user

    user = make_user()
    job = make_job(owner=user)

    with Captured() as read:
        assert async_to_sync(_job_snapshot_for_user)(str(job.pk), user)[0]["job_id"] == str(job.pk)
        assert async_to_sync(history.replay_page)(str(job.pk), 0, None, owner=user)
        assert async_to_sync(history.latest_seqs)([str(job.pk)]) == {str(job.pk): job.seq}
    assert read.touched(PRIMARY) and not read.touched(REPLICA)


def test_replica__admin_change_list_reads_the_replica_and_its_actions_the_primary(replica, client):
    staff = make_user(staff=True)
    job = make_job()
    client.force_login(staff)
    url = reverse("admin:jobs_generationjob_changelist")

    with Captured() as page:
        response = client.get(url)
    assert response.status_code == 200 and str(job.pk) in response.content.decode()
    assert page.touched(REPLICA) and not page.touched(PRIMARY)

    with Captured() as action:
        client.post(url, {"action": "cancel_selected", "_selected_action": [str(job.pk)]})
    assert action.touched(PRIMARY) and not action.touched(REPLICA)
    assert GenerationJob.objects.get(pk=job.pk).status == "cancelled"


def test_replica__metrics_job_counts_read_the_replica(replica):
    from ops import metrics

    make_job()
    with Captured() as scrape:
        counts = metrics.job_counts()
    assert counts[("queued", "image_generation")] == 1
    assert scrape.touched(REPLICA) and not scrape.touched(PRIMARY)
