"""Replay: hand stored events to their handlers again, through the relay and the inbox.

Replay never calls a handler. It only changes delivery rows and wakes the
relay, so a replayed event travels the normal path (claim, lease, ordering per
aggregate, retries) and the inbox decides what runs:

- a delivery already done is skipped, unless `reprocess` asks for it and its
  handler is declared replayable (a projection that may run twice);
- a dead delivery is requeued with a fresh attempt count;
- a missing delivery (purged, or the handler subscribed later) is created;
- a pending delivery is already on its way and is left alone.

Every change is a single UPDATE or INSERT guarded by the status it expects, so
a replay may run while relays and workers are busy. A handler takes an
aggregate's deliveries in delivery-id order, so a delivery created now for an
old event runs after that handler's still-unfinished deliveries of the same
aggregate; requeued and reprocessed rows keep their place. A projection rebuild is
`events_replay(EventSelection(types=...), handler="<projection>", reprocess=True)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Now

from outbox.events import event_types
from outbox.models import Delivery, OutboxEvent
from outbox.registry import Handler, UnknownHandler, get_handler, handlers_for
from outbox.selectors import DEAD, DONE, PENDING, EventSelection, events_selected
from outbox.services import retention_cutoff

Progress = Callable[[int, int], None]  # (events done so far, events in total)


class ReplayRefused(Exception):
    """A replay that is ill-formed or unsafe; nothing was changed."""


class EventsTooOld(ReplayRefused):
    """The selection reaches past the retention period, where inbox records may be gone."""


@dataclasses.dataclass(frozen=True)
class ReplaySummary:
    """What a replay did (or, in a dry run, would do) to the selected events' deliveries."""

    events: int = 0
    requeued: int = 0  # dead deliveries made due again
    created: int = 0  # missing deliveries written
    skipped: int = 0  # done deliveries left alone (the inbox says: already handled)
    reprocessed: int = 0  # done deliveries of replayable handlers made due again
    in_flight: int = 0  # pending deliveries left alone: already on their way
    dry_run: bool = False

    def __add__(self, other: ReplaySummary) -> ReplaySummary:
        counts = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "dry_run"
        }
        return ReplaySummary(**counts, dry_run=self.dry_run)

    @property
    def changed(self) -> int:
        """Deliveries made due by this replay."""
        return self.requeued + self.created + self.reprocessed

    def __str__(self) -> str:
        line = (
            f"{self.events} events: {self.requeued} requeued, {self.created} created, "
            f"{self.skipped} skipped (already done), {self.reprocessed} reprocessed, "
            f"{self.in_flight} already pending"
        )
        return f"dry run, nothing changed; would replay {line}" if self.dry_run else line


def events_replay(
    selection: EventSelection,
    *,
    handler: str | None = None,
    reprocess: bool = False,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_size: int = 500,
) -> ReplaySummary:
    """Make the selected events' deliveries due again where the inbox allows, then wake the relay.

    Raises `UnknownHandler` for an unknown `handler` and `ReplayRefused` (before
    changing anything) for an empty selection, unknown types or ids, events older
    than the retention without `force`, or a `reprocess` that would re-run a
    handler not declared replayable.
    """
    target = get_handler(handler) if handler is not None else None
    events = _checked_selection(selection)
    _refuse_unsafe(events, target=target, reprocess=reprocess, force=force)
    total = events.count()
    summary = ReplaySummary(dry_run=dry_run)
    for pks in _chunks(events, chunk_size):
        summary += _replay_chunk(pks, target=target, reprocess=reprocess, dry_run=dry_run)
        if progress is not None:
            progress(summary.events, total)
    if summary.changed and not dry_run:
        _wake_relay()
    return summary


def _checked_selection(selection: EventSelection) -> QuerySet[OutboxEvent]:
    if selection.is_empty:
        raise ReplayRefused("select the events to replay (ids, types, aggregates, dates, status)")
    unknown = sorted(set(selection.types) - set(event_types()))
    if unknown:
        raise ReplayRefused(f"unknown event type {', '.join(unknown)}")
    events = events_selected(selection)
    _refuse_missing_ids(selection)
    return events


def _refuse_missing_ids(selection: EventSelection) -> None:
    found = OutboxEvent.objects.filter(pk__in=selection.ids).values_list("pk", flat=True)
    missing = [str(pk) for pk in sorted(set(selection.ids) - set(found))]
    found_uuids = set(
        OutboxEvent.objects.filter(event_id__in=selection.event_ids).values_list(
            "event_id", flat=True
        )
    )
    missing += [str(u) for u in selection.event_ids if u not in found_uuids]
    if missing:
        raise ReplayRefused(f"no outbox event with id {', '.join(missing)}")


def _refuse_unsafe(
    events: QuerySet[OutboxEvent], *, target: Handler | None, reprocess: bool, force: bool
) -> None:
    if not force:
        old = events.filter(created_at__lt=retention_cutoff()).count()
        if old:
            raise EventsTooOld(
                f"{old} selected events are older than the retention period "
                f"({settings.OUTBOX_RETENTION_DAYS} days): their inbox records may be purged, "
                "so a handler could run twice"
            )
    if reprocess:
        unsafe = _non_replayable(events, target)
        if unsafe:
            raise ReplayRefused(
                f"reprocess would re-run handler {', '.join(unsafe)}, which is not replayable; "
                "target a replayable handler"
            )


