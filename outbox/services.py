"""Writes to the outbox: recording events, requeueing dead letters, replay, purge."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models.functions import Now
from django.dispatch import Signal
from django.utils import timezone

from outbox.events import DomainEvent
from outbox.models import Delivery, OutboxEvent
from outbox.registry import handlers_for

# Sent inside the recording transaction with `rows` (the new OutboxEvent rows),
# so read models that must never lag their events (an order's timeline) are
# written atomically with them.
events_recorded = Signal()


class OutsideTransaction(RuntimeError):
    """Events may only be written inside `transaction.atomic()`."""


# Headers of the event being handled, so events it causes carry its ids.
_causing_event: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "causing_event", default=None
)


@contextmanager
def caused_by(event_id: str, correlation_id: str) -> Iterator[None]:
    """Events recorded inside this block name `event_id` as their cause."""
    token = _causing_event.set({"event_id": event_id, "correlation_id": correlation_id})
    try:
        yield
    finally:
        _causing_event.reset(token)


def _headers_for(event_id: uuid.UUID) -> dict[str, str]:
    cause = _causing_event.get()
    if cause is None:
        return {"correlation_id": str(event_id), "causation_id": ""}
    return {"correlation_id": cause["correlation_id"], "causation_id": cause["event_id"]}


def events_record(events: Iterable[DomainEvent]) -> list[OutboxEvent]:
    """Write events and their deliveries in the caller's transaction.

    Raises `OutsideTransaction` when called outside `transaction.atomic()`:
    an event written in autocommit could outlive a change that later fails.

    Per-aggregate order rests on the caller: it must hold each event's
    aggregate locked until commit, its row locked (`select_for_update()`) or
    written in this transaction, or `aggregate_lock()` where the aggregate may
    have no row. Then two transactions recording events of one aggregate run
    one after the other and ids follow commit order, so the relay never hands
    out a delivery while an earlier one of its aggregate is uncommitted. Within
    a call, ids follow the order of `events` (`INSERT … SELECT … ORDER BY`).
    tests/sagas/test_aggregate_locks.py checks the writers.

    On PostgreSQL the deliveries the relay could claim right away are leased
    to this transaction and published when it commits (`_dispatch_on_commit`).
    """
    events = list(events)
    if not events:
        return []
    if not connection.in_atomic_block:
        raise OutsideTransaction("domain events must be recorded inside transaction.atomic()")
    rows = []
    for event in events:
        event_id = uuid.uuid4()
        rows.append(
            OutboxEvent(
                event_id=event_id,
                type=event.name,
                version=event.version,
                aggregate_type=event.aggregate_type,
                aggregate_id=event.aggregate_id,
                payload=event.to_payload(),
                headers=_headers_for(event_id),
            )
        )
    if connection.vendor == "postgresql":
        leased = _insert_in_one_statement(rows, lease_id=_dispatch_lease())
    else:
        leased = _insert_with_orm(rows)
    events_recorded.send(sender=OutboxEvent, rows=rows)
    _dispatch_on_commit(leased)
    return rows


_EVENT_FIELDS = ("event_id", "type", "version", "aggregate_type", "aggregate_id", "payload",
                 "headers")  # fmt: skip
# ... then occurred_at and created_at, from the database's clock (shopflow.clock).
_EVENT_TIMES = ", statement_timestamp(), statement_timestamp()"


@dataclass(frozen=True)
class _Leased:
    """Deliveries a recording transaction leased to itself, and whether others wait."""

    lease_id: uuid.UUID | None
    rows: list[tuple[int, str]]  # (id, handler), in id order
    # Some deliveries wait for an earlier one of their aggregate recorded elsewhere:
    # its worker may have looked for successors before this commit, so wake a drain.
    undispatched: bool


def _insert_with_orm(rows: list[OutboxEvent]) -> _Leased:
    """The embedded SQLite default: two bulk_creates; a drain, woken at commit, delivers."""
    now = timezone.now()  # the database's clock (shopflow.clock): SQLite runs in this process
    for row in rows:
        row.occurred_at = now
    OutboxEvent.objects.bulk_create(rows)
    Delivery.objects.bulk_create(
        Delivery(
            event=row,
            handler=handler.name,
            aggregate_key=f"{row.aggregate_type}:{row.aggregate_id}",
            next_attempt_at=now,
        )
        for row in rows
        for handler in handlers_for(row.type)
    )
    return _Leased(None, [], undispatched=True)


def _dispatch_lease() -> uuid.UUID | None:
    """A lease for this call's deliveries when they are to be dispatched at commit."""
    if settings.OUTBOX_WAKE_ON_COMMIT and settings.OUTBOX_DISPATCH_ON_COMMIT:
        return uuid.uuid4()
    return None


