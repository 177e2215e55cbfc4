"""Representations of jobs and events, and the input shapes of the jobs API.

Serializers only describe and check shapes; creating or changing a job is the job service's work.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs import plans, states
from jobs.models import PRIORITIES, PRIORITY_NORMAL, GenerationJob, JobEvent
from webhooks.fields import WebhookEventsField, WebhookUrlField, default_events

_ALLOWED_TYPES = ", ".join(plans.JOB_TYPES)
_ALLOWED_STATUSES = ", ".join(states.STATUSES)
CANCELLED_CHOICES = (states.CANCELLED,)


@extend_schema_field({
    "type": "object",
    "nullable": True,
    "description": "null until the job completes; then its artifacts (URLs need the job's auth) and more.",
    "properties": {
        "artifacts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": list(plans.ARTIFACT_KINDS)},
                    "url": {"type": "string"},
                    "bytes": {"type": "integer"},
                    "content_type": {"type": "string"},
                    "name": {"type": "string", "description": "The file's name."},
                    "scene": {"type": "integer", "description": "The scene (1-based) of a per-scene artifact."},
                },
                "required": ["kind", "url", "bytes", "content_type"],
            },
        },
    },
    "additionalProperties": True,
})
class JobResultField(serializers.JSONField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "The job's parameters, defaults filled in."})
class JobParamsField(serializers.JSONField):
    pass


class JobSerializer(serializers.ModelSerializer):
    """CONTRACT.md's Job resource, field for field."""

    project_id = serializers.UUIDField(read_only=True)
    current_stage = serializers.CharField(read_only=True)
    error_message = serializers.CharField(read_only=True, allow_null=True)
    celery_task_id = serializers.CharField(read_only=True)
    params = JobParamsField(read_only=True)
    result = JobResultField(read_only=True, allow_null=True)
    queue_position = serializers.IntegerField(
        source="current_queue_position", read_only=True, allow_null=True,
        help_text="While queued: the job's place in line in its queue (1 = starts next; null for a moment "
                  "after it starts waiting, until its place is computed); null otherwise.")

    class Meta:
        model = GenerationJob
        fields = [
            "id", "project_id", "job_type", "status", "progress", "current_stage", "error_message",
            "celery_task_id", "params", "result", "attempts", "seq", "created_at", "started_at",
            "completed_at", "updated_at", "webhook_url", "webhook_events_filter", "priority", "queue_position",
            "start_timeout_s", "max_runtime_s",
        ]
        read_only_fields = fields

    # DRF builds a ModelSerializer's fields anew for every instance (model introspection, deep copies): for
    # GET /api/jobs/{id}/ that was most of the serializer's cost. Every field here is read-only and its
    # to_representation depends on neither the request nor the parent, so one set, built on a serializer of
    # its own, serves all instances; the output is DRF's own, field by field.
    _shared_fields: list[tuple[str, serializers.Field]] | None = None

    def to_representation(self, instance: GenerationJob) -> dict:
        cls = type(self)
        shared = cls.__dict__.get("_shared_fields")
        if shared is None:
            shared = [(name, field) for name, field in cls(context={}).fields.items() if not field.write_only]
            cls._shared_fields = shared
        out = {}
        for name, field in shared:
            value = field.get_attribute(instance)
            out[name] = None if value is None else field.to_representation(value)
        return out


class JobCreateSerializer(serializers.Serializer):
    """POST /api/jobs/ input; `params` are checked against the job type's schema by the job service."""

    project_id = serializers.UUIDField(help_text="One of your projects.")
    job_type = serializers.ChoiceField(
        choices=plans.JOB_TYPES,
        error_messages={"invalid_choice": f'"{{input}}" is not a valid job type; allowed: {_ALLOWED_TYPES}.'},
    )
    params = serializers.DictField(
        required=False, default=dict,
        help_text="Options of the job type (see the pipeline's parameter schema); defaults apply to missing keys.",
    )
    webhook_url = WebhookUrlField(required=False, allow_null=True, default=None,
                                  help_text="Where to POST this job's events (http or https, a public address).")
    webhook_events_filter = WebhookEventsField(
        required=False, default=default_events,
        help_text="Events to send: start, progress, artifact, completed (any terminal status).",
    )
    priority = serializers.ChoiceField(
        choices=PRIORITIES, required=False, default=PRIORITY_NORMAL,
        error_messages={"invalid_choice": f'"{{input}}" is not a priority; allowed: {", ".join(PRIORITIES)} '
                                          "(high for staff only)."},
        help_text="low or normal; staff may also ask high. Weighs the owner's turns between users.",
    )
    start_timeout_s = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=2**31 - 1,
        help_text="Still queued after this many seconds: cancelled, error_message starting with 'expired'.")
    max_runtime_s = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=2**31 - 1,
        help_text="Processing longer than this: failed 'timed out …' (never more than JOB_TIME_LIMIT_S).")


class StrictQuerySerializer(serializers.Serializer):
    """Query parameters where `?name=` and a repeated `?name=a&name=b` are errors, not silently ignored."""

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        errors = {}
        for name in self.fields:
            values = data.getlist(name) if hasattr(data, "getlist") else []
            if len(values) > 1:
                errors[name] = ["Give this parameter once."]
            elif values == [""]:
                errors[name] = ["May not be blank; leave the parameter out instead."]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class JobListFilterSerializer(StrictQuerySerializer):
    """Query parameters of GET /api/jobs/; bad values answer 400 naming the parameter."""

    project_id = serializers.UUIDField(required=False, help_text="Only this project's jobs.")
    status = serializers.ChoiceField(
        choices=states.STATUSES, required=False,
        error_messages={"invalid_choice": f'"{{input}}" is not a valid status; allowed: {_ALLOWED_STATUSES}.'},
    )
    job_type = serializers.ChoiceField(
        choices=plans.JOB_TYPES, required=False,
        error_messages={"invalid_choice": f'"{{input}}" is not a valid job type; allowed: {_ALLOWED_TYPES}.'},
    )


class JobEventsQuerySerializer(StrictQuerySerializer):
    after_seq = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=2**31 - 1,
        help_text="Only events with a larger seq (resume after the last one you saw).",
    )
    limit = serializers.IntegerField(
        required=False, default=1000, min_value=1, max_value=1000,
        help_text="At most this many events; ask again with the last seq for more.",
    )


class JobRetryRequestSerializer(serializers.Serializer):
    from_stage = serializers.CharField(
        required=False, max_length=32,
        help_text="Re-run from this stage of the job type's plan (full_video: `parse`, `images`, `audio`, `video`; "
                  "a stage of a parallel step means the whole step), which a completed job may too. The stages "
                  "before it are not run again: their outputs are taken from the job's latest attempt (400 if it "
                  "did not finish them). `parse` reads the script again; every per-scene stage reuses the scenes "
                  "whose inputs are unchanged.",
    )


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["seq", "status", "progress", "stage", "message", "kind", "attempt", "data", "created_at"]
        read_only_fields = fields


class JobCancelResponseSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=CANCELLED_CHOICES)
    cancelled = serializers.BooleanField()
    message = serializers.CharField()
