"""The worker side: run one handler for one event, exactly once in effect.

Each delivery runs in its own transaction. Its first statement flips the row
from pending to done, guarded by the lease the relay gave it; the handler runs
after that in the same transaction. A duplicate message blocks on the row lock
and then finds it done; a crash rolls the flip back with the handler's writes,
and the lease's expiry lets the relay claim it again.

A handler subscribed with `atomic=False` (it calls the network: an e-mail)
runs with no transaction open, and its delivery is flipped after it returns;
it keeps its own idempotency (see `outbox.registry.subscribe`).
"""

from __future__ import annotations

import json
import logging
import random
import time
import traceback
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from outbox.events import DomainEvent, UnknownEventType
from outbox.metrics import DELIVERIES
from outbox.models import Delivery
from outbox.registry import EventContext, Handler, UnknownHandler, get_handler
from outbox.services import caused_by

logger = logging.getLogger("shopflow.outbox.delivery")


class DeadLetter(Exception):
    """Raised by a handler for an error no retry can fix: dead-letter at once."""


class InProgressElsewhere(Exception):
    """Raised by a non-atomic handler whose work for this event another process is doing.

    The delivery is left to its lease, no attempt counted: the other copy marks
    it done or counts its failure.
    """


@dataclass(frozen=True)
class Outcome:
    status: str  # done, retry, dead, skipped
    error: str = ""


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter for the `attempt`-th failure (1-based)."""
    ceiling = min(settings.OUTBOX_BACKOFF_MAX, settings.OUTBOX_BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def deliveries_process(lease_id: str, ids: list[int]) -> list[Outcome]:
    """Process the deliveries of one relay message, in id order.

    A delivery leased again since this message was sent is processed all the
    same: when messages wait in the broker longer than a lease, the relay leases
    everything anew before any message arrives, and requiring the message's own
    lease would skip every one of them, forever. The pending->done flip under
    the row lock keeps it once in effect; a delivery not leased (waiting out a
    backoff) is left to its next claim.
    """
    del lease_id  # the claim that sent this message; any claim of the row will do (above)
    deliveries = list(
        Delivery.objects.filter(id__in=ids, status=Delivery.Status.PENDING, lease_id__isnull=False)
        .select_related("event")
        .order_by("id")
    )
    outcomes = [delivery_process(d) for d in deliveries]
    _relay_successors(d for d, o in zip(deliveries, outcomes, strict=True) if o.status == "done")
    return outcomes


def _relay_successors(done: Iterable[Delivery]) -> None:
    """Send on the next event of each aggregate just handled, without waiting for a drain."""
    from outbox.relay import successors_relay

    try:
        successors_relay({(d.handler, d.aggregate_key) for d in done})
    except Exception:  # the handlers' work is committed; a beat-driven drain sends the rest
        logger.warning("relaying successors failed; beat will drain", exc_info=True)


def delivery_process(delivery: Delivery) -> Outcome:
    """Run the delivery's handler once; record success, a retry or a dead letter."""
    started = time.monotonic()
    try:
        handler = get_handler(delivery.handler)
        event = delivery.event.to_event()
    except (UnknownHandler, UnknownEventType, ValidationError) as exc:
        # A payload that no longer decodes fails the same way every time: left
        # to raise, it would be re-leased and re-sent forever without an attempt.
        outcome = _fail(delivery, exc, permanent=True)
    else:
        outcome = _run(delivery, handler, event)
    _log(delivery, outcome, time.monotonic() - started)
    return outcome


