"""Persisted saga state: the record compensation is decided from.

Celery's errbacks are dropped in nested chains, replaced tasks and chords
(celery#4763, #6441, #4232, #3317), so nothing here depends on them: every
task reads this state, under a row lock, to decide what to do next.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class Saga(models.Model):
    """One run of a saga definition for one business key (an order id)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        COMPENSATING = "compensating"
        COMPENSATED = "compensated"
        COMPENSATION_FAILED = "compensation_failed"

    ACTIVE = (Status.RUNNING, Status.COMPENSATING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    definition = models.CharField(max_length=100)
    key = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    current_step = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    failure_reason = models.CharField(max_length=50, blank=True)
    last_error = models.TextField(blank=True)
    # When the watchdog should look again if no task has moved the saga by then.
    wake_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["definition", "key"], name="saga_unique_definition_key")
        ]
        indexes = [
            models.Index(
                fields=["wake_at"],
                name="saga_active_wake_idx",
                condition=Q(status__in=["running", "compensating"]),
            ),
            # The dashboard's and the audit's counts by state.
            models.Index(fields=["status"], name="saga_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.definition} {self.key} ({self.status})"


class SagaStep(models.Model):
    """One step of a saga: its action's progress, then its compensation's."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        COMPENSATING = "compensating"
        COMPENSATED = "compensated"
        COMPENSATION_FAILED = "compensation_failed"

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    compensation_attempts = models.PositiveIntegerField(default=0)
    # The compensation attempts spent before an operator's last retry: the retry
    # gets a fresh budget without reusing attempt numbers.
    compensation_attempts_before_retry = models.PositiveIntegerField(default=0, db_default=0)
    # The fencing token of the step's latest claim, action or compensation: only the
    # attempt holding it may write (sagas/fencing.py). Never goes back.
    fence = models.PositiveIntegerField(default=0, db_default=0)
    result = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    # The action's last attempt failed transiently (a timeout, say), so it may have
    # acted all the same: compensation undoes it too, by its idempotency key.
    in_doubt = models.BooleanField(default=False, db_default=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    compensated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["saga", "index"]
        constraints = [
            models.UniqueConstraint(fields=["saga", "index"], name="saga_step_unique_index")
        ]

    def __str__(self) -> str:
        return f"{self.index}. {self.name} ({self.status})"
