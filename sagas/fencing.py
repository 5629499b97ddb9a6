"""Fencing: only the current attempt of a step may write what it did.

A claim gives a step a lease and a new fencing token (`SagaStep.fence`). An
attempt whose lease ran out (a slow provider, a GC pause, a frozen VM) may
still be running when the engine has given the step to a newer attempt, or
moved on to compensate it. Every local write an action makes (the
reservation, the payment row, a decline or rejection) therefore calls its
`Fence` with the write itself (`Fence.write`): one statement locks the step's
row until commit and writes only if the token is still the step's current
running one, so a claim re-taking the step waits for that commit, and a write
that waited for a claim finds the new token and writes nothing. What a
remote step's provider answered (the capture, the booking) is written by the
engine with the step's record, under the saga's lock, only while the token
it reads there is still the attempt's (`definitions.Answer`). A stale
attempt's provider effect is never recorded by it; compensation finds it
through the step's idempotency key.

While an action runs, `lease_kept` renews its lease from a thread, so a call
slower than the lease does not lose its step; a process that stops (killed,
frozen) stops renewing, and its lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Now

from sagas.models import Saga, SagaStep
from shopflow.clock import db_later
from shopflow.fences import HELD_ALWAYS, Row, execute
from shopflow.leases import lease_renewed


class StaleAttempt(Exception):
    """The step has a newer attempt, or has moved on: this attempt may not write."""


@dataclass(frozen=True)
class Fence:
    """One attempt of one step, by its fencing token: each local write goes through it."""

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
            raise self._stale()

    def write(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run the write `sql` only while this attempt holds its step; its RETURNING rows.

        `sql` marks its condition `{held}`. On PostgreSQL the step's row is
        locked (`FOR UPDATE`, until commit) in the same statement, and the
        write's condition is that the lock found the row with this token,
        running. In READ COMMITTED a claim that bumped the token first makes
        the lock wait for it and re-check the new row: nothing is written. A
        claim that comes later waits for this transaction. On SQLite, whose
        writers run one at a time, the fence is checked, then the write runs.
        """
        if connection.vendor != "postgresql":
            with transaction.atomic():
                self()
                return execute(sql.replace("{held}", HELD_ALWAYS), params)
        write = sql.replace("{held}", "EXISTS (SELECT FROM fence)")
        ids = [self.saga_id, self.step_index, self.token, SagaStep.Status.RUNNING]
        rows = execute(_FENCED_SQL.format(write=write), [*ids, *params])
        if not rows[0][0]:
            raise self._stale()
        return [row[1:] for row in rows if row[1] is not None]

    def _stale(self) -> StaleAttempt:
        return StaleAttempt(
            f"saga {self.saga_id} step {self.step_index}: attempt {self.token} is stale"
        )


# The fenced write's rows: whether the attempt held, then what the write returned (its
# first column never null), or nulls if it wrote nothing.
_FENCED_SQL = f"""
WITH fence AS (
    SELECT 1 FROM {SagaStep._meta.db_table}
    WHERE saga_id = %s AND "index" = %s AND fence = %s AND status = %s
    FOR UPDATE
), written AS ({{write}})
SELECT held.held, written.*
FROM (SELECT EXISTS (SELECT FROM fence) AS held) held LEFT JOIN written ON TRUE"""


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
