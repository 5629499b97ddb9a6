"""The carrier's signed webhook: verify, deduplicate by `event_id`, apply once."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from shipping.models import CarrierWebhookEvent
from shipping.services import shipment_advance

SIGNATURE_PREFIX = "sha256="


def signature_for(body: bytes, secret: str | None = None) -> str:
    """The `X-Carrier-Signature` value a carrier sends for `body`."""
    key = (secret or settings.CARRIER_WEBHOOK_SECRET).encode()
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_is_valid(body: bytes, header: str | None) -> bool:
    """Constant-time check of the header against the body's HMAC; never valid without a secret."""
    if not settings.CARRIER_WEBHOOK_SECRET or not header:
        return False  # an empty key would make every signature computable by anyone
    return hmac.compare_digest(signature_for(body), header.strip())


def carrier_event_apply(
    *, event_id: str, tracking_number: str, status: str, occurred_at: datetime | None
) -> bool:
    """Apply a carrier update once; returns False when `event_id` was already applied.

    The dedup record commits with the update, so a rejected update (unknown
    tracking number, impossible status) can be sent again once it makes sense.
    """
    try:
        with transaction.atomic():
            CarrierWebhookEvent.objects.create(
                event_id=event_id,
                tracking_number=tracking_number,
                status=status,
                occurred_at=occurred_at,
            )
            shipment_advance(tracking_number=tracking_number, status=status)
    except IntegrityError:
        if CarrierWebhookEvent.objects.filter(event_id=event_id).exists():
            return False
        raise
    return True
