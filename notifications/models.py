"""The record of each customer e-mail: one per (event, kind), so none is sent twice."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Notification(models.Model):
    """An e-mail about an order event, and whether it went out."""

    class Kind(models.TextChoices):
        CONFIRMED = "confirmed"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"
        FAILED = "failed"

    class Status(models.TextChoices):
        SENDING = "sending"  # claimed by a send under way, until `claimed_until`
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"  # the customer has no e-mail address

    event_id = models.UUIDField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    order_id = models.UUIDField(db_index=True)
    recipient = models.EmailField(blank=True)
    subject = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A send claims the row before it talks to the SMTP server, outside any
    # transaction; a claim whose sender died is taken over after this instant.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # "Send again" from the admin is explicit and leaves a trace here.
    resent_count = models.PositiveIntegerField(default=0)
    last_resent_at = models.DateTimeField(null=True, blank=True)
    last_resent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "kind"], name="notification_unique_event_kind"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} e-mail for {self.order_id} ({self.status})"
