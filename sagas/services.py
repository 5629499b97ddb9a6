"""Writes of the saga engine: start, cancel, and the operator's repairs."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from sagas.definitions import get_definition
from sagas.engine import schedule_advance
from sagas.models import Saga, SagaStep
from sagas.store import locked
from shopflow.clock import db_now


class SagaStateError(Exception):
    """The saga is not in a state that allows this operation."""


def saga_start(*, definition: str, key: str) -> Saga:
    """Create the saga for `key` and ask for its first move; idempotent per key."""
    steps = get_definition(definition).steps
    # No savepoint, no get_or_create: this runs in the delivery's transaction, whose
    # inbox flip already keeps a second copy of the event out. A start racing it all
    # the same fails its transaction on the unique key; its retry finds this saga.
    with transaction.atomic(savepoint=False):
        saga = Saga.objects.filter(definition=definition, key=key).first()
        if saga is None:
            saga = Saga(definition=definition, key=key)
            schedule_advance(saga, now=db_now())
            saga.save(force_insert=True)
            SagaStep.objects.bulk_create(
                SagaStep(saga=saga, index=i, name=step.name) for i, step in enumerate(steps)
            )
    return saga


def saga_cancel(*, definition: str, key: str) -> Saga | None:
    """Undo everything the saga did: at the next step boundary, or now if it completed."""
    with transaction.atomic():
        saga, now = locked(definition=definition, key=key)
        if saga is None or saga.status not in (Saga.Status.RUNNING, Saga.Status.COMPLETED):
            return saga
        saga.cancel_requested = True
        if saga.status == Saga.Status.COMPLETED:
            saga.status = Saga.Status.COMPENSATING
        schedule_advance(saga, now=now)
        saga.save()
    return saga


def saga_retry(*, saga_id: str) -> Saga:
    """Retry a saga whose compensation failed, from the step that failed.

    The step gets a fresh budget of attempts; its attempt count and fencing
    token go on, so an attempt from before the retry stays stale.
    """
    with transaction.atomic():
        saga, now = locked(pk=saga_id)
        if saga is None:
            raise Saga.DoesNotExist(saga_id)
        if saga.status != Saga.Status.COMPENSATION_FAILED:
            raise SagaStateError(
                f"only a saga whose compensation failed can be retried ({saga.status})"
            )
        saga.steps.filter(status=SagaStep.Status.COMPENSATION_FAILED).update(
            status=SagaStep.Status.COMPENSATING,
            compensation_attempts_before_retry=F("compensation_attempts"),
            next_attempt_at=None,
            lease_expires_at=None,
        )
        saga.status = Saga.Status.COMPENSATING
        schedule_advance(saga, now=now)
        saga.save()
    return saga


def saga_compensate_now(*, saga_id: str) -> Saga:
    """Stop a running saga at its next step boundary and undo what it did.

    The saga fails with the reason of the step it stopped at; one whose steps
    are all done (it only had its completion left) with its last step's.
    """
    with transaction.atomic():
        saga, now = locked(pk=saga_id)
        if saga is None:
            raise Saga.DoesNotExist(saga_id)
        if saga.status != Saga.Status.RUNNING:
            raise SagaStateError(f"only a running saga can be compensated now ({saga.status})")
        spec = get_definition(saga.definition).steps
        saga.failure_reason = spec[min(saga.current_step, len(spec) - 1)].exhausted_reason
        saga.cancel_requested = True
        schedule_advance(saga, now=now)
        saga.save()
    return saga


def saga_mark_resolved(*, saga_id: str, note: str) -> Saga:
    """Record that an operator settled a failed compensation by hand."""
    if not note.strip():
        raise SagaStateError("a resolution needs a note")
    with transaction.atomic():
        saga = Saga.objects.select_for_update().get(pk=saga_id)
        if saga.status != Saga.Status.COMPENSATION_FAILED:
            raise SagaStateError(f"only a failed compensation can be resolved ({saga.status})")
        saga.resolution_note = note.strip()
        saga.resolved_at = db_now()
        saga.save()
    return saga
