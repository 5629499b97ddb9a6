"""Domain events of the shipping context."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from outbox.events import DomainEvent


@dataclass(frozen=True)
class _ShipmentEvent(DomainEvent):
    aggregate_type = "shipment"
    aggregate_field = "order_id"

    order_id: UUID


@dataclass(frozen=True)
class ShipmentScheduled(_ShipmentEvent):
    name = "shipment.scheduled"

    tracking_number: str


@dataclass(frozen=True)
class ShipmentRejected(_ShipmentEvent):
    name = "shipment.rejected"

    reason: str


@dataclass(frozen=True)
class ShipmentCancelled(_ShipmentEvent):
    name = "shipment.cancelled"

    tracking_number: str
