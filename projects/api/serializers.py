"""CONTRACT.md's Project resource; writes go through projects.services."""
from __future__ import annotations

from rest_framework import serializers

from projects.models import Project

SCRIPT_MAX_CHARS = 200_000


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning them into text (the schema says string)."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProjectSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200, help_text="A short name (blank names are refused).")
    script = StrictCharField(
        required=False, allow_blank=True, default="", max_length=SCRIPT_MAX_CHARS, trim_whitespace=False,
        help_text="The script: scenes start with a `# heading` line.",
    )

    class Meta:
        model = Project
        fields = ["id", "name", "script", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
