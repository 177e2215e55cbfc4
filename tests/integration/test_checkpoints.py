"""Scene checkpoints (jobs/checkpoints.py): which scenes an attempt renders or reuses, the join's count, and
the `artifact` events each stored scene becomes (numbered, replayable, delivered to webhooks)."""
from __future__ import annotations

import json

import pytest

from jobs import checkpoints, services, states
from jobs.models import JobEvent, SceneCheckpoint
from realtime import events
from tests.factories import make_processing_job, make_project
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)


def url(key: str) -> str:
    return f"/api/jobs/x/artifacts/{key}"


def specs(fingerprints: dict[tuple[str, int], str]) -> list[checkpoints.SceneSpec]:
    stage = {"image": "images", "audio": "audio"}
    return [checkpoints.SceneSpec(stage[kind], kind, scene, fp) for (kind, scene), fp in sorted(fingerprints.items())]


def finish(job, attempt: int, spec: checkpoints.SceneSpec, total: int) -> checkpoints.Finished | None:
    return checkpoints.scene_finished(
        job_id=job.pk, attempt=attempt, spec=spec, name=f"jobs/{job.pk}/a{attempt}/{spec.kind}/{spec.scene}",
        size=10, content_type="image/png", sha256="0" * 64, meta={"scene": spec.scene}, url=url,
        step_kinds=["image", "audio"], total=total)


def render_all(job, attempt: int, planned: checkpoints.Planned, total: int) -> list[bool]:
    completes = []
    for spec in planned.to_render:
        assert checkpoints.scene_started(job_id=job.pk, attempt=attempt, kind=spec.kind, scene=spec.scene, worker="w")
        completes.append(finish(job, attempt, spec, total).complete)
    return completes


FIRST = {(kind, n): f"{kind}-{n}-v1" for kind in ("image", "audio") for n in (1, 2, 3)}


def test_checkpoints__first_attempt_renders_all_and_only_the_last_scene_completes_the_step():
    job = make_processing_job(job_type="full_video")

    planned = checkpoints.plan_scenes(job_id=job.pk, attempt=1, specs=specs(FIRST), total=3,
                                      exists=lambda row: True, url=url)

    assert len(planned.to_render) == 6 and planned.reused == 0 and not planned.complete
    assert render_all(job, 1, planned, 3) == [False] * 5 + [True]
    artifacts = list(JobEvent.objects.filter(job=job, kind=JobEvent.ARTIFACT).order_by("seq"))
    assert len(artifacts) == 6 and all("rendered" in e.message for e in artifacts)
    seqs = [e.seq for e in JobEvent.objects.filter(job=job).order_by("seq")]
    assert seqs == list(range(1, len(seqs) + 1))  # artifact events take their place in the one numbering
    replayed = events.replay_message(artifacts[0], job)
    assert set(replayed) == events.ARTIFACT_KEYS and replayed["type"] == "artifact"
    assert (replayed["kind"], replayed["scene"], replayed["reused"]) == (artifacts[0].data["kind"], 1, False)


def test_checkpoints__next_attempt_reuses_unchanged_scenes_and_renders_changed_or_missing_ones():
    job = make_processing_job(job_type="full_video")
    planned = checkpoints.plan_scenes(job_id=job.pk, attempt=1, specs=specs(FIRST), total=3,
                                      exists=lambda row: True, url=url)
    render_all(job, 1, planned, 3)
    services.job_fail(job_id=job.pk, error_message="boom", attempt=1)
    services.job_retry(job_id=job.pk)
    services.job_start(job_id=job.pk, worker="w", attempt=2)

    # scene 2's text changed (both fingerprints), scene 3's narration object is gone
    second = {**FIRST, ("image", 2): "image-2-v2", ("audio", 2): "audio-2-v2"}
    planned = checkpoints.plan_scenes(job_id=job.pk, attempt=2, specs=specs(second), total=3,
                                      exists=lambda row: not (row.kind == "audio" and row.scene == 3), url=url)

    assert {(s.kind, s.scene) for s in planned.to_render} == {("image", 2), ("audio", 2), ("audio", 3)}
    assert planned.reused == 3 and planned.done == {"image": 2, "audio": 1}
    reused = JobEvent.objects.filter(job=job, kind=JobEvent.ARTIFACT, attempt=2)
    assert {(e.data["kind"], e.data["scene"], e.data["reused"]) for e in reused} == {
        ("image", 1, True), ("audio", 1, True), ("image", 3, True)}
    assert all("reused from attempt 1" in e.message for e in reused)
    assert render_all(job, 2, planned, 3) == [False, False, True]
    rows = SceneCheckpoint.objects.filter(job=job)
    assert sorted((r.kind, r.scene, r.attempt, r.reused, r.renders) for r in rows) == [
        ("audio", 1, 2, True, 1), ("audio", 2, 2, False, 2), ("audio", 3, 2, False, 2),
        ("image", 1, 2, True, 1), ("image", 2, 2, False, 2), ("image", 3, 2, True, 1)]


def test_checkpoints__a_scene_finishing_after_the_cancel_records_nothing():
    job = make_processing_job(job_type="full_video")
    planned = checkpoints.plan_scenes(job_id=job.pk, attempt=1, specs=specs(FIRST), total=3,
                                      exists=lambda row: True, url=url)
    spec = planned.to_render[0]
    assert checkpoints.scene_started(job_id=job.pk, attempt=1, kind=spec.kind, scene=spec.scene, worker="w")
    services.job_cancel(job_id=job.pk)
    seq = JobEvent.objects.filter(job=job).count()

    assert finish(job, 1, spec, 3) is None
    assert JobEvent.objects.filter(job=job).count() == seq
    assert not SceneCheckpoint.objects.filter(job=job, state=SceneCheckpoint.DONE).exists()
    assert checkpoints.plan_scenes(job_id=job.pk, attempt=1, specs=specs(FIRST), total=3,
                                   exists=lambda row: True, url=url) is None


def test_checkpoints__artifact_events_are_delivered_to_a_webhook_asking_for_them():
    job = services.job_create(project=make_project(), job_type="full_video", webhook_url="https://hooks.example/x",
                              webhook_events_filter=["artifact"])
    services.job_start(job_id=job.pk, worker="w")
    planned = checkpoints.plan_scenes(job_id=job.pk, attempt=1, specs=specs({("image", 1): "f"}), total=1,
                                      exists=lambda row: True, url=url)
    checkpoints.scene_started(job_id=job.pk, attempt=1, kind="image", scene=1, worker="w")
    finish(job, 1, planned.to_render[0], 1)

    (delivery,) = WebhookDelivery.objects.filter(job_id=job.pk)
    body = json.loads(delivery.body)
    assert (delivery.event, body["type"]) == ("artifact", "job.artifact")
    assert body["data"]["status"] == states.PROCESSING
    assert {k: body["data"]["artifact"][k] for k in ("type", "kind", "scene")} == {
        "type": "artifact", "kind": "image", "scene": 1}
    assert body["data"]["artifact"]["seq"] == delivery.seq
