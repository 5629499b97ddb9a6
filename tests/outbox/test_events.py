"""Event payloads round-trip exactly; rows no code can read are retried, then dead-lettered."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone as dj_timezone

from outbox.events import DomainEvent, UnknownEventType, event_class
from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord
from tests.probe.scenarios import probes_record

pytestmark = pytest.mark.django_db(transaction=True)

AMOUNTS = [Decimal("19.90"), Decimal("0.000"), Decimal("1E+3"), Decimal("-0.10"),
           Decimal("123456789012345678901234567890.000000001")]  # fmt: skip


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class CodecChecked(DomainEvent):
    name = "test.codec_checked"
    aggregate_type = "codec"
    aggregate_field = "order_id"

    order_id: uuid.UUID
    total: Decimal
    placed_at: datetime
    lines: tuple[Line, ...]
    note: str | None = None


def _codec_event(amount: Decimal) -> CodecChecked:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    return CodecChecked(
        order_id=uuid.uuid4(),
        total=amount,
        placed_at=datetime(2026, 3, 1, 23, 59, 58, 123456, tzinfo=kolkata),
        lines=(
            Line("MUG-1", 2, Money(amount, "USD")),
            Line("TEE-9", 1, Money(Decimal("7.50"), "EUR")),
        ),
    )


def _assert_exactly_equal(restored: CodecChecked, original: CodecChecked) -> None:
    # Decimal("19.9") == Decimal("19.90"), so equality alone would hide a lost exponent.
    assert restored == original
    assert type(restored) is CodecChecked
    assert type(restored.lines[0].unit_price) is Money
    assert restored.total.as_tuple() == original.total.as_tuple()
    assert restored.lines[0].unit_price.amount.as_tuple() == original.total.as_tuple()
    assert restored.lines[1].unit_price.amount.as_tuple() == Decimal("7.50").as_tuple()
    assert isinstance(restored.order_id, uuid.UUID)
    assert restored.placed_at.utcoffset() == timedelta(hours=5, minutes=30)


@pytest.mark.parametrize("amount", AMOUNTS, ids=str)
def test_payload_round_trips_decimal_uuid_datetime_and_nested_dataclasses(amount):
    # given
    original = _codec_event(amount)
    # when: through JSON text, as a broker or a JSON column would carry it
    restored = CodecChecked.from_payload(json.loads(json.dumps(original.to_payload())))
    # then
    _assert_exactly_equal(restored, original)


def test_event_read_back_from_the_outbox_table_equals_the_event_recorded(settings):
    # given
    settings.OUTBOX_WAKE_ON_COMMIT = False
    original = _codec_event(Decimal("19.90"))
    with transaction.atomic():
        events_record([original])
    # when
    row = OutboxEvent.objects.get(type="test.codec_checked")
    restored = row.to_event()
    # then
    _assert_exactly_equal(restored, original)
    assert (row.aggregate_type, row.aggregate_id) == ("codec", str(original.order_id))


def test_an_unregistered_event_name_raises_unknown_event_type():
    with pytest.raises(UnknownEventType, match=re.escape("'nope.gone'")):
        event_class("nope.gone")


def _stored(event_type: str, payload: dict) -> Delivery:
    """An event row and a probe.record delivery written behind the codec's back."""
    now = dj_timezone.now()
    with transaction.atomic():
        row = OutboxEvent.objects.create(
            type=event_type,
            aggregate_type="stray",
            aggregate_id=event_type,
            payload=payload,
            occurred_at=now,
        )
        return Delivery.objects.create(
            event=row, handler="probe.record", aggregate_key=f"stray:{event_type}",
            next_attempt_at=now,
        )  # fmt: skip


def test_stored_events_no_code_can_read_are_retried_then_dead_lettered(start_worker):
    # given: a beat is running, so retries happen
    start_worker(beat=True, OUTBOX_VERSION_SKEW_MAX_ATTEMPTS="5")
    unknown = _stored("nope.gone", {})
    undecodable = _stored("probe.happened", {"aggregate": "a1"})  # no seq
    # when
    readable = probes_record([ProbeHappened(aggregate="fine", seq=1)])
    # then: newer code may yet read them (a rolling deploy), so each is retried
    # (OUTBOX_VERSION_SKEW_MAX_ATTEMPTS times, 5 here, more than probe.record's own 4),
    # then dead with a clear error; the rest flows on
    dead = Delivery.objects.filter(pk__in=[unknown.pk, undecodable.pk], status="dead")
    assert wait_until(lambda: dead.count() == 2, timeout=30)
    unknown.refresh_from_db()
    undecodable.refresh_from_db()
    assert (unknown.attempts, undecodable.attempts) == (5, 5)
    assert "UnknownEventType: unknown event type 'nope.gone'" in unknown.last_error
    assert "ValidationError" in undecodable.last_error
    assert "seq" in undecodable.last_error
    assert "Traceback" in unknown.last_traceback
    assert "Traceback" in undecodable.last_traceback
    assert wait_until(lambda: ProbeRecord.objects.count() == 2)
    assert set(ProbeRecord.objects.values_list("event_id", flat=True)) == {readable[0].event_id}
