"""The outbox: one row per domain event, one delivery row per (event, handler).

The delivery row is both the fan-out and the inbox: it is unique on
(event, handler), and a worker marks it done in the same transaction as the
handler's own writes, so a redelivered message finds it done and does nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Q

from outbox.events import DomainEvent


class EventSource:
    """Mixin for models whose methods raise domain events.

    `raise_event()` only collects; the `post_save` receiver in `outbox.signals`
    writes what was collected to the outbox in the same transaction as the save.
    """

    def raise_event(self, event: DomainEvent) -> None:
        """Collect an event to be written to the outbox when this object is saved."""
        self.__dict__.setdefault("_pending_events", []).append(event)

    def has_pending_events(self) -> bool:
        """Whether events were raised since the last save."""
        return bool(self.__dict__.get("_pending_events"))

    def collect_events(self) -> list[DomainEvent]:
        """Take (and forget) the events raised since the last save."""
        return self.__dict__.pop("_pending_events", [])


class OutboxEvent(models.Model):
    """A domain event, written in the transaction that changed the aggregate."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=100, db_index=True)
    version = models.PositiveSmallIntegerField(default=1)
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=64)
    payload = models.JSONField()
    headers = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["aggregate_type", "aggregate_id", "id"])]

    def __str__(self) -> str:
        return f"#{self.id} {self.type} {self.aggregate_type}:{self.aggregate_id}"

    def to_event(self) -> DomainEvent:
        """The typed event this row stores (raises `UnknownEventType`)."""
        from outbox.events import event_class

        return event_class(self.type).from_payload(self.payload)

    @property
    def correlation_id(self) -> Any:
        return self.headers.get("correlation_id")


class Delivery(models.Model):
    """One handler's copy of one event: its state, attempts, lease and last error.

    `attempts` counts handler starts, each committed before the handler runs,
    so a start that kills its worker is counted too.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        DEAD = "dead"

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    handler = models.CharField(max_length=200)
    # "<aggregate_type>:<aggregate_id>": the unit of ordering for one handler.
    aggregate_key = models.CharField(max_length=120)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_id = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The lease under which a worker last started the handler, until that start
    # has an outcome (done, retry, dead). Still set under a later lease, it says
    # the worker died mid-handler (OOM, segfault): the delivery is a suspect.
    started_lease_id = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # An operator saw this dead letter and accepted it (`manage.py audit` stops
    # reporting it). Dead letters record their death in `next_attempt_at`, so an
    # acknowledgement older than that is for an earlier death and no longer counts.
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "handler"], name="delivery_unique_event_handler"
            )
        ]
        indexes = [
            # The relay's claim: due, unfinished rows in id order.
            models.Index(fields=["id"], name="delivery_pending_idx", condition=Q(status="pending")),
            # "Is an earlier delivery of this aggregate unfinished for this handler?"
            models.Index(
                fields=["handler", "aggregate_key", "id"],
                name="delivery_unfinished_idx",
                condition=~Q(status="done"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.handler} ← {self.event_id} ({self.status})"
