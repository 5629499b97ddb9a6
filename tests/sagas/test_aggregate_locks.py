"""Every writer holds its aggregate's lock when it records the aggregate's events.

Per-aggregate order rests on it (see `outbox.services.events_record`): a
receiver of `events_recorded` asks, for each recorded event, whether another
transaction could lock the aggregate's row right now. It could not if the
recording transaction locked or wrote the row, or holds the aggregate's
advisory lock (an aggregate with no row). A separate connection asks, because
the row's `xmin`/`xmax` name a savepoint's own transaction id, not
`pg_current_xact_id()`, once a service's `atomic()` is nested in another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, models, transaction
from rest_framework.test import APIClient

from inventory.events import ProductRestocked
from inventory.models import Product, Reservation
from inventory.services import product_restock
from orders.events import OrderConfirmed
from orders.models import Order
from orders.services import order_cancel
from outbox.services import events_record, events_recorded
from payments.models import Payment
from shipping.models import Shipment
from shipping.webhooks import signature_for
from tests.sagas.scenarios import place, reloaded

pytestmark = pytest.mark.django_db(transaction=True)

# aggregate type -> the model holding the aggregate's row, and the field its id is in
AGGREGATE_ROWS: dict[str, tuple[type[models.Model], str]] = {
    "order": (Order, "id"),
    "payment": (Payment, "order_id"),
    "shipment": (Shipment, "order_id"),
    "reservation": (Reservation, "order_id"),
    "product": (Product, "sku"),
}


class AggregateLockCheck:
    """Collects every event recorded while its aggregate was free for others to lock."""

    def __init__(self) -> None:
        db = connection.settings_dict
        self.probe = psycopg.connect(
            host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
            password=db["PASSWORD"] or None, dbname=db["NAME"], autocommit=True,
        )  # fmt: skip
        self.checked: list[str] = []
        self.violations: list[str] = []

    def __call__(self, sender: Any, rows: list[Any], **kwargs: Any) -> None:
        for row in rows:
            self.checked.append(row.type)
            if not self._held(row.aggregate_type, row.aggregate_id):
                self.violations.append(f"{row.type} for {row.aggregate_type}:{row.aggregate_id}")

    def _held(self, aggregate_type: str, aggregate_id: str) -> bool:
        if self._advisory_lock_held(f"{aggregate_type}:{aggregate_id}"):
            return True
        model, field = AGGREGATE_ROWS[aggregate_type]
        pk = model.objects.filter(**{field: aggregate_id}).values_list("pk", flat=True).first()
        return pk is not None and self._row_held(model, pk)

    def _advisory_lock_held(self, key: str) -> bool:
        """Held elsewhere if this session cannot take it (taken, it ends with the statement)."""
        sql = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"
        return not self.probe.execute(sql, [key]).fetchone()[0]

    def _row_held(self, model: type[models.Model], pk: Any) -> bool:
        """Locked (FOR NO KEY UPDATE or stronger) or written by an open transaction: ours."""
        table, column = model._meta.db_table, model._meta.pk.column
        sql = f'SELECT 1 FROM "{table}" WHERE "{column}" = %s FOR SHARE NOWAIT'
        try:
            visible_to_others = self.probe.execute(sql, [pk]).fetchone() is not None
        except psycopg.errors.LockNotAvailable:
            return True
        return not visible_to_others  # inserted by the recording transaction, not committed


@pytest.fixture
def lock_check() -> Iterator[AggregateLockCheck]:
    check = AggregateLockCheck()
    events_recorded.connect(check, dispatch_uid="tests.aggregate_lock_check")
    yield check
    events_recorded.disconnect(dispatch_uid="tests.aggregate_lock_check")
    check.probe.close()


def carrier_says(shipment: Shipment, status: str) -> None:
    body = json.dumps({
        "event_id": f"ev-{status}", "tracking_number": shipment.tracking_number,
        "status": status, "occurred_at": "2026-11-26T10:00:00Z",
    }).encode()  # fmt: skip
    response = APIClient().post(
        "/api/shipping/carrier-webhook/", body, content_type="application/json",
        HTTP_X_CARRIER_SIGNATURE=signature_for(body),
    )  # fmt: skip
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("token", "country", "quantity", "status"),
    [
        ("tok_visa", "US", 2, "confirmed"),
        ("tok_chargeDeclined", "US", 2, "failed"),
        ("tok_visa", "AQ", 2, "failed"),
        ("tok_visa", "US", 11, "failed"),
    ],
    ids=["happy path", "declined", "AQ rejected", "insufficient stock"],
)
def test_each_saga_outcome_records_every_event_under_its_aggregates_lock(
    in_process, mug, lock_check, token, country, quantity, status
):
    # when
    order = place(token=token, country=country, quantity=quantity)
    in_process.run_until_quiet()
    # then
    assert reloaded(order).status == status
    assert lock_check.violations == []


def test_cancelling_shipping_delivering_and_restocking_record_under_the_lock(
    in_process, mug, lock_check
):
    # given
    shipped, cancelled = place(), place()
    in_process.run_until_quiet()
    # when
    order_cancel(order_id=cancelled.id, reason="changed my mind")
    in_process.run_until_quiet()
    shipment = Shipment.objects.get(order_id=shipped.id)
    carrier_says(shipment, "shipped")
    carrier_says(shipment, "delivered")
    product_restock(sku="MUG-1", quantity=5)
    # then
    assert (reloaded(cancelled).status, reloaded(shipped).status) == ("cancelled", "delivered")
    assert {"order.cancelled", "shipment.cancelled", "payment.refunded", "inventory.released",
            "order.shipped", "inventory.committed", "order.delivered",
            "inventory.restocked"} <= set(lock_check.checked)  # fmt: skip
    assert lock_check.violations == []


@pytest.mark.parametrize("hold", ["select_for_update", "update", "insert"])
def test_a_row_locked_updated_or_inserted_in_a_savepoint_counts_as_held(lock_check, mug, hold):
    # given: the row is held inside a nested atomic(), so by a savepoint's transaction id
    with transaction.atomic():
        with transaction.atomic():
            if hold == "select_for_update":
                Product.objects.select_for_update().get(sku="MUG-1")
            elif hold == "update":
                Product.objects.filter(sku="MUG-1").update(on_hand=11)
            else:
                Product.objects.create(sku="MUG-2", name="Mug", price=mug.price)
        # when
        sku = "MUG-2" if hold == "insert" else "MUG-1"
        events_record([ProductRestocked(sku=sku, quantity=1, on_hand=1)])
    # then
    assert lock_check.violations == []


def test_a_writer_that_skips_the_lock_is_caught(in_process, mug, lock_check):
    # given: a confirmed order, read without a lock
    order = place()
    in_process.run_until_quiet()
    # when: an event of it is recorded without locking its row
    with transaction.atomic():
        events_record([OrderConfirmed(order_id=Order.objects.get(pk=order.pk).pk)])
    # then
    assert lock_check.violations == [f"order.confirmed for order:{order.pk}"]