def _run(delivery: Delivery, handler: Handler, event: DomainEvent) -> Outcome:
    row = delivery.event
    context = EventContext(
        event_id=str(row.event_id),
        event_type=row.type,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        occurred_at=row.occurred_at,
        headers=row.headers,
        attempt=delivery.attempts + 1,
    )
    try:
        with _transaction_for(handler):
            if handler.atomic and not _mark_done(delivery):
                return Outcome("skipped")
            with caused_by(context.event_id, row.headers.get("correlation_id") or context.event_id):
                handler(event, context)
        if not handler.atomic and not _mark_done(delivery):  # one statement, autocommitted
            return Outcome("skipped")
    except InProgressElsewhere:
        return Outcome("skipped")
    except DeadLetter as exc:
        failure, outcome = exc, _fail(delivery, exc, permanent=True)
    except Exception as exc:
        failure = exc
        outcome = _fail(delivery, exc, permanent=False, max_attempts=handler.max_attempts)
    else:
        return Outcome("done")
    _after_failure(handler, event, context, failure, outcome)
    return outcome


def _transaction_for(handler: Handler) -> AbstractContextManager[object]:
    """The delivery's transaction; none for a handler that calls the network (`atomic=False`).

    No network call runs inside a transaction: on SQLite (IMMEDIATE) a slow
    server would hold the database-wide write lock, on PostgreSQL row locks.
    """
    return transaction.atomic() if handler.atomic else nullcontext()


def _after_failure(
    handler: Handler, event: DomainEvent, context: EventContext, exc: Exception, outcome: Outcome
) -> None:
    """Let the handler leave a trace of a failed attempt; its own error is only logged."""
    if handler.on_failure is None or outcome.status == "skipped":
        return
    try:
        with transaction.atomic():
            handler.on_failure(event, context, exc, outcome.status == "dead")
    except Exception:
        logger.exception("on_failure hook of %s failed", handler.name)


_MARK_DONE_SQL = (
    f"UPDATE {Delivery._meta.db_table}"
    " SET status = %s, attempts = attempts + 1, done_at = %s, lease_id = NULL,"
    " lease_expires_at = NULL WHERE id = %s AND status = %s AND lease_id "
)


def _mark_done(delivery: Delivery) -> bool:
    # Raw SQL: building the same UPDATE through the ORM costs more CPU than running it.
    fields = Delivery._meta
    params = [
        Delivery.Status.DONE.value,
        fields.get_field("done_at").get_db_prep_value(timezone.now(), connection),
        delivery.pk,
        Delivery.Status.PENDING.value,
    ]
    if delivery.lease_id is None:
        sql = _MARK_DONE_SQL + "IS NULL"
    else:
        sql = _MARK_DONE_SQL + "= %s"
        params.append(fields.get_field("lease_id").get_db_prep_value(delivery.lease_id, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def _fail(
    delivery: Delivery, exc: BaseException, *, permanent: bool, max_attempts: int | None = None
) -> Outcome:
    """Count the failed attempt; schedule a retry or dead-letter the delivery."""
    attempt = delivery.attempts + 1
    limit = max_attempts or settings.OUTBOX_MAX_ATTEMPTS
    dead = permanent or attempt >= limit
    error = f"{type(exc).__name__}: {exc}"
    updated = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, lease_id=delivery.lease_id
    ).update(
        status=Delivery.Status.DEAD if dead else Delivery.Status.PENDING,
        attempts=attempt,
        next_attempt_at=timezone.now() + timedelta(seconds=0 if dead else backoff_seconds(attempt)),
        lease_id=None,
        lease_expires_at=None,
        last_error=error[:2000],
        last_traceback="".join(traceback.format_exception(exc))[-10000:],
    )
    if not updated:
        return Outcome("skipped", error)
    return Outcome("dead" if dead else "retry", error)


def _log(delivery: Delivery, outcome: Outcome, seconds: float) -> None:
    row = delivery.event
    if outcome.status != "skipped":
        DELIVERIES.labels(delivery.handler, row.type, outcome.status).inc()
    line = {
        "msg": "delivery",
        "outcome": outcome.status,
        "event_id": str(row.event_id),
        "type": row.type,
        "aggregate": delivery.aggregate_key,
        "handler": delivery.handler,
        "attempt": delivery.attempts + 1,
        "duration_ms": round(seconds * 1000, 2),
    }
    if outcome.error:
        line["error"] = outcome.error[:500]
    level = logging.INFO if outcome.status in ("done", "skipped") else logging.WARNING
    logger.log(level, json.dumps(line))
