"""Driving the probe: record probe events, and read back what the handlers did."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db import transaction

from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord

HANDLERS = ("probe.projection", "probe.record")


def probes_record(events: Iterable[ProbeHappened]) -> list[OutboxEvent]:
    """Record each event in its own committed transaction, in the order given."""
    rows = []
    for event in events:
        with transaction.atomic():
            rows += events_record([event])
    return rows


def effect_counts() -> Counter[tuple[str, str]]:
    """How many effects each (handler, event id) left."""
    pairs = ProbeRecord.objects.values_list("handler", "event_id")
    return Counter((handler, str(event_id)) for handler, event_id in pairs)


def expected_effects(rows: Iterable[OutboxEvent]) -> Counter[tuple[str, str]]:
    """One effect per handler per event: what exactly-once handling leaves."""
    return Counter((handler, str(row.event_id)) for row in rows for handler in HANDLERS)


def all_finished() -> bool:
    """Whether no delivery is waiting or being worked on."""
    return not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()


def seqs_by_aggregate(handler: str) -> dict[str, list[int]]:
    """Each aggregate's event seqs in the order `handler` handled them."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for aggregate, seq in ProbeRecord.objects.filter(handler=handler).values_list(
        "aggregate", "seq"
    ):  # ProbeRecord is ordered by id, which is handling order per aggregate
        seqs[aggregate].append(seq)
    return dict(seqs)
