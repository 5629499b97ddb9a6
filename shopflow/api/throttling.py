"""Throttles (rates are settings, `THROTTLE_*_RATE`) and the failed log-in lockout's answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.throttling import AnonRateThrottle

LOCKED_OUT = "Too many failed log-in attempts; try again later."


class AuthRateThrottle(AnonRateThrottle):
    """Register and token requests per client address: slows password guessing."""

    scope = "auth"


def client_address(request: HttpRequest) -> str:
    """The client's address as DRF's throttles see it (`THROTTLE_NUM_PROXIES` trusted proxies).

    django-axes keys failed log-ins by it, so both agree on who the client is.
    """
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    if forwarded and proxies:
        addresses = [a.strip() for a in forwarded.split(",")]
        return addresses[-min(proxies, len(addresses))]
    return remote


def login_lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' answer to a locked-out log-in: 429, JSON under /api/, with Retry-After."""
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": LOCKED_OUT}, status=429)
    else:
        response = HttpResponse(LOCKED_OUT, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
