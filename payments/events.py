"""Domain events of the payments context."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from outbox.events import DomainEvent


@dataclass(frozen=True)
class _PaymentEvent(DomainEvent):
    aggregate_type = "payment"
    aggregate_field = "order_id"

    order_id: UUID
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class PaymentCaptured(_PaymentEvent):
    name = "payment.captured"

    provider_ref: str


@dataclass(frozen=True)
class PaymentDeclined(_PaymentEvent):
    name = "payment.declined"

    reason: str


@dataclass(frozen=True)
class PaymentRefunded(_PaymentEvent):
    name = "payment.refunded"

    refund_ref: str
