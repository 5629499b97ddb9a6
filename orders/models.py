"""The order aggregate, its lines, its timeline and the API's idempotency keys."""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

from orders.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderFailed,
    OrderShipped,
)
from outbox.models import EventSource


class InvalidTransition(Exception):
    """The order's status does not allow the requested change."""

    def __init__(self, current: str, target: str) -> None:
        self.current, self.target = current, target
        super().__init__(f"an order that is {current} cannot become {target}")


class Status(models.TextChoices):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


# The only allowed transitions (CONTRACT §2); nothing else assigns `status`.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.CONFIRMED, Status.FAILED, Status.CANCELLED}),
    Status.CONFIRMED: frozenset({Status.SHIPPED, Status.CANCELLED}),
    Status.SHIPPED: frozenset({Status.DELIVERED}),
    Status.DELIVERED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.FAILED: frozenset(),
}
FINAL_STATUSES = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class FailureReason(models.TextChoices):
    INSUFFICIENT_STOCK = "insufficient_stock"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_UNAVAILABLE = "payment_unavailable"
    SHIPPING_UNAVAILABLE = "shipping_unavailable"


def new_order_number() -> str:
    """A short, unambiguous, human-readable order number (`SF-7K3QX9M2`)."""
    # 40 random bits, 5 per character: as uniform as eight draws, from one read of the
    # system's random source instead of eight.
    bits = int.from_bytes(secrets.token_bytes(5))
    return "SF-" + "".join(_CROCKFORD[(bits >> shift) & 31] for shift in range(35, -1, -5))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # base32 without I, L, O, U


class Order(EventSource, models.Model):
    """A customer's order; its status moves only along `TRANSITIONS`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=20, unique=True, default=new_order_number)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    currency = models.CharField(max_length=3)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    shipping_address = models.JSONField()
    # Only the gateway's token; no card data is ever stored.
    payment_token = models.CharField(max_length=255)
    cancel_reason = models.CharField(max_length=500, blank=True)
    failure_reason = models.CharField(max_length=30, choices=FailureReason.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.number} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def _move_to(self, target: str) -> str:
        if target not in TRANSITIONS[self.status]:
            raise InvalidTransition(self.status, target)
        previous, self.status = self.status, target
        return previous

    def confirm(self) -> None:
        """The saga succeeded: stock reserved, payment captured, shipment scheduled."""
        self._move_to(Status.CONFIRMED)
        self.raise_event(OrderConfirmed(order_id=self.id))

    def fail(self, reason: str) -> None:
        """The saga gave up and compensated; `reason` is a `FailureReason`."""
        if reason not in FailureReason.values:
            raise ValueError(f"unknown failure reason {reason!r}")
        self._move_to(Status.FAILED)
        self.failure_reason = reason
        self.raise_event(OrderFailed(order_id=self.id, reason=reason))

    def cancel(self, reason: str = "") -> None:
        """The customer or an operator called the order off."""
        previous = self._move_to(Status.CANCELLED)
        self.cancel_reason = reason
        self.raise_event(OrderCancelled(order_id=self.id, reason=reason, previous_status=previous))

    def mark_shipped(self) -> None:
        """The carrier picked the parcel up."""
        self._move_to(Status.SHIPPED)
        self.raise_event(OrderShipped(order_id=self.id))

    def mark_delivered(self) -> None:
        """The carrier delivered the parcel."""
        self._move_to(Status.DELIVERED)
        self.raise_event(OrderDelivered(order_id=self.id))


class OrderItem(models.Model):
    """One line of an order, priced from the catalog at placement."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey("inventory.Product", on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sku"], name="order_item_unique_sku"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


class TimelineEntry(models.Model):
    """One domain event about an order, kept for the order's timeline.

    Written in the transaction that records the event (see `orders.signals`),
    and kept after the outbox purges the event itself.
    """

    order_id = models.UUIDField(db_index=True)
    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=100)
    occurred_at = models.DateTimeField()
    data = models.JSONField()

    class Meta:
        ordering = ["occurred_at", "id"]
        verbose_name_plural = "timeline entries"

    def __str__(self) -> str:
        return f"{self.type} @ {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` for order placement and the response it got.

    While a request holds the key, `lock_id` names it and `completed_at` is null;
    see `orders.idempotency` for how the row guards against double placement.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The rendered JSON text: jsonb would reorder the keys of a replayed body.
    response_body = models.TextField(blank=True, default="")
    response_headers = models.JSONField(default=dict, blank=True)
    lock_id = models.UUIDField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
