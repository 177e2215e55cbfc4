"""The captions job type end to end on real worker processes: from a finished full_video to a VTT and an MP4."""
from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from jobs import services, states
from jobs.exceptions import InvalidJobInput
from jobs.locations import url_key
from jobs.store import get_store
from jobs.models import GenerationJob
from jobs.pipeline import probe_duration, probe_streams
from tests.e2e.fake_backend import script
from tests.factories import make_project, make_user
from tests.processes import wait_until
from tests.responses import response_body
from tests.vtt import parse_vtt

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCENES = (
    "The harbour is quiet before dawn. Fishing boats rock gently against the pier while gulls circle overhead, "
    "waiting for the first catch of the day to come in.",
    "Boats come home.",
    "By noon the market is loud & full.",
)


def wait_done(job: GenerationJob, timeout: float = 120.0) -> GenerationJob:
    return wait_until(lambda: (j := GenerationJob.objects.get(pk=job.pk)).status in states.TERMINAL and j, timeout,
                      message=f"job {job.pk} to finish")


def download(client: APIClient, url: str) -> tuple[int, str, bytes]:
    response = client.get(url)
    return response.status_code, response.get("Content-Type", ""), response_body(response)


def _stored(job_id, artifact) -> Path:
    """The local store's file behind a result entry (the worker shares the test's MEDIA_ROOT)."""
    return get_store().local_path(url_key(job_id, artifact["url"]))


def test_captions__vtt_follows_the_narration_and_the_captioned_mp4_plays_for_its_owner_only(processes, tmp_path):
    # given a project whose full video finished on a real worker
    processes.start_worker(concurrency=2)
    owner, stranger = make_user(), make_user()
    project = make_project(owner=owner, script=script(*SCENES))
    with pytest.raises(InvalidJobInput) as refused:  # nothing to caption yet
        services.job_create(project=project, job_type="captions")
    assert refused.value.field == "source_job_id"
    source = services.job_create(project=project, job_type="full_video", params={"width": 320, "height": 180, "fps": 10})
    source = wait_done(source)
    assert source.status == states.COMPLETED, (source.error_message, processes.log("worker")[-3000:])

    # when a captions job runs on it
    job = services.job_create(project=project, job_type="captions")
    done = wait_done(job)

    # then it completed with a captions file and a video, under its own folder
    assert done.status == states.COMPLETED, (done.error_message, processes.log("worker")[-3000:])
    assert done.params == {"source_job_id": str(source.pk)}
    captions, video = done.result["artifacts"]
    assert (captions["kind"], captions["content_type"], captions["name"]) == ("captions", "text/vtt", "captions.vtt")
    assert (video["kind"], video["content_type"], video["name"]) == ("video", "video/mp4", "video.mp4")
    assert all(a["url"].startswith(f"/api/jobs/{job.pk}/artifacts/") for a in (captions, video))
    assert done.progress == 100.0

    owner_client = APIClient()
    owner_client.force_authenticate(owner)
    status, content_type, body = download(owner_client, captions["url"])
    assert (status, content_type) == (200, "text/vtt")
    cues = parse_vtt(body.decode("utf-8"))

    # the cues follow the narration: each scene's cues fill exactly its narration's span, back to back
    narration = sorted((a for a in source.result["artifacts"] if a["kind"] == "audio"), key=lambda a: a["name"])
    lengths = [probe_duration(_stored(source.pk, a)) for a in narration]
    ends = [sum(lengths[:i + 1]) for i in range(len(lengths))]
    assert cues[0].start_s == 0.0 and all(a.end_s == b.start_s for a, b in zip(cues, cues[1:]))
    boundaries = [cue.end_s for cue in cues]
    for end in ends:  # every scene ends where a cue ends (ms rounding, and the probe's own resolution)
        assert min(abs(end - b) for b in boundaries) < 0.02, (end, boundaries)
    assert len(cues) > len(SCENES)  # the long first scene was split into readable cues
    assert any("loud & full" in cue.text for cue in cues)

    # the captioned MP4 decodes, has picture and sound, and lasts as long as the source video
    status, content_type, body = download(owner_client, video["url"])
    assert (status, content_type) == (200, "video/mp4")
    local = tmp_path / "captioned.mp4"
    local.write_bytes(body)
    streams = probe_streams(local)
    assert streams["has_video"] and streams["has_audio"] and (streams["width"], streams["height"]) == (320, 180)
    assert probe_duration(local) == pytest.approx(probe_duration(_stored(source.pk, source.result["artifacts"][-1])), abs=0.15)
    assert probe_duration(local) == pytest.approx(ends[-1], abs=0.15)

    # and nobody else can fetch either file (or learn that the job exists)
    stranger_client = APIClient()
    stranger_client.force_authenticate(stranger)
    for url in (captions["url"], video["url"], f"/api/jobs/{job.pk}/"):
        assert stranger_client.get(url).status_code == 404, url
        assert APIClient().get(url).status_code == 401, url
    assert _stored(job.pk, captions).is_file()
