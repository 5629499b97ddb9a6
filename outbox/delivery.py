"""The worker side: run one handler for one event, exactly once in effect.

Before the handler runs, the worker commits its start on its own: the attempt
is counted and the row names the lease it started under. Then the delivery
runs in its own transaction, whose first statement flips the row from pending
to done, guarded by the lease the relay gave it; the handler runs after that in
the same transaction. A duplicate message of the same claim finds the start
taken and does nothing; one of another claim blocks on the row lock and then
finds it done. A crash rolls the flip back with the handler's writes, and the
lease's expiry lets the relay claim it again, as a suspect: its start is still
recorded under an older lease. A suspect travels and runs alone and last, and
once its starts reach the handler's max_attempts it is a dead letter
(`WorkerDied`), so a delivery that kills its worker cannot loop forever.

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
from contextlib import AbstractContextManager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Now
from pydantic import ValidationError

from outbox.events import DomainEvent, UnknownEventType
from outbox.metrics import DELIVERIES
from outbox.models import Delivery, OutboxEvent
from outbox.registry import EventContext, Handler, UnknownHandler, get_handler
from outbox.services import caused_by
from shopflow.clock import db_later, db_now_sql
from shopflow.leases import lease_renewed
from shopflow.local_work import worker_consumes

logger = logging.getLogger("shopflow.outbox.delivery")


class DeadLetter(Exception):
    """Raised by a handler for an error no retry can fix: dead-letter at once."""


class InProgressElsewhere(Exception):
    """Raised by a non-atomic handler whose work for this event another process is doing.

    The delivery is left to its lease, its start counted: a live sender renews its
    delivery's lease, so a copy that meets its claim most likely follows a sender
    that died, and the next claim makes the delivery a suspect.
    """


class WorkerDied(Exception):
    """Names, in `last_error`, the attempts whose worker died mid-handler."""


@dataclass(frozen=True)
class Outcome:
    status: str  # done, retry, dead, skipped
    error: str = ""


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter for the `attempt`-th failure (1-based)."""
    ceiling = min(settings.OUTBOX_BACKOFF_MAX, settings.OUTBOX_BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def deliveries_process(lease_id: str, ids: list[int]) -> list[Outcome]:
    """Process the deliveries of one relay message: a batch first, then one by one in id order.

    A delivery leased again since this message was sent is processed all the
    same: when messages wait in the broker longer than a lease, the relay leases
    everything anew before any message arrives, and requiring the message's own
    lease would skip every one of them, forever. The pending->done flip under
    the row lock keeps it once in effect; a delivery not leased (waiting out a
    backoff) is left to its next claim.
    """
    from outbox.batches import batch_process, batchable

    deliveries = _handed_on(lease_id, _leased(ids))
    batched, alone = batchable(deliveries)
    # Suspects last (the relay sends them alone, but a stale message may not): one
    # may kill this process again, and would take the rest of the message with it.
    alone.sort(key=lambda d: d.started_lease_id is not None)
    processed = [item.delivery for item in batched] + alone
    outcomes = batch_process(batched) + _one_by_one(alone)
    _relay_successors(d for d, o in zip(processed, outcomes, strict=True) if o.status == "done")
    return outcomes


def _handed_on(lease_id: str, deliveries: list[Delivery]) -> list[Delivery]:
    """Publish those whose queue this worker does not consume (a shared message); the rest.

    `lease_id` only names the message's claim: any claim of a row will do (above).
    """
    from outbox.relay import deliveries_publish, queue_of

    elsewhere = [d for d in deliveries if not worker_consumes(queue_of(d.handler))]
    if not elsewhere:
        return deliveries
    try:
        deliveries_publish(lease_id, [(d.pk, d.handler) for d in elsewhere])
    except Exception:  # still leased: the drain sends them when the lease expires
        logger.warning("handing deliveries on to their queues failed", exc_info=True)
    return [d for d in deliveries if d not in elsewhere]


def _leased(ids: list[int]) -> list[Delivery]:
    """The pending, leased deliveries among `ids`, each with its event, in id order."""
    if connection.vendor != "postgresql":
        leased = Delivery.objects.filter(
            id__in=ids, status=Delivery.Status.PENDING, lease_id__isnull=False
        )
        return list(leased.select_related("event").order_by("id"))
    with connection.cursor() as cursor:
        cursor.execute(_LEASED_SQL, [list(ids), Delivery.Status.PENDING.value])
        return [_delivery_from(row) for row in cursor.fetchall()]


def _delivery_from(row: tuple) -> Delivery:
    """A Delivery and its OutboxEvent from one `_LEASED_SQL` row, as the ORM would load them."""
    pk, handler, aggregate_key, attempts, lease_id, started_lease_id, *event_row = row
    (event_pk, event_id, event_type, version, aggregate_type, aggregate_id, payload, headers,
     occurred_at) = event_row  # fmt: skip
    event = OutboxEvent(
        id=event_pk, event_id=event_id, type=event_type, version=version,
        aggregate_type=aggregate_type, aggregate_id=aggregate_id, payload=_json(payload),
        headers=_json(headers), occurred_at=occurred_at,
    )  # fmt: skip
    delivery = Delivery(
        id=pk, event=event, handler=handler, aggregate_key=aggregate_key,
        status=Delivery.Status.PENDING, attempts=attempts, lease_id=lease_id,
        started_lease_id=started_lease_id,
    )  # fmt: skip
    for instance in (event, delivery):
        instance._state.adding, instance._state.db = False, connection.alias
    return delivery


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _relay_successors(done: Iterable[Delivery]) -> None:
    """Send on the next event of each aggregate just handled, without waiting for a drain."""
    from outbox.relay import successors_relay

    try:
        successors_relay({(d.handler, d.aggregate_key) for d in done})
    except Exception:  # the handlers' work is committed; a beat-driven drain sends the rest
        logger.warning("relaying successors failed; beat will drain", exc_info=True)


@dataclass
class _Next:
    """The next delivery of a message, whose start the current delivery's transaction commits.

    `started`: True once that transaction committed the start, False when the
    start was refused (a duplicate message), None when it was not committed.
    """

    delivery: Delivery
    started: bool | None = None


def _one_by_one(deliveries: list[Delivery]) -> list[Outcome]:
    """Each delivery in its own transaction, which also commits the next one's start.

    Folding the next start into the transaction before it saves a commit per
    delivery and keeps the rule the worker-death guarantee rests on: a start is
    committed before its handler runs. A suspect or a handler with no
    transaction (`atomic=False`) gets a start of its own, as does a delivery
    whose predecessor's transaction rolled back.
    """
    outcomes: list[Outcome] = []
    started: bool | None = None
    for current, following in zip(deliveries, [*deliveries[1:], None], strict=False):
        chained = _Next(following) if _foldable(current, following) else None
        outcomes.append(_process(current, started=started, following=chained))
        started = chained.started if chained else None
    return outcomes


def _foldable(current: Delivery, following: Delivery | None) -> bool:
    if following is None or following.started_lease_id is not None:
        return False
    try:
        return get_handler(current.handler).atomic and get_handler(following.handler).atomic
    except UnknownHandler:
        return False


def delivery_process(delivery: Delivery) -> Outcome:
    """Count a start, run the delivery's handler once; record success, a retry or a dead letter."""
    return _process(delivery)


def _process(
    delivery: Delivery, *, started: bool | None = None, following: _Next | None = None
) -> Outcome:
    """`delivery_process`, its start maybe already committed (or refused) by the one before."""
    begun = time.monotonic()
    outcome = _attempt(delivery, started, following)
    log_outcome(delivery, outcome, time.monotonic() - begun)
    return outcome


def _attempt(delivery: Delivery, started: bool | None, following: _Next | None) -> Outcome:
    limit = _max_attempts(delivery.handler)
    if started is None:
        if delivery.started_lease_id is not None and _bury_if_out_of_attempts(delivery, limit):
            return Outcome("dead", f"{_DIED}{delivery.attempts}{_LAST_OF.format(limit)}")
        started = _start(delivery)
    if not started:
        return Outcome("skipped")
    try:
        handler = get_handler(delivery.handler)
        event = delivery.event.to_event()
    except (UnknownHandler, UnknownEventType, ValidationError) as exc:
        # Version skew: during a rolling deploy a newer process may record a
        # handler, an event type or a payload version this one cannot read yet.
        # Dead at once, it would block its aggregate; retried (for as long as a
        # deploy may take, OUTBOX_VERSION_SKEW_MAX_ATTEMPTS), newer code takes it.
        skew_limit = max(limit, settings.OUTBOX_VERSION_SKEW_MAX_ATTEMPTS)
        return _fail(delivery, exc, permanent=False, max_attempts=skew_limit)
    return run_started(delivery, handler, event, following)


def _max_attempts(handler_name: str) -> int:
    try:
        limit = get_handler(handler_name).max_attempts
    except UnknownHandler:
        limit = None
    return limit or settings.OUTBOX_MAX_ATTEMPTS


def context_of(delivery: Delivery) -> EventContext:
    """What the delivery's handler is told about its event beyond the event's fields."""
    row = delivery.event
    return EventContext(
        event_id=str(row.event_id),
        event_type=row.type,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        occurred_at=row.occurred_at,
        headers=row.headers,
        attempt=delivery.attempts,
    )


def handler_call(handler: Handler, event: DomainEvent, context: EventContext) -> None:
    """Run the handler; the events it records name this one as their cause."""
    correlation_id = context.headers.get("correlation_id") or context.event_id
    with caused_by(context.event_id, correlation_id):
        handler(event, context)


def run_started(
    delivery: Delivery, handler: Handler, event: DomainEvent, following: _Next | None = None
) -> Outcome:
    """Flip and handle a delivery whose start is committed; record a failure.

    With `following`, the transaction also commits the next delivery's start,
    as its last statement (see `_one_by_one`).
    """
    context = context_of(delivery)
    try:
        with _transaction_for(handler, delivery):
            if handler.atomic and not _mark_done(delivery):
                return Outcome("skipped")
            handler_call(handler, event, context)
            next_started = _start(following.delivery) if following else None
        if not handler.atomic and not _mark_done(delivery):  # one statement, autocommitted
            return Outcome("skipped")
    except InProgressElsewhere:  # its start stays counted: the other copy's worker died
        return Outcome("skipped")
    except DeadLetter as exc:
        failure, outcome = exc, _fail(delivery, exc, permanent=True)
    except Exception as exc:
        failure = exc
        outcome = _fail(delivery, exc, permanent=False, max_attempts=handler.max_attempts)
    else:
        if following:
            following.started = next_started
        return Outcome("done")
    _after_failure(handler, event, context, failure, outcome)
    return outcome


def _transaction_for(handler: Handler, delivery: Delivery) -> AbstractContextManager[object]:
    """The delivery's transaction; none for a handler that calls the network (`atomic=False`).

    No network call runs inside a transaction: on SQLite (IMMEDIATE) a slow
    server would hold the database-wide write lock, on PostgreSQL row locks.
    Nothing then holds the delivery's row while the handler runs, so its lease
    is renewed instead: a send slower than the lease is not claimed again and
    sent twice by another worker.
    """
    if handler.atomic:
        return transaction.atomic()
    lease = settings.OUTBOX_LEASE_SECONDS
    return lease_renewed(
        lambda: _lease_renew(delivery), every=lease / 3, longest=settings.OUTBOX_HANDLER_MAX_SECONDS
    )


def _lease_renew(delivery: Delivery) -> bool:
    """Push the delivery's live lease one lease further; False once it is lost."""
    renewed = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, lease_id=delivery.lease_id,
        lease_expires_at__gt=Now(),
    ).update(lease_expires_at=db_later(settings.OUTBOX_LEASE_SECONDS))  # fmt: skip
    return bool(renewed)


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


