"""Domain events of the inventory context."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from outbox.events import DomainEvent


@dataclass(frozen=True)
class StockLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Shortage:
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class ProductRestocked(DomainEvent):
    name = "inventory.restocked"
    aggregate_type = "product"
    aggregate_field = "sku"

    sku: str
    quantity: int
    on_hand: int


@dataclass(frozen=True)
class _ReservationEvent(DomainEvent):
    aggregate_type = "reservation"
    aggregate_field = "order_id"

    order_id: UUID
    lines: tuple[StockLine, ...]


@dataclass(frozen=True)
class StockReserved(_ReservationEvent):
    name = "inventory.reserved"


@dataclass(frozen=True)
class StockReleased(_ReservationEvent):
    name = "inventory.released"


@dataclass(frozen=True)
class ReservationCommitted(_ReservationEvent):
    name = "inventory.committed"


@dataclass(frozen=True)
class ReservationRejected(DomainEvent):
    name = "inventory.reservation_rejected"
    aggregate_type = "reservation"
    aggregate_field = "order_id"

    order_id: UUID
    shortages: tuple[Shortage, ...]
