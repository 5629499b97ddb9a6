"""A sandbox carrier (CONTRACT §3): serves every country but Antarctica (`AQ`)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from shipping.carriers import CarrierRejected
from shipping.models import SandboxBooking

UNSERVED_COUNTRIES = frozenset({"AQ"})


class SandboxCarrier:
    """The default carrier (settings.SHIPPING_CARRIER)."""

    def schedule(self, *, order_id: Any, address: dict[str, str], idempotency_key: str) -> str:
        time.sleep(settings.SHIPPING_SANDBOX_DELAY_SECONDS)
        if str(address.get("country", "")).upper() in UNSERVED_COUNTRIES:
            raise CarrierRejected(f"the carrier does not serve {address.get('country')}")
        booking = SandboxBooking.objects.filter(idempotency_key=idempotency_key).first()
        if booking is None:
            try:
                with transaction.atomic():
                    booking = SandboxBooking.objects.create(
                        idempotency_key=idempotency_key,
                        tracking_number="SB" + secrets.token_hex(8).upper(),
                    )
            except IntegrityError:  # the same key booked concurrently: keep the first
                booking = SandboxBooking.objects.get(idempotency_key=idempotency_key)
        return booking.tracking_number

    def find(self, *, idempotency_key: str) -> str | None:
        time.sleep(settings.SHIPPING_SANDBOX_DELAY_SECONDS)
        booking = SandboxBooking.objects.filter(idempotency_key=idempotency_key).first()
        return booking.tracking_number if booking else None

    def cancel(self, *, tracking_number: str) -> None:
        SandboxBooking.objects.filter(tracking_number=tracking_number).update(cancelled=True)
