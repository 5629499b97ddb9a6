"""Fencing: only the current attempt of a step may write what it did.

A claim gives a step a lease and a new fencing token (`SagaStep.fence`). An
attempt whose lease ran out (a slow provider, a GC pause, a frozen VM) may
still be running when the engine has given the step to a newer attempt, or
moved on to compensate it. Every local write an action makes (the
reservation, the recorded capture, the recorded booking) therefore calls its
`Fence` inside the writing transaction: the step row is locked there until
commit, and the write goes through only while the token is still the step's
current running one. A stale attempt's provider effect is never recorded by
it; compensation finds it through the step's idempotency key.

While an action runs, `lease_kept` renews its lease from a thread, so a call
slower than the lease does not lose its step; a process that stops (killed,
frozen) stops renewing, and its lease runs out.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now

from sagas.models import Saga, SagaStep
from shopflow.clock import db_later
from shopflow.leases import lease_renewed


class StaleAttempt(Exception):
    """The step has a newer attempt, or has moved on: this attempt may not write."""


@dataclass(frozen=True)
class Fence:
    """One attempt of one step, by its fencing token; call it before each local write."""

    saga_id: UUID
    step_index: int
    token: int

    def __call__(self) -> None:
        """Lock the step's row and raise StaleAttempt unless this attempt still holds it.

        Call it inside the transaction that makes the write: the lock is held
        until that transaction ends, so no claim can take the step in between.
        """
        if not connection.in_atomic_block:
            raise RuntimeError("a fence is checked inside the transaction that writes")
        # No ordering: SagaStep's default one joins the saga, whose row FOR UPDATE would lock too.
        current = (
            SagaStep.objects.select_for_update()
            .filter(saga_id=self.saga_id, index=self.step_index, fence=self.token)
            .filter(status=SagaStep.Status.RUNNING)
            .order_by()
            .values_list("pk", flat=True)
        )
        if not list(current):
            raise StaleAttempt(
                f"saga {self.saga_id} step {self.step_index}: attempt {self.token} is stale"
            )


def lease_renew(saga_id: UUID, step_index: int, token: int) -> bool:
    """Push the live lease of attempt `token` one lease further; False once it is lost.

    A lease that has run out is not renewed: another attempt may have the step.
    """
    lease = settings.SAGA_STEP_LEASE_SECONDS
    renewed = (
        SagaStep.objects.filter(saga_id=saga_id, index=step_index, fence=token)
        .filter(lease_expires_at__gt=Now())
        .update(lease_expires_at=db_later(lease))
    )
    if renewed:
        grace = settings.SAGA_WAKE_GRACE_SECONDS
        Saga.objects.filter(pk=saga_id).update(wake_at=db_later(lease + grace))
    return bool(renewed)


def lease_kept(saga_id: UUID, step_index: int, token: int) -> AbstractContextManager[None]:
    """Renew the attempt's lease every third of a lease while the block runs.

    Up to SAGA_STEP_MAX_SECONDS, so a call that hangs loses its step at last.
    """
    lease = settings.SAGA_STEP_LEASE_SECONDS
    return lease_renewed(
        lambda: lease_renew(saga_id, step_index, token),
        every=lease / 3,
        longest=settings.SAGA_STEP_MAX_SECONDS,
    )
