"""Thin views over the job service and selectors; domain errors are mapped in api/errors.py."""
from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api import idempotency
from api.throttling import JobCreateThrottle
from api.schema import READ_ERRORS, WRITE_ERRORS, error_responses
from config.db_routers import primary_reads
from jobs import selectors, services
from jobs.exceptions import ProjectNotFound
from jobs.fairness import check_priority
from jobs.models import GenerationJob
from ops.replica import ReplicaListMixin
from projects.selectors import project_get_for_user

from .serializers import (
    JobCancelResponseSerializer,
    JobCreateSerializer,
    JobEventSerializer,
    JobRetryRequestSerializer,
    JobEventsQuerySerializer,
    JobListFilterSerializer,
    JobSerializer,
)

JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")
LOCATION = OpenApiParameter("Location", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[201],
                            description="The new job's path, e.g. `/api/jobs/{id}/`.")


def _with_place_in_line(job: GenerationJob) -> None:
    """Read back what the admission pass that ran on the job's commit decided, so the answer's
    `queue_position` is 1 for a job admitted at once rather than the null from before the pass. Inside a
    transaction (an Idempotency-Key create) the pass has not run yet: nothing to read."""
    if not connection.in_atomic_block:
        job.refresh_from_db(fields=["admitted_at", "queue_position"])


class JobObjectMixin:
    """Resolve `job_id` through the owner-scoped selector: another user's job is simply not found."""

    def get_object(self) -> GenerationJob:
        job = selectors.job_get_for_user(job_id=self.kwargs["job_id"], user=self.request.user)
        self.check_object_permissions(self.request, job)
        return job


@extend_schema_view(
    get=extend_schema(
        summary="List your jobs, newest first",
        parameters=[JobListFilterSerializer],
        responses={200: JobSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    post=extend_schema(
        summary="Create a job (status queued)",
        request=JobCreateSerializer,
        parameters=[LOCATION, *idempotency.SCHEMA_PARAMETERS],
        responses={201: JobSerializer, **error_responses(*WRITE_ERRORS, 429), **idempotency.SCHEMA_RESPONSES},
    ),
)
class JobListCreateView(ReplicaListMixin, idempotency.IdempotentCreateMixin, generics.ListCreateAPIView):
    serializer_class = JobSerializer

    def get_throttles(self) -> list:
        # Only creation is limited; reading your jobs is cheap and polled by scripts.
        return [JobCreateThrottle()] if self.request.method == "POST" else []

    def get_queryset(self) -> QuerySet[GenerationJob]:
        query = selectors.jobs_for_user(user=self.request.user)
        filters = JobListFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        if "project_id" in wanted:
            # An unknown or foreign project is a 404, as for every other path naming it (a malformed id
            # was already a 400 naming the parameter). Asked of the primary: a project created a moment ago
            # is not a 404 for the replica's lag.
            with primary_reads():
                project = project_get_for_user(project_id=wanted["project_id"], user=self.request.user)
            query = query.filter(project_id=project.pk)
        if "status" in wanted:
            query = query.filter(status=wanted["status"])
        if "job_type" in wanted:
            query = query.filter(job_type=wanted["job_type"])
        return query

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            project = project_get_for_user(project_id=data.validated_data["project_id"], user=request.user)
        except ProjectNotFound:
            raise serializers.ValidationError({"project_id": ["No project with this id among your projects."]})
        wanted = data.validated_data
        check_priority(wanted["priority"], request.user)
        job = services.job_create(
            project=project, job_type=wanted["job_type"], params=wanted["params"],
            webhook_url=wanted["webhook_url"], webhook_events_filter=wanted["webhook_events_filter"],
            priority=wanted["priority"], start_timeout_s=wanted["start_timeout_s"],
            max_runtime_s=wanted["max_runtime_s"],
        )
        _with_place_in_line(job)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/jobs/{job.pk}/"})


@extend_schema(summary="One of your jobs", parameters=[JOB_ID],
               responses={200: JobSerializer, **error_responses(*READ_ERRORS)})
class JobDetailView(JobObjectMixin, generics.RetrieveAPIView):
    serializer_class = JobSerializer


@extend_schema(
    summary="Cancel an unfinished job",
    parameters=[JOB_ID],
    request=None,
    responses={200: JobCancelResponseSerializer, **error_responses(401, 403, 404, 409)},
)
class JobCancelView(JobObjectMixin, generics.GenericAPIView):
    serializer_class = JobCancelResponseSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        job = services.job_cancel(job_id=self.get_object().pk)
        body = {"id": job.pk, "status": job.status, "cancelled": True,
                "message": "Job cancelled; a running task stops at its next checkpoint."}
        return Response(JobCancelResponseSerializer(body).data)


@extend_schema(
    summary="Retry a failed or cancelled job as a new attempt (or re-run any finished job from a stage)",
    description="The new attempt reuses every scene image and narration of earlier attempts whose inputs are "
                "unchanged (and whose files still exist); its events say `reused`. With `from_stage` any finished "
                "job, a completed one too, is re-run from that stage of its plan: the stages before it are not "
                "run again, their outputs are copied from the job's latest attempt (their events say `reused`), "
                "and that stage and every later one run as usual. `parse` reads the script again, so after an "
                "edit only the changed scenes render; `video` only assembles the video again. 400 naming "
                "`from_stage` when the plan has no such stage or the latest attempt did not finish the stages "
                "before it; 409 for an unfinished or external job.",
    parameters=[JOB_ID],
    request=JobRetryRequestSerializer,
    responses={200: JobSerializer, **error_responses(400, 401, 403, 404, 409, 429, 503)},
)
class JobRetryView(JobObjectMixin, generics.GenericAPIView):
    serializer_class = JobSerializer
    throttle_classes = [JobCreateThrottle]  # a retry queues work like a create does

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        job = self.get_object()
        body = JobRetryRequestSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        job = services.job_retry(job_id=job.pk, from_stage=body.validated_data.get("from_stage"))
        _with_place_in_line(job)
        return Response(JobSerializer(job).data)


@extend_schema(
    summary="A job's events in seq order",
    parameters=[JOB_ID, JobEventsQuerySerializer],
    responses={200: JobEventSerializer(many=True), **error_responses(400, *READ_ERRORS)},
)
class JobEventsView(JobObjectMixin, generics.ListAPIView):
    serializer_class = JobEventSerializer
    pagination_class = None  # resumable by after_seq instead of pages

    def get_queryset(self) -> QuerySet:
        job = self.get_object()  # first, so a foreign job is "not found" whatever the query says
        query = JobEventsQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        return selectors.job_events(job_id=job.pk, after_seq=query.validated_data["after_seq"])[:limit]

