"""Serializer building blocks of the API edge: strict JSON fields and a base serializer.

DRF's own fields coerce (`"5"` is an integer, `"yes"` a boolean, `5` a string); the contract's
bodies are JSON, so these fields take only the JSON type they name, and a `null` counts as absent
(as a missing required field when the field is required). Their messages are the API's: the
translator (`enigma_site.errors.validation_error`) turns the first one into the envelope
(`Invalid parameter '<path>': <message>`, `details.parameter` = `<path>`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from .errors import Code, invalid, validation_error


class NullIsMissing:
    """A required field given as `null` is missing (code "required"), like an absent one."""

    required: bool

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None and self.required:
            self.fail("required")  # type: ignore[attr-defined]
        return super().validate_empty_values(data)  # type: ignore[misc]


class IntegerField(NullIsMissing, serializers.IntegerField):
    """A JSON integer (`1.0` counts, `"1"` and `true` do not) from `low` to `high`."""

    def __init__(self, *, low: int, high: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high
        self.min_value, self.max_value = low, high  # for the document; no validators: the messages are below

    def to_internal_value(self, data: Any) -> int:
        if (
            isinstance(data, bool)
            or not isinstance(data, (int, float))
            or (isinstance(data, float) and not (math.isfinite(data) and data.is_integer()))
        ):
            raise invalid("must be an integer", value=data)
        value = int(data)
        if value < self.low:
            raise invalid(f"must be at least {self.low}", value=value, min=self.low)
        if value > self.high:
            raise invalid(f"must be at most {self.high}", value=value, max=self.high)
        return value


class NumberField(serializers.FloatField):
    """A JSON number (not a boolean), as a float."""

    default_error_messages = {"required": "This field is required.", "null": "must be a number"}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise invalid("must be a number")
        return float(data)


class BooleanField(NullIsMissing, serializers.BooleanField):
    """`true` or `false`, nothing else."""

    default_error_messages = {"required": "This field is required.", "null": "must be a boolean"}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise invalid("must be a boolean")
        return data


class CharField(NullIsMissing, serializers.CharField):
    """A JSON string (of at most `max_length` characters), kept as given (no trimming)."""

    default_error_messages = {"required": "This field is required.", "null": "must be a string"}

    def __init__(self, *, max_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)
        self.max_length = max_length  # no validator: the message is below

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise invalid("must be a string")
        if self.max_length is not None and len(data) > self.max_length:
            raise invalid(f"at most {self.max_length} characters")
        return data


class ChoiceField(NullIsMissing, serializers.ChoiceField):
    """One of `choices`; anything else (also `null` when there is a default) is refused with
    `message` ("must be one of a, b, c" unless given)."""

    message_code = "invalid"

    def __init__(self, choices: Iterable[str], *, message: str = "", **kwargs: Any) -> None:
        choices = list(choices)
        super().__init__(choices, **kwargs)
        self.message = message or "must be one of " + ", ".join(choices)
        self.error_messages["null"] = self.message

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or data not in self.choices:
            raise ValidationError(self.message, code=self.message_code)
        return data


class MessageChoiceField(ChoiceField):
    """A ChoiceField whose `message` is the whole error message (no "Invalid parameter" prefix)."""

    message_code = "message"


class ListField(NullIsMissing, serializers.ListField):
    """A JSON array; `message` when it is not one."""

    def __init__(self, *, message: str = "must be an array", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error_messages["not_a_list"] = message
        self.error_messages["null"] = message


class AnyField(serializers.JSONField):
    """Any JSON value; a serializer's `validate` decides."""


@extend_schema_field(OpenApiTypes.STR)
class LooseCharField(AnyField):
    """A string in the document; any JSON value reaches the serializer's `validate`, which
    words the error (compatibility: `required string` for a number, say)."""


class Serializer(serializers.Serializer):
    """A JSON object with only the declared fields: an unknown field is refused naming it
    (`Unknown field 'task.x'`) before anything else; so is a pair of alternative names given
    together (`either`: `Give either 'taskDetails' or 'prompt', not both`, checked just before
    the first of the two). Errors come in the order of the declared fields, so the one the
    client sees is the first wrong field."""

    default_error_messages = {"invalid": "must be an object", "null": "must be an object"}
    either: ClassVar[tuple[tuple[str, str], ...]] = ()
    strict: ClassVar[bool] = True  # False: unknown fields are ignored

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)
        if self.strict:
            for key in data:
                if key not in self.fields:
                    raise ValidationError({key: [ErrorDetail("Unknown field", code="unknown")]})
        order = {name: index for index, name in enumerate(self.fields)}
        errors: list[tuple[float, str, Any]] = [
            (order[first] - 0.5, second, [ErrorDetail(first, code=Code("either"))])
            for first, second in self.either
            if first in data and second in data
        ]
        errors += self.early_errors(data, order)
        try:
            value: dict[str, Any] = super().to_internal_value(data)
        except ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            errors += [(order.get(name, len(order)), name, detail) for name, detail in exc.detail.items()]
        if errors:
            errors.sort(key=lambda error: error[0])
            ordered: dict[str, Any] = {}
            for _, name, detail in errors:
                ordered.setdefault(name, detail)
            raise ValidationError(ordered)
        return value

    def early_errors(self, data: Mapping[str, Any], order: dict[str, int]) -> list[tuple[float, str, Any]]:
        """More (position, field, errors) found on the raw data (position: in `order`)."""
        return []

    def create(self, validated_data: Any) -> Any:  # input only: nothing is saved from a serializer
        raise NotImplementedError

    def update(self, instance: Any, validated_data: Any) -> Any:
        raise NotImplementedError


def validated(serializer: serializers.Serializer, prefix: str = "") -> Any:
    """The serializer's validated data, or raise the envelope error (ApiError) of its first
    error; `prefix` is the path of the serializer's data in the request (`message`)."""
    if not serializer.is_valid():
        raise validation_error(serializer.errors, prefix)
    return serializer.validated_data


class SuccessMessageSerializer(serializers.Serializer):
    """The answer of an endpoint that only says what it did: `{success: true, message}`."""

    success = serializers.BooleanField()
    message = serializers.CharField()
