"""Serializer fields that take JSON values as they are, never coercing their type."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string only (not a number), storable as UTF-8 text.

    DRF's CharField turns `12345` into `"12345"`; a lone surrogate (`"\\ud800"`)
    parses from JSON but cannot be encoded for PostgreSQL, so it is refused here.
    NUL characters are refused by CharField's own validator.
    """

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: `2.0`, `"2"`, `"2.5"` and `true` are refused."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)