_TABLE = Delivery._meta.db_table
# The worker's read of one message's deliveries: the ORM's `select_related` built
# this in more CPU than the delivery's own statements take.
_LEASED_SQL = f"""
SELECT d.id, d.handler, d.aggregate_key, d.attempts, d.lease_id, d.started_lease_id,
    e.id, e.event_id, e.type, e.version, e.aggregate_type, e.aggregate_id, e.payload,
    e.headers, e.occurred_at
FROM {_TABLE} d JOIN {OutboxEvent._meta.db_table} e ON e.id = d.event_id
WHERE d.id = ANY(%s) AND d.status = %s AND d.lease_id IS NOT NULL
ORDER BY d.id"""
_DIED = f"{WorkerDied.__name__}: the worker died while handling attempt "
_LAST_OF = ", the last of {}"
# Raw SQL: building the same UPDATEs through the ORM costs more CPU than running
# them. `{now}` is the database's clock (shopflow.clock). Each statement is
# conditional on the row still being pending under the worker's lease, so a
# duplicate message or a racing worker changes nothing.
#
# A start: count the attempt and record the lease it runs under, unless a start
# under this lease is already recorded (a duplicate message of this claim). A
# start still recorded under an older lease had no outcome: its worker died.
_START_TEMPLATE = f"""
UPDATE {_TABLE} SET attempts = attempts + 1, started_lease_id = lease_id,
    last_error = CASE WHEN started_lease_id IS NULL THEN last_error
                      ELSE %s || CAST(attempts AS TEXT) END,
    last_traceback = CASE WHEN started_lease_id IS NULL THEN last_traceback ELSE '' END{{quick}}
WHERE id = %s AND status = %s AND lease_id = %s
  AND (started_lease_id IS NULL OR started_lease_id <> lease_id)
RETURNING attempts"""
_START_SQL = _START_TEMPLATE.format(quick="")
# The same, committed without waiting for its WAL flush (see `_start`).
QUICK_COMMIT = "\nFROM (SELECT set_config('synchronous_commit', 'off', true)) AS quick_commit"
_START_QUICK_SQL = _START_TEMPLATE.format(quick=QUICK_COMMIT)
# A suspect whose starts reached max_attempts: dead, without another start.
_BURY_SQL = f"""
UPDATE {_TABLE} SET status = %s, next_attempt_at = {{now}}, lease_id = NULL,
    lease_expires_at = NULL, started_lease_id = NULL, last_traceback = '',
    last_error = %s || CAST(attempts AS TEXT) || %s
WHERE id = %s AND status = %s AND lease_id = %s
  AND started_lease_id IS NOT NULL AND started_lease_id <> lease_id AND attempts >= %s"""
