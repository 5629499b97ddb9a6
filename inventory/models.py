"""Products with their stock, and the reservations orders hold against it."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Q

from outbox.models import EventSource


class Product(EventSource, models.Model):
    """A catalog item; `reserved` units are promised to orders, not yet shipped."""

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    active = models.BooleanField(default=True)
    on_hand = models.PositiveIntegerField(default=0)
    reserved = models.PositiveIntegerField(default=0)
    # What `manage.py audit` checks stock against: on_hand = initial_stock +
    # restocked_total - units committed to shipped orders. Never edited by hand.
    initial_stock = models.PositiveIntegerField(default=0, editable=False)
    restocked_total = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            # The last line of defence: services never let these happen.
            models.CheckConstraint(condition=Q(reserved__gte=0), name="product_reserved_gte_0"),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")), name="product_reserved_lte_on_hand"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} ({self.name})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A new product starts with what it has on hand, however it is created.
        if self._state.adding and not self.initial_stock:
            self.initial_stock = self.on_hand
        super().save(*args, **kwargs)

    @property
    def available(self) -> int:
        """Units that can still be reserved."""
        return max(self.on_hand - self.reserved, 0)


class Reservation(EventSource, models.Model):
    """The stock held for one order: all of its lines, or none."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        RELEASED = "released"
        COMMITTED = "committed"

    order_id = models.UUIDField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"reservation for {self.order_id} ({self.status})"


class ReservationLine(models.Model):
    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="reservation_lines")
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "product"], name="reservation_line_unique"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_line_qty_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"
