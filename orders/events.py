"""Domain events of the order aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from outbox.events import DomainEvent


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class _OrderEvent(DomainEvent):
    aggregate_type = "order"
    aggregate_field = "order_id"

    order_id: UUID


@dataclass(frozen=True)
class OrderCreated(_OrderEvent):
    name = "order.created"

    number: str
    customer_id: int
    total: Decimal
    currency: str
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True)
class OrderConfirmed(_OrderEvent):
    name = "order.confirmed"


@dataclass(frozen=True)
class OrderShipped(_OrderEvent):
    name = "order.shipped"


@dataclass(frozen=True)
class OrderDelivered(_OrderEvent):
    name = "order.delivered"


@dataclass(frozen=True)
class OrderCancelled(_OrderEvent):
    name = "order.cancelled"

    reason: str
    previous_status: str


@dataclass(frozen=True)
class OrderFailed(_OrderEvent):
    name = "order.failed"

    reason: str
