"""The API's one exception handler: services raise domain errors, this maps them to HTTP."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import exceptions, serializers, status, views
from rest_framework.response import Response

from inventory.services import InsufficientStock, UnknownProduct
from orders.idempotency import IdempotencyKeyInFlight, IdempotencyKeyReused
from orders.models import InvalidTransition
from orders.services import UnavailableProducts


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request."
    default_code = "bad_request"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, after turning domain errors into API exceptions."""
    return views.exception_handler(api_exception(exc), context)


def api_exception(exc: Exception) -> Exception:
    """The API exception a domain or Django error stands for (or `exc` unchanged)."""
    match exc:
        case InvalidTransition() | InsufficientStock():
            return Conflict(str(exc))
        case UnknownProduct():
            return exceptions.NotFound(f"No product with SKU {exc.args[0]!r}.")
        case UnavailableProducts():
            return exceptions.ValidationError(
                {"items": [f"Unknown or inactive SKU: {sku}." for sku in exc.skus]}
            )
        case IdempotencyKeyReused():
            return UnprocessableEntity(
                "This Idempotency-Key was already used with a different request body."
            )
        case IdempotencyKeyInFlight():
            return Conflict("A request with this Idempotency-Key is still being processed.")
        case DjangoValidationError():
            return exceptions.ValidationError(serializers.as_serializer_error(exc))
        case ObjectDoesNotExist():
            return exceptions.NotFound()
        case DataError():
            # Input that passed validation but not the column (a total past 14 digits).
            return BadRequest("A value is out of the range that can be stored.")
    return exc