def _non_replayable(events: QuerySet[OutboxEvent], target: Handler | None) -> list[str]:
    """Handlers a reprocess could re-run although they may have side effects.

    Judged by subscription as well as by done deliveries, so the answer does not
    depend on whether the deliveries happen to have finished yet.
    """
    if target is not None:
        return [] if target.replayable else [target.name]
    types = events.values_list("type", flat=True).order_by().distinct()
    subscribed = {h.name for event_type in types for h in handlers_for(event_type)}
    handled = (
        Delivery.objects.filter(event__in=events, status=DONE)
        .values_list("handler", flat=True)
        .order_by()
        .distinct()
    )
    return sorted(name for name in subscribed | set(handled) if not _replayable(name))


def _replayable(name: str) -> bool:
    try:
        return get_handler(name).replayable
    except UnknownHandler:
        return False


def _chunks(events: QuerySet[OutboxEvent], size: int) -> Iterator[list[int]]:
    """Event ids in ascending slices, by keyset so rows added meanwhile do not shift pages."""
    last = 0
    while True:
        pks = list(events.filter(pk__gt=last).values_list("pk", flat=True)[:size])
        if not pks:
            return
        yield pks
        last = pks[-1]


@dataclasses.dataclass
class _Plan:
    dead: list[int] = dataclasses.field(default_factory=list)
    done_again: list[int] = dataclasses.field(default_factory=list)
    missing: list[Delivery] = dataclasses.field(default_factory=list)
    skipped: int = 0
    in_flight: int = 0

    def summary(
        self, events: int, *, requeued: int, reprocessed: int, dry_run: bool = False
    ) -> ReplaySummary:
        return ReplaySummary(
            events=events,
            requeued=requeued,
            created=len(self.missing),
            skipped=self.skipped,
            reprocessed=reprocessed,
            in_flight=self.in_flight,
            dry_run=dry_run,
        )


def _replay_chunk(
    pks: list[int], *, target: Handler | None, reprocess: bool, dry_run: bool
) -> ReplaySummary:
    plan = _plan(pks, target=target, reprocess=reprocess)
    if dry_run:
        return plan.summary(
            len(pks), requeued=len(plan.dead), reprocessed=len(plan.done_again), dry_run=True
        )
    with transaction.atomic():
        present = _events_lock(pks)
        requeued = _make_due(plan.dead, expected=DEAD)
        reprocessed = _make_due(plan.done_again, expected=DONE)
        plan.missing = [d for d in plan.missing if d.event_id in present]
        # The unique (event, handler) constraint makes a concurrent replay's insert a no-op.
        Delivery.objects.bulk_create(plan.missing, ignore_conflicts=True)
    return plan.summary(len(pks), requeued=requeued, reprocessed=reprocessed)


def _events_lock(pks: list[int]) -> set[int]:
    """Lock the chunk's events against the purge; those still there.

    The purge locks an event before it re-checks and deletes its deliveries, so
    a delivery made due or created under this lock is never purged, and an
    event the purge took first is gone here: nothing is written for it.
    """
    events = OutboxEvent.objects.select_for_update(no_key=True).filter(pk__in=pks)
    return set(events.order_by("pk").values_list("pk", flat=True))


def _plan(pks: list[int], *, target: Handler | None, reprocess: bool) -> _Plan:
    """Decide per (event, handler) what the inbox allows."""
    plan = _Plan()
    deliveries = Delivery.objects.filter(event_id__in=pks).order_by("id")
    if target is not None:
        deliveries = deliveries.filter(handler=target.name)
    seen: set[tuple[int, str]] = set()
    for pk, event_pk, name, status in deliveries.values_list("pk", "event_id", "handler", "status"):
        seen.add((event_pk, name))
        if status == DEAD:
            plan.dead.append(pk)
        elif status == PENDING:
            plan.in_flight += 1
        elif reprocess and _replayable(name):
            plan.done_again.append(pk)
        else:
            plan.skipped += 1
    plan.missing = _missing_deliveries(pks, seen, target)
    return plan


def _missing_deliveries(
    pks: list[int], seen: set[tuple[int, str]], target: Handler | None
) -> list[Delivery]:
    events = OutboxEvent.objects.filter(pk__in=pks).order_by("id")
    return [
        Delivery(
            event_id=row.pk,
            handler=handler.name,
            aggregate_key=f"{row.aggregate_type}:{row.aggregate_id}",
            next_attempt_at=Now(),
        )
        for row in events.only("pk", "type", "aggregate_type", "aggregate_id")
        for handler in handlers_for(row.type)
        if (row.pk, handler.name) not in seen and (target is None or target.name == handler.name)
    ]


def _make_due(ids: list[int], *, expected: str) -> int:
    """Make deliveries due now with a fresh attempt count, if still in the expected state."""
    if not ids:
        return 0
    return Delivery.objects.filter(pk__in=ids, status=expected).update(
        status=PENDING,
        attempts=0,
        next_attempt_at=Now(),
        lease_id=None,
        lease_expires_at=None,
        started_lease_id=None,
        done_at=None,
    )


def _wake_relay() -> None:
    """Nudge the relay after the last chunk commits; with wake-ups off, beat's poll finds them."""
    if not settings.OUTBOX_WAKE_ON_COMMIT:
        return
    from outbox.relay import relay_wake

    transaction.on_commit(relay_wake)
