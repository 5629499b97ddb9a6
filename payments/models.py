"""Payments of orders, and the sandbox gateway's own ledger."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from outbox.models import EventSource


class Payment(EventSource, models.Model):
    """The money side of one order: at most one charge, refunded at most once in full."""

    class Status(models.TextChoices):
        PENDING = "pending"
        CAPTURED = "captured"
        DECLINED = "declined"
        REFUNDED = "refunded"

    order_id = models.UUIDField(unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # The gateway's token for the card; no card data is stored.
    token = models.CharField(max_length=255)
    idempotency_key = models.CharField(max_length=255, unique=True)
    provider_ref = models.CharField(max_length=100, blank=True)
    refund_ref = models.CharField(max_length=100, blank=True)
    decline_reason = models.CharField(max_length=200, blank=True)
    # Set by a compensation that found no charge under the key: no charge call is made
    # for it any more, and a charge still in flight that lands later is refunded at once.
    closed = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_gte_0")
        ]
        indexes = [
            # The late-charge sweep's rows: a handful at most, among all payments.
            models.Index(
                fields=["id"],
                name="payment_late_charge_idx",
                condition=Q(closed=True, status="captured"),
            ),
            # ... and the payments it asks the gateway about again: closed, not captured.
            models.Index(
                fields=["updated_at"],
                name="payment_closed_recent_idx",
                condition=Q(closed=True) & ~Q(status="captured") & ~Q(status="refunded"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} for {self.order_id} ({self.status})"

    @property
    def refund_key(self) -> str:
        """The idempotency key of the payment's one full refund, whoever asks for it."""
        return f"{self.idempotency_key}:refund"


class SandboxLedgerEntry(models.Model):
    """A charge or refund the sandbox gateway made: the record of money moved."""

    class Kind(models.TextChoices):
        CHARGE = "charge"
        REFUND = "refund"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    reference = models.CharField(max_length=100, unique=True)
    idempotency_key = models.CharField(max_length=255)
    charge_reference = models.CharField(max_length=100, blank=True, db_index=True)
    token = models.CharField(max_length=255, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "sandbox ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "idempotency_key"], name="ledger_unique_kind_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference} {self.amount} {self.currency}"


class SandboxCall(models.Model):
    """How often the sandbox was called with one idempotency key (drives tok_flaky)."""

    kind = models.CharField(max_length=10)
    idempotency_key = models.CharField(max_length=255)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "idempotency_key"], name="sandbox_call_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}: {self.attempts}"
