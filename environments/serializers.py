"""Request and response shapes of the environment, profile and file endpoints (api.md §5.1, §5.2);
errors reach the client through `enigma_site.errors.validation_error`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from enigma_site.errors import Code, invalid
from enigma_site.serializers import LooseCharField, Serializer, SuccessMessageSerializer

from . import selectors
from .models import Environment

MAX_FILES_PER_UPLOAD = 20


class EnvironmentCreateSerializer(Serializer):
    """`{name, description?}` of POST /environments and /profiles (`noun`: which of the two, for
    the messages)."""

    name = LooseCharField(allow_null=True, help_text=f"required, at most {Environment.NAME_MAX} characters")
    description = LooseCharField(
        required=False, allow_null=True, help_text=f"at most {Environment.DESCRIPTION_MAX} characters"
    )

    def __init__(self, *args: Any, noun: str = "Environment", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.noun = noun
        self.fields["name"].error_messages["required"] = f"{noun} name is required"

    def validate_name(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{self.noun} name is required", code="required")
        return value.strip()

    def validate_description(self, value: Any) -> str:
        if not isinstance(value or "", str):
            raise invalid("must be a string")
        return value or ""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        name, description = attrs["name"], attrs.get("description", "")
        limits = (
            ("name", name, Environment.NAME_MAX, f"{self.noun} name"),
            ("description", description, Environment.DESCRIPTION_MAX, "Description"),
        )
        for field, value, limit, label in limits:
            if len(value) > limit:
                message = f"{label} must be at most {limit} characters"
                raise ValidationError({field: [ErrorDetail(message, code=Code("message", max=limit))]})
        return {"name": name, "description": description}


class FileUploadSerializer(Serializer):
    """multipart/form-data of POST /files/upload: one or more `files`, an optional
    `environmentId` whose files they join (else they are deleted after an hour unless a task
    uses them). `context["team"]`: whose environment it must be."""

    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), help_text=f"1 to {MAX_FILES_PER_UPLOAD} files"
    )
    environmentId = LooseCharField(required=False, allow_null=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["files"].error_messages["required"] = "No files provided"

    def validate_files(self, value: list[Any]) -> list[Any]:
        if len(value) > MAX_FILES_PER_UPLOAD:
            message = f"At most {MAX_FILES_PER_UPLOAD} files per upload"
            raise ValidationError(message, code=Code("message", max=MAX_FILES_PER_UPLOAD))
        return value

    def validate_environmentId(self, value: Any) -> Environment | None:  # noqa: N802 (the field's name)
        if not value:
            return None
        team = self.context["team"]
        if not selectors.environment_exists(team=team, environment_id=value):
            raise ValidationError(f"Environment {value} not found", code="message")
        return selectors.environment_get(team=team, environment_id=value)


class ProfileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="a .tar.gz holding storage_state.json")


# ----- response shapes -----------------------------------------------------------------------


class EnvironmentSerializer(serializers.Serializer):
    _id = serializers.CharField()
    userId = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    status = serializers.ChoiceField(Environment.Status.values)
    blobSize = serializers.IntegerField(help_text="bytes of profile data")
    blobUploadedAt = serializers.DateTimeField(allow_null=True)
    lastUsedAt = serializers.DateTimeField(allow_null=True)
    usageCount = serializers.IntegerField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


class UploadedEnvironmentSerializer(serializers.Serializer):
    _id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(Environment.Status.values)
    blobSize = serializers.IntegerField()
    blobUploadedAt = serializers.DateTimeField(allow_null=True)


class EnvironmentFileSerializer(serializers.Serializer):
    fileId = serializers.CharField()
    originalName = serializers.CharField()
    size = serializers.IntegerField()
    createdAt = serializers.DateTimeField()


class UploadedFileSerializer(serializers.Serializer):
    fileId = serializers.CharField()
    originalName = serializers.CharField()
    size = serializers.IntegerField()


class EnvironmentListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    environments = EnvironmentSerializer(many=True)


class ProfileListSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    profiles = EnvironmentSerializer(many=True)


class EnvironmentCreatedSerializer(SuccessMessageSerializer):
    environment = EnvironmentSerializer()


class ProfileCreatedSerializer(SuccessMessageSerializer):
    profile = EnvironmentSerializer()


class EnvironmentUploadedSerializer(SuccessMessageSerializer):
    environment = UploadedEnvironmentSerializer()


class ProfileUploadedSerializer(SuccessMessageSerializer):
    profile = UploadedEnvironmentSerializer()


class ProfileDownloadSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    downloadUrl = serializers.URLField(help_text="works without the key until it expires")
    expiresIn = serializers.IntegerField(help_text="seconds")


class EnvironmentFilesSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    files = EnvironmentFileSerializer(many=True)


class FilesUploadedSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    files = UploadedFileSerializer(many=True)
