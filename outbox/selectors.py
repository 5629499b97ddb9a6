"""Reads of the outbox: backlog, lag, throughput, dead letters, blocked aggregates, selections.

`outbox_stats()` is what /healthz, /metrics and `outbox_status` share: one
grouped query over unfinished deliveries (the partial `delivery_unfinished_idx`
covers it), so its cost follows the backlog, not the table's history.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, TruncMinute
from django.utils import timezone

from outbox.delivery import WorkerDied
from outbox.models import Delivery, OutboxEvent
from outbox.registry import all_handlers

PENDING, DONE, DEAD = Delivery.Status.PENDING, Delivery.Status.DONE, Delivery.Status.DEAD
WORKER_DIED = f"{WorkerDied.__name__}:"  # how a delivery whose worker died names its error


@dataclasses.dataclass(frozen=True)
class HandlerStats:
    """One handler's unfinished work."""

    pending: int = 0
    dead: int = 0
    # Aggregates whose next event this handler cannot take: a dead letter holds them.
    blocked_aggregates: int = 0
    oldest_pending_age: float | None = None  # seconds


@dataclasses.dataclass(frozen=True)
class OutboxStats:
    """Backlog, lag and dead letters, in total and per handler."""

    pending: int
    dead: int
    blocked_aggregates: int
    oldest_pending_age: float | None  # seconds since the oldest pending delivery was written
    handlers: dict[str, HandlerStats]
    # Dead letters whose last attempt's worker died mid-handler (OOM, segfault).
    died_in_worker: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (handlers keyed by name)."""
        return dataclasses.asdict(self)


def pending_count() -> int:
    """Deliveries not yet handled (due, retrying, leased or blocked)."""
    return Delivery.objects.filter(status=PENDING).count()


def oldest_pending_age(*, now: datetime | None = None) -> float | None:
    """Seconds since the oldest pending delivery was written; None when nothing is pending."""
    # Walks `delivery_pending_idx` in id order and stops at the first row.
    oldest = (
        Delivery.objects.filter(status=PENDING)
        .order_by("id")
        .values_list("created_at", flat=True)
        .first()
    )
    return _age(oldest, now or timezone.now())


def outbox_stats(*, now: datetime | None = None) -> OutboxStats:
    """Pending, dead and blocked counts and the lag, per handler and in total, in one query."""
    now = now or timezone.now()
    rows = (
        Delivery.objects.exclude(status=DONE)
        .values("handler")
        .annotate(
            pending=Count("id", filter=Q(status=PENDING)),
            dead=Count("id", filter=Q(status=DEAD)),
            blocked=Count("aggregate_key", filter=Q(status=DEAD), distinct=True),
            oldest=Min("created_at", filter=Q(status=PENDING)),
            died=Count("id", filter=Q(status=DEAD, last_error__startswith=WORKER_DIED)),
        )
        .order_by()
    )
    handlers = {name: HandlerStats() for name in all_handlers()}
    died = 0
    for row in rows:
        handlers[row["handler"]] = HandlerStats(
            row["pending"], row["dead"], row["blocked"], _age(row["oldest"], now)
        )
        died += row["died"]
    return dataclasses.replace(_totals(dict(sorted(handlers.items()))), died_in_worker=died)


def deliveries_done_per_minute(
    *, minutes: int, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """Deliveries handled in each of the last `minutes` clock minutes, oldest first.

    The last minute is the one still running. A range over the `done_at` index.
    """
    now = now or timezone.now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rows = (
        Delivery.objects.filter(done_at__gte=start, done_at__lte=now)
        .annotate(minute=TruncMinute("done_at"))
        .values_list("minute")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = dict(rows)
    minutes_shown = [start + timedelta(minutes=i) for i in range(minutes)]
    return [(minute, counts.get(minute, 0)) for minute in minutes_shown]


def deliveries_done_since(since: datetime) -> int:
    """Deliveries handled at or after `since` (a range over the `done_at` index)."""
    return Delivery.objects.filter(done_at__gte=since).count()


def _totals(handlers: dict[str, HandlerStats]) -> OutboxStats:
    ages = [h.oldest_pending_age for h in handlers.values() if h.oldest_pending_age is not None]
    return OutboxStats(
        pending=sum(h.pending for h in handlers.values()),
        dead=sum(h.dead for h in handlers.values()),
        blocked_aggregates=sum(h.blocked_aggregates for h in handlers.values()),
        oldest_pending_age=max(ages, default=None),
        handlers=handlers,
    )


def _age(instant: datetime | None, now: datetime) -> float | None:
    return None if instant is None else max(0.0, round((now - instant).total_seconds(), 3))


@dataclasses.dataclass(frozen=True)
class BlockedAggregate:
    """An aggregate a handler is stuck on, and the dead letter that holds it."""

    handler: str
    aggregate_key: str
    delivery_id: int
    event_pk: int
    event_id: str
    event_type: str
    last_error: str
    # Pending deliveries of this aggregate queued behind the dead letter.
    waiting: int


def blocked_aggregates(*, handler: str | None = None, limit: int = 50) -> list[BlockedAggregate]:
    """Aggregates held by a dead letter, oldest first, naming the blocking event."""
    first_dead = Delivery.objects.filter(status=DEAD)
    if handler is not None:
        first_dead = first_dead.filter(handler=handler)
    first_dead = first_dead.values("handler", "aggregate_key").annotate(first=Min("id")).order_by()
    blockers = (
        Delivery.objects.filter(id__in=Subquery(first_dead.values("first")))
        .select_related("event")
        .annotate(waiting=Coalesce(Subquery(_waiting_behind()), Value(0)))
        .order_by("id")[:limit]
    )
    return [
        BlockedAggregate(
            handler=d.handler,
            aggregate_key=d.aggregate_key,
            delivery_id=d.pk,
            event_pk=d.event.pk,
            event_id=str(d.event.event_id),
            event_type=d.event.type,
            last_error=d.last_error,
            waiting=d.waiting,
        )
        for d in blockers
    ]


def _waiting_behind() -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(
            status=PENDING,
            handler=OuterRef("handler"),
            aggregate_key=OuterRef("aggregate_key"),
            id__gt=OuterRef("id"),
        )
        .order_by()
        .values("handler")
        .annotate(n=Count("id"))
        .values("n")
    )


def dead_letters(
    *, handler: str | None = None, events: QuerySet[OutboxEvent] | None = None
) -> QuerySet[Delivery]:
    """Dead deliveries with their events, oldest first."""
    deliveries = Delivery.objects.filter(status=DEAD).select_related("event").order_by("id")
    if handler is not None:
        deliveries = deliveries.filter(handler=handler)
    if events is not None:
        deliveries = deliveries.filter(event__in=events)
    return deliveries


# --- Events by state and by an operator's selection --------------------------------

EVENT_STATES = ("pending", "done", "dead")


def _deliveries_of_event(status: str) -> Exists:
    return Exists(Delivery.objects.filter(event=OuterRef("pk"), status=status))


def events_in_state(
    state: str, events: QuerySet[OutboxEvent] | None = None
) -> QuerySet[OutboxEvent]:
    """Events by derived state: dead (any dead delivery), pending (else any pending), done."""
    events = OutboxEvent.objects.all() if events is None else events
    if state == "dead":
        return events.filter(_deliveries_of_event(DEAD))
    if state == "pending":
        return events.filter(~_deliveries_of_event(DEAD), _deliveries_of_event(PENDING))
    if state == "done":
        return events.filter(~_deliveries_of_event(DEAD), ~_deliveries_of_event(PENDING))
    raise ValueError(f"unknown event state {state!r}; expected one of {', '.join(EVENT_STATES)}")


def events_with_state(events: QuerySet[OutboxEvent] | None = None) -> QuerySet[OutboxEvent]:
    """Events annotated with `has_dead` and `has_pending` (see `event_state`)."""
    events = OutboxEvent.objects.all() if events is None else events
    return events.annotate(
        has_dead=_deliveries_of_event(DEAD), has_pending=_deliveries_of_event(PENDING)
    )


def event_state(event: OutboxEvent) -> str:
    """The derived state of an event annotated by `events_with_state`."""
    if event.has_dead:
        return "dead"
    return "pending" if event.has_pending else "done"


class InvalidSelection(ValueError):
    """An event selection that contradicts itself (from > to, since after until)."""


@dataclasses.dataclass(frozen=True)
class EventSelection:
    """Which events an operator means; criteria combine with AND, values of one with OR."""

    ids: tuple[int, ...] = ()
    event_ids: tuple[uuid.UUID, ...] = ()
    from_id: int | None = None
    to_id: int | None = None
    types: tuple[str, ...] = ()
    aggregates: tuple[tuple[str, str], ...] = ()  # (aggregate_type, aggregate_id)
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    dead_only: bool = False  # events with at least one dead delivery

    def __post_init__(self) -> None:
        if None not in (self.from_id, self.to_id) and self.from_id > self.to_id:
            raise InvalidSelection(f"from-id {self.from_id} is after to-id {self.to_id}")
        if None not in (self.since, self.until) and self.since >= self.until:
            raise InvalidSelection(f"since {self.since:%Y-%m-%d %H:%M:%S} is not before until")

    @property
    def is_empty(self) -> bool:
        """True when no criterion is set, i.e. it would select every event."""
        return self == EventSelection()


def events_selected(selection: EventSelection) -> QuerySet[OutboxEvent]:
    """The events a selection names, in id order."""
    events = OutboxEvent.objects.order_by("id")
    if selection.ids or selection.event_ids:
        events = events.filter(Q(pk__in=selection.ids) | Q(event_id__in=selection.event_ids))
    if selection.from_id is not None:
        events = events.filter(pk__gte=selection.from_id)
    if selection.to_id is not None:
        events = events.filter(pk__lte=selection.to_id)
    if selection.types:
        events = events.filter(type__in=selection.types)
    if selection.aggregates:
        events = events.filter(_any_aggregate(selection.aggregates))
    if selection.since is not None:
        events = events.filter(created_at__gte=selection.since)
    if selection.until is not None:
        events = events.filter(created_at__lt=selection.until)
    if selection.dead_only:
        events = events.filter(_deliveries_of_event(DEAD))
    return events


def _any_aggregate(aggregates: tuple[tuple[str, str], ...]) -> Q:
    query = Q()
    for aggregate_type, aggregate_id in aggregates:
        query |= Q(aggregate_type=aggregate_type, aggregate_id=aggregate_id)
    return query
