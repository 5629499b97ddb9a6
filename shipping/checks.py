"""Deployment checks of the shipping context (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning


@register(Tags.security, deploy=True)
def carrier_webhook_secret_check(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    """The carrier webhook needs a secret of its own in production."""
    secret = settings.CARRIER_WEBHOOK_SECRET
    if secret and secret != settings.DEV_CARRIER_WEBHOOK_SECRET:
        return []
    return [
        CheckWarning(
            "CARRIER_WEBHOOK_SECRET is unset or the development value: the carrier webhook "
            "refuses every request (unset) or accepts anyone who read the source (dev value).",
            hint="Set CARRIER_WEBHOOK_SECRET to the HMAC key your carrier signs webhooks with.",
            id="shipping.W001",
        )
    ]
