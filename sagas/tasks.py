"""Celery tasks of the saga engine: thin wrappers over `sagas.engine`."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sagas.engine import saga_advance
from sagas.models import Saga


@shared_task(name="sagas.advance", ignore_result=True)
def advance_saga(saga_id: str) -> None:
    """Make the saga's next move."""
    saga_advance(saga_id)


@shared_task(name="sagas.watchdog", ignore_result=True)
def saga_watchdog() -> int:
    """Re-ask for a move on every active saga nobody has moved by its `wake_at`.

    This is how a saga whose worker died mid-step (its lease expired) or whose
    message the broker lost carries on.
    """
    now = timezone.now()
    due = list(
        Saga.objects.filter(status__in=Saga.ACTIVE, wake_at__lte=now).values_list("pk", flat=True)[
            : settings.SAGA_WATCHDOG_BATCH
        ]
    )
    if due:
        later = now + timedelta(seconds=settings.SAGA_WAKE_GRACE_SECONDS)
        Saga.objects.filter(pk__in=due, wake_at__lte=now).update(wake_at=later)
        for saga_id in due:
            advance_saga.delay(str(saga_id))
    return len(due)
