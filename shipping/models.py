"""Shipments of orders, the carrier webhook's dedup record, and the sandbox's bookings."""

from __future__ import annotations

from django.db import models

from outbox.models import EventSource


class Shipment(EventSource, models.Model):
    """The parcel of one order, from booking to delivery."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"

    # Which carrier updates a shipment in each status may take.
    CARRIER_TRANSITIONS = {
        Status.SCHEDULED: frozenset({Status.SHIPPED}),
        Status.SHIPPED: frozenset({Status.DELIVERED}),
        Status.DELIVERED: frozenset(),
        Status.CANCELLED: frozenset(),
    }

    order_id = models.UUIDField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    tracking_number = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tracking_number} ({self.status})"


class CarrierWebhookEvent(models.Model):
    """A carrier notification already applied: a repeated `event_id` has no second effect."""

    event_id = models.CharField(max_length=100, unique=True)
    tracking_number = models.CharField(max_length=64)
    status = models.CharField(max_length=20)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_id}: {self.tracking_number} {self.status}"


class SandboxBooking(models.Model):
    """A pickup the sandbox carrier booked (its own record, keyed like a real API)."""

    idempotency_key = models.CharField(max_length=255, unique=True)
    tracking_number = models.CharField(max_length=64, unique=True)
    cancelled = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.tracking_number
