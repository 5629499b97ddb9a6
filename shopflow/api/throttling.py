"""Throttles; their rates are settings (`THROTTLE_*_RATE`)."""

from rest_framework.throttling import AnonRateThrottle


class AuthRateThrottle(AnonRateThrottle):
    """Register and token requests per client address: slows password guessing."""

    scope = "auth"