# Done: the first statement of the handler's transaction (the attempt was counted at its start).
_MARK_DONE_SQL = f"""
UPDATE {_TABLE} SET status = %s, done_at = {{now}}, lease_id = NULL, lease_expires_at = NULL,
    started_lease_id = NULL
WHERE id = %s AND status = %s AND lease_id = %s"""


def _start(delivery: Delivery) -> bool:
    """Commit the start of an attempt before the handler runs; False for a duplicate.

    Alone in its transaction, the start of a handler whose effects commit in
    the delivery's own transaction does not wait for its WAL flush: a worker's
    death cannot undo a commit, only a PostgreSQL crash can lose it, and then
    the handler's transaction, committed later and synchronously, is lost too
    (a flush covers every earlier record). The crash, not the handler, ended
    that attempt, so it goes uncounted.
    """
    params = [_DIED, delivery.pk, Delivery.Status.PENDING.value, _lease(delivery)]
    with connection.cursor() as cursor:
        cursor.execute(_START_QUICK_SQL if _quick_start(delivery) else _START_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return False
    delivery.attempts = row[0]
    return True


def _quick_start(delivery: Delivery) -> bool:
    """Whether the start may commit without waiting for its flush (see `_start`)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False  # inside a transaction, the setting would last until its commit
    try:
        return get_handler(delivery.handler).atomic
    except UnknownHandler:
        return False


def _bury_if_out_of_attempts(delivery: Delivery, limit: int) -> bool:
    """Dead-letter a suspect whose worker died on its last allowed attempt."""
    params = [Delivery.Status.DEAD.value, _DIED, _LAST_OF.format(limit), delivery.pk,
              Delivery.Status.PENDING.value, _lease(delivery), limit]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_BURY_SQL.format(now=db_now_sql()), params)
        return cursor.rowcount == 1


def _mark_done(delivery: Delivery) -> bool:
    params = [Delivery.Status.DONE.value, delivery.pk, Delivery.Status.PENDING.value,
              _lease(delivery)]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_MARK_DONE_SQL.format(now=db_now_sql()), params)
        return cursor.rowcount == 1


def _lease(delivery: Delivery) -> object:
    return Delivery._meta.get_field("lease_id").get_db_prep_value(delivery.lease_id, connection)


def _fail(
    delivery: Delivery, exc: BaseException, *, permanent: bool, max_attempts: int | None = None
) -> Outcome:
    """Record the failed attempt (counted at its start); schedule a retry or dead-letter it."""
    limit = max_attempts or settings.OUTBOX_MAX_ATTEMPTS
    dead = permanent or delivery.attempts >= limit
    error = f"{type(exc).__name__}: {exc}"
    delay = 0 if dead else backoff_seconds(delivery.attempts)
    updated = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, lease_id=delivery.lease_id
    ).update(
        status=Delivery.Status.DEAD if dead else Delivery.Status.PENDING,
        next_attempt_at=db_later(delay),
        lease_id=None,
        lease_expires_at=None,
        started_lease_id=None,
        last_error=error[:2000],
        last_traceback="".join(traceback.format_exception(exc))[-10000:],
    )
    if not updated:
        return Outcome("skipped", error)
    return Outcome("dead" if dead else "retry", error)


def log_outcome(delivery: Delivery, outcome: Outcome, seconds: float) -> None:
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
        "attempt": delivery.attempts,
        "duration_ms": round(seconds * 1000, 2),
    }
    if outcome.error:
        line["error"] = outcome.error[:500]
    level = logging.INFO if outcome.status in ("done", "skipped") else logging.WARNING
    logger.log(level, json.dumps(line))