def _insert_in_one_statement(rows: list[OutboxEvent], *, lease_id: uuid.UUID | None) -> _Leased:
    """INSERT the events and their deliveries in one round trip, as two bulk_creates would.

    Ids follow the order of `rows`, then of each event's handlers by name, as
    the bulk_creates gave them: the relay delivers an aggregate's events in id
    order. Every time written is the statement's, so a delivery is due when its
    event occurred. Sets each row's id, `occurred_at` and `created_at` and marks
    it saved. (bulk_create costs ~1 ms of Python per call, more than PostgreSQL
    takes for the statement.)

    With a `lease_id`, a delivery is leased in the same statement when it is
    the first of its (handler, aggregate) in this call and no earlier delivery
    of that pair is unfinished: exactly the relay's claim rule. The caller
    holds the aggregate's lock (see `events_record`), so no earlier delivery
    of it can be uncommitted, and the check made here is the one a claim after
    commit would make.
    """
    params = [_db_value(OutboxEvent, name, getattr(row, name)) for row in rows
              for name in _EVENT_FIELDS]  # fmt: skip
    sql = _INSERT_EVENTS.format(rows=_values(len(rows), len(_EVENT_FIELDS), _EVENT_TIMES))
    deliveries = [(row, handler.name) for row in rows for handler in handlers_for(row.type)]
    if not deliveries:
        sql += " SELECT event_id, id, occurred_at, NULL, NULL FROM event"
    else:
        lease = _db_value(Delivery, "lease_id", lease_id)
        params += [Delivery.Status.PENDING, lease, lease, float(settings.OUTBOX_LEASE_SECONDS),
                   lease_id is not None, Delivery.Status.DONE]  # fmt: skip
        for position, (row, handler) in enumerate(deliveries):
            aggregate_key = f"{row.aggregate_type}:{row.aggregate_id}"
            params += [_db_value(OutboxEvent, "event_id", row.event_id), handler, aggregate_key,
                       position]  # fmt: skip
        sql += _INSERT_DELIVERIES.format(rows=_values(len(deliveries), 4)) + _SELECT_LEASED
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        saved = {event_id: row for event_id, *row in cursor.fetchall()}
    leased: list[tuple[int, str]] = []
    sent_on: set[tuple[str, str]] = set()  # (handler, aggregate key) pairs leased here
    for row in rows:
        row.pk, row.occurred_at, ids, handlers = saved[row.event_id]
        row.created_at = row.occurred_at
        row._state.adding, row._state.db = False, connection.alias
        leased += zip(ids or (), handlers or (), strict=True)
        sent_on |= {
            (handler, f"{row.aggregate_type}:{row.aggregate_id}") for handler in handlers or ()
        }
    # A delivery behind one leased here is sent on by the worker that finishes that one.
    waiting = any((handler, f"{row.aggregate_type}:{row.aggregate_id}") not in sent_on
                  for row, handler in deliveries)  # fmt: skip
    return _Leased(lease_id, sorted(leased), undispatched=waiting)


