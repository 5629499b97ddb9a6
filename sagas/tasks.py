"""Celery tasks of the saga engine: thin wrappers over `sagas.engine`."""

from datetime import datetime, timedelta
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Value
from django.db.models.functions import Greatest, Least

from sagas.engine import saga_advance
from sagas.models import Saga
from shopflow.clock import db_now
from shopflow.local_work import keep_local, local_work, task_queue


@shared_task(name="sagas.advance", ignore_result=True)
def advance_saga(saga_id: str) -> None:
    """Make the saga's next moves, as many in a row as are due at once (within a budget)."""
    with local_work():
        saga_advance(saga_id, moves=max(1, settings.SAGA_MOVES_PER_TASK))


def advance_ask(saga_id: str) -> None:
    """Ask for the saga's next moves: in this worker after its task, or by a message."""
    keep_local(
        task_queue(advance_saga.name),
        run=partial(advance_saga.run, saga_id),
        publish=partial(advance_saga.delay, saga_id),
    )


@shared_task(name="sagas.watchdog", ignore_result=True)
def saga_watchdog() -> int:
    """Re-ask for a move on every active saga nobody has moved by its `wake_at`.

    This is how a saga whose worker died mid-step (its lease expired) or whose
    message the broker lost carries on.
    """
    now = db_now()
    due = list(
        Saga.objects.filter(status__in=Saga.ACTIVE, wake_at__lte=now).values_list("pk", flat=True)[
            : settings.SAGA_WATCHDOG_BATCH
        ]
    )
    if due:
        Saga.objects.filter(pk__in=due, wake_at__lte=now).update(wake_at=_next_look(now))
        for saga_id in due:
            advance_saga.delay(str(saga_id))
    return len(due)


def _next_look(now: datetime) -> ExpressionWrapper:
    """When to ask again: after as long as the saga has waited since its last move.

    Within [SAGA_WAKE_GRACE_SECONDS, SAGA_WATCHDOG_MAX_WAIT_SECONDS]. An ask that
    is only queued behind a backlog is not lost; asking again every grace period
    would add one message per waiting saga each time, growing the backlog it
    waits in until the workers do nothing but skip duplicates.
    """
    grace = timedelta(seconds=settings.SAGA_WAKE_GRACE_SECONDS)
    longest = max(grace, timedelta(seconds=settings.SAGA_WATCHDOG_MAX_WAIT_SECONDS))
    at = Value(now, output_field=DateTimeField())
    waited = ExpressionWrapper(at - F("updated_at"), output_field=DurationField())
    wait = Greatest(Value(grace), Least(waited, Value(longest)))
    return ExpressionWrapper(at + wait, output_field=DateTimeField())
