"""orders.fulfilment in batches: one message's saga starts and cancels in one transaction."""

import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction

from inventory.models import Product
from orders.fulfilment import FULFILMENT
from orders.models import Order
from orders.services import order_cancel
from outbox.models import Delivery
from outbox.tasks import deliver
from sagas.models import Saga
from sagas.services import saga_start
from shopflow.clock import db_later
from tests.conftest import wait_until
from tests.sagas.scenarios import (
    HANDLER,
    assert_final_state_is_consistent,
    ledger_charges,
    place,
    saga_of,
    settled,
    timeline,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cups() -> Product:
    return Product.objects.create(sku="CUP-1", name="Cup", price=Decimal("4.50"), on_hand=100)


def fulfilment_leased(orders: list[Order]) -> tuple[str, list[int]]:
    """Lease the orders' fulfilment deliveries to one claim (inside the placing transaction)."""
    lease_id = uuid.uuid4()
    keys = [f"order:{order.pk}" for order in orders]
    deliveries = Delivery.objects.filter(handler=HANDLER, aggregate_key__in=keys)
    deliveries.update(lease_id=lease_id, lease_expires_at=db_later(settings.OUTBOX_LEASE_SECONDS))
    return str(lease_id), list(deliveries.order_by("id").values_list("id", flat=True))


def all_settled(orders: list[Order]) -> bool:
    return all(settled(order) for order in orders)


def test_orders_created_in_one_message_start_one_saga_each_in_one_transaction(
    no_wake_up, start_worker, cups
):
    # given: eight orders placed, their fulfilment deliveries leased to one claim
    worker = start_worker(beat=True)
    with transaction.atomic():
        orders = [place(sku="CUP-1", quantity=1) for _ in range(8)]
        lease_id, ids = fulfilment_leased(orders)
    # when: the eight order.created deliveries travel in one message
    deliver.apply_async(args=(lease_id, ids), queue="saga")
    # then: each order's saga started once, and each order is confirmed
    assert wait_until(lambda: all_settled(orders), timeout=60), worker.log_tail()
    sagas = Saga.objects.filter(definition=FULFILMENT)
    assert sorted(sagas.values_list("key", flat=True)) == sorted(str(o.pk) for o in orders)
    for order in orders:
        assert_final_state_is_consistent(order)
        assert Order.objects.get(pk=order.pk).status == "confirmed"
    # and their deliveries were done by one flip statement, on their first attempt
    deliveries = Delivery.objects.filter(pk__in=ids)
    assert {(d.status, d.attempts) for d in deliveries} == {("done", 1)}
    assert len({d.done_at for d in deliveries}) == 1


def test_a_cancellation_behind_its_orders_creation_in_one_batch_cancels_the_saga_it_started(
    no_wake_up, start_worker, cups
):
    # given: one message carrying an order's order.created and order.cancelled (the relay
    # never sends two of one order together; made by hand), and another order's creation
    worker = start_worker(beat=True)
    with transaction.atomic():
        cancelled = place(sku="CUP-1", quantity=1)
        order_cancel(order_id=cancelled.pk, reason="changed my mind")
        kept = place(sku="CUP-1", quantity=1)
        lease_id, ids = fulfilment_leased([cancelled, kept])
    assert len(ids) == 3
    # when
    deliver.apply_async(args=(lease_id, ids), queue="saga")
    # then: the saga started, then took the cancellation: nothing reserved, nothing charged
    assert wait_until(lambda: all_settled([cancelled, kept]), timeout=60), worker.log_tail()
    assert saga_of(cancelled).status == Saga.Status.COMPENSATED
    assert Order.objects.get(pk=cancelled.pk).status == "cancelled"
    assert timeline(cancelled) == ["order.created", "order.cancelled"]
    assert ledger_charges(cancelled) == []
    assert_final_state_is_consistent(cancelled)
    assert Order.objects.get(pk=kept.pk).status == "confirmed"
    # and the three were done together, each once
    deliveries = Delivery.objects.filter(pk__in=ids)
    assert {(d.status, d.attempts) for d in deliveries} == {("done", 1)}
    assert len({d.done_at for d in deliveries}) == 1


def lock_waiters() -> int:
    """Backends of this database waiting for a lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else fixed for the transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_saga_start_that_loses_a_race_for_its_key_fails_its_batch_and_is_done_alone(
    no_wake_up, start_worker, cups
):
    # given: three orders in one message, and the first one's saga being started elsewhere
    worker = start_worker(beat=True)
    with transaction.atomic():
        orders = [place(sku="CUP-1", quantity=1) for _ in range(3)]
        lease_id, ids = fulfilment_leased(orders)
    with transaction.atomic():
        racer = saga_start(definition=FULFILMENT, key=str(orders[0].pk))
        # when: the batch reaches the same key and waits on its unique index, then this commits
        deliver.apply_async(args=(lease_id, ids), queue="saga")
        assert wait_until(lambda: lock_waiters() == 1, timeout=20), worker.log_tail()
    # then: the batch rolled back; run alone, the first start found the saga, the others made theirs
    assert wait_until(lambda: all_settled(orders), timeout=60), worker.log_tail()
    assert "a batch of 3 deliveries failed" in worker.log.read_text()
    assert saga_of(orders[0]).pk == racer.pk
    assert Saga.objects.filter(definition=FULFILMENT).count() == 3
    for order in orders:
        assert Order.objects.get(pk=order.pk).status == "confirmed"
    # and no delivery spent a second attempt
    deliveries = Delivery.objects.filter(pk__in=ids)
    assert {(d.status, d.attempts) for d in deliveries} == {("done", 1)}