def _db_value(model: type[models.Model], name: str, value: object) -> object:
    """`value` as the model's field sends it to the database (a raw query's parameter)."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def _values(rows: int, columns: int, tail: str = "") -> str:
    return ", ".join(["(" + ", ".join(["%s"] * columns) + tail + ")"] * rows)


_INSERT_EVENTS = f"""
WITH event AS (
    INSERT INTO {OutboxEvent._meta.db_table} ({", ".join(_EVENT_FIELDS)}, occurred_at, created_at)
    VALUES {{rows}}
    RETURNING id, event_id, occurred_at
)"""
# A data-modifying CTE runs whether or not the query reads it. `first`: the relay's
# claim rule, checked at insert (see `_insert_in_one_statement`); the statement does
# not see its own rows, hence the row_number() among this call's deliveries.
_INSERT_DELIVERIES = f""", delivery AS (
    INSERT INTO {Delivery._meta.db_table}
        (event_id, handler, aggregate_key, status, attempts, next_attempt_at,
         last_error, last_traceback, created_at, lease_id, lease_expires_at)
    SELECT event.id, d.handler, d.aggregate_key, %s, 0, event.occurred_at, '', '',
        event.occurred_at, CASE WHEN d.first THEN %s::uuid END,
        CASE WHEN d.first AND %s::uuid IS NOT NULL
             THEN statement_timestamp() + make_interval(secs => %s) END
    FROM (
        SELECT v.*, row_number() OVER (
                PARTITION BY v.handler, v.aggregate_key ORDER BY v.position) = 1
            AND %s AND NOT EXISTS (
                SELECT 1 FROM {Delivery._meta.db_table} e
                WHERE e.handler = v.handler AND e.aggregate_key = v.aggregate_key
                  AND e.status <> %s) AS first
        FROM (VALUES {{rows}}) AS v (event_uuid, handler, aggregate_key, position)
    ) AS d
    JOIN event ON event.event_id = d.event_uuid
    ORDER BY d.position
    RETURNING id, event_id, handler, lease_id IS NOT NULL AS leased
)"""
# Each event with the deliveries leased to this transaction.
_SELECT_LEASED = """
SELECT event.event_id, event.id, event.occurred_at, leased.ids, leased.handlers
FROM event LEFT JOIN LATERAL (
    SELECT array_agg(delivery.id ORDER BY delivery.id) AS ids,
        array_agg(delivery.handler ORDER BY delivery.id) AS handlers
    FROM delivery WHERE delivery.event_id = event.id AND delivery.leased
) AS leased ON true"""


def _dispatch_on_commit(leased: _Leased) -> None:
    """After commit, publish what this call leased and nudge the relay for the rest.

    Direct dispatch is the relay's nudge made precise (STYLE rule 3): the
    deliveries are already leased, so the hook only publishes them, one broker
    hop from commit to handler. What it does not reach (the process dies first,
    the broker is down) is claimed again by a drain when the lease expires.
    Deliveries waiting for an earlier one of their aggregate are sent on by
    the worker that finishes it, or by the drain this wakes up.
    """
    if leased.rows:
        from outbox.relay import deliveries_dispatch

        transaction.on_commit(partial(deliveries_dispatch, str(leased.lease_id), leased.rows))
    if leased.undispatched:
        _wake_relay_on_commit()


def _wake_relay_on_commit() -> None:
    """Nudge the relay once per transaction, after it commits."""
    if not settings.OUTBOX_WAKE_ON_COMMIT:
        return
    from outbox.relay import relay_wake

    if any(func is relay_wake for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(relay_wake)


def deliveries_requeue(
    deliveries: Iterable[Delivery] | None = None, *, ids: Iterable[int] = ()
) -> int:
    """Make dead letters due now with a fresh attempt count.

    Only dead rows: a pending one is already on its way (or waiting out its
    backoff), and resetting it would waste its message and its attempt count.
    """
    pks = {d.pk for d in deliveries or ()} | set(ids)
    count = Delivery.objects.filter(pk__in=pks, status=Delivery.Status.DEAD).update(
        status=Delivery.Status.PENDING,
        attempts=0,
        next_attempt_at=Now(),
        lease_id=None,
        lease_expires_at=None,
        started_lease_id=None,
    )
    _nudge_now(count)
    return count


def deliveries_acknowledge(*, ids: Iterable[int]) -> int:
    """Mark dead letters as seen and accepted by an operator; they stay dead.

    `manage.py audit` reports unacknowledged dead letters only. A requeued
    delivery that dies again is reported again: its death is newer than the
    acknowledgement (see `Delivery.acknowledged_at`).
    """
    return Delivery.objects.filter(pk__in=set(ids), status=Delivery.Status.DEAD).update(
        acknowledged_at=Now()  # compared with the death's time, also the database's
    )


def _nudge_now(count: int) -> None:
    if count and settings.OUTBOX_WAKE_ON_COMMIT:
        from outbox.relay import relay_wake

        transaction.on_commit(relay_wake)


def retention_cutoff() -> timezone.datetime:
    """Events created before this instant may have lost their inbox records."""
    return timezone.now() - timedelta(days=settings.OUTBOX_RETENTION_DAYS)


def _purgeable(older_than_days: int | None) -> models.QuerySet[OutboxEvent]:
    from django.db.models import Exists, OuterRef

    days = settings.OUTBOX_RETENTION_DAYS if older_than_days is None else older_than_days
    unfinished = Delivery.objects.filter(event=OuterRef("pk")).exclude(status=Delivery.Status.DONE)
    return OutboxEvent.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).filter(
        ~Exists(unfinished)
    )


def outbox_purge(*, older_than_days: int | None = None, dry_run: bool = False) -> int:
    """Delete fully processed events (and their inbox records) older than the retention."""
    queryset = _purgeable(older_than_days)
    if dry_run:
        return queryset.count()
    total = 0
    while True:  # in slices, so no single transaction holds back vacuum for long
        ids = list(queryset.values_list("pk", flat=True)[:5000])
        if not ids:
            return total
        total += _purge_slice(ids)


def _purge_slice(ids: list[int]) -> int:
    """Delete those of the selected events whose deliveries are all still done; how many.

    The selection was read without locks, and a forced replay may have made a
    delivery due again since. So the events are locked (a replay locks them
    too before it touches their deliveries, see `outbox.replay`), then their
    deliveries, and only events whose locked deliveries are all done go. A
    replay that committed first is seen and wins; one that comes later waits,
    then finds the events gone and changes nothing.
    """
    with transaction.atomic():
        locked = OutboxEvent.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        events = list(locked.values_list("pk", flat=True))
        deliveries = Delivery.objects.select_for_update().filter(event_id__in=events)
        statuses = deliveries.order_by("pk").values_list("event_id", "status")
        unfinished = {event for event, status in statuses if status != Delivery.Status.DONE}
        done = [pk for pk in events if pk not in unfinished]
        Delivery.objects.filter(event_id__in=done).delete()
        OutboxEvent.objects.filter(pk__in=done).delete()
    return len(done)


def aggregate_lock(aggregate_type: str, aggregate_id: object) -> None:
    """Hold the aggregate's lock until commit, for an aggregate that may have no row to lock.

    A transaction-scoped advisory lock on the aggregate's key (see the ordering
    invariant in `events_record`); every writer that could race the one taking
    it must take it too. SQLite runs one writing transaction at a time already.
    """
    if not connection.in_atomic_block:
        raise OutsideTransaction("an aggregate's lock is only held inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"{aggregate_type}:{aggregate_id}"],
            )
