"""A shared message (OUTBOX_DISPATCH_SHARED_QUEUES): one commit's deliveries to several handlers.

Batching must not tie one handler's transaction to another's locks: the saga's start
must not wait for the analytics projection, which `rebuild_analytics` locks EXCLUSIVE
for the whole replay.
"""

import threading
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection, transaction

from analytics.models import DailySales
from inventory.models import Product
from outbox.delivery import deliveries_process
from outbox.models import Delivery
from sagas.models import Saga
from tests.sagas.scenarios import place

pytestmark = pytest.mark.django_db(transaction=True)


def _projection_locked(locked: threading.Event, release: threading.Event) -> None:
    """What analytics_rebuild does first: hold the projection EXCLUSIVE until told."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {DailySales._meta.db_table} IN EXCLUSIVE MODE")
            locked.set()
            release.wait(10)
    finally:
        connection.close()


def _processed(lease_id: str, ids: list[int]) -> None:
    try:
        deliveries_process(lease_id, ids)
    finally:
        close_old_connections()
        connection.close()


def test_a_projection_rebuild_does_not_hold_back_the_saga_start_sharing_its_message():
    # given: an order placed; its order.created deliveries (the saga's start and the
    # projection's count) leased at commit, to travel in one shared message
    Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("9.50"), on_hand=10)
    order = place()
    leased = Delivery.objects.filter(aggregate_key=f"order:{order.pk}", lease_id__isnull=False)
    rows = list(leased.order_by("id").values_list("id", "handler", "lease_id"))
    assert {handler for _, handler, _ in rows} == {"orders.fulfilment", "analytics.daily_sales"}
    # and a rebuild holding the projection's table
    locked, release = threading.Event(), threading.Event()
    rebuild = threading.Thread(target=_projection_locked, args=(locked, release))
    rebuild.start()
    assert locked.wait(5)
    # when: a worker handles the shared message
    worker = threading.Thread(target=_processed, args=(str(rows[0][2]), [pk for pk, _, _ in rows]))
    worker.start()
    worker.join(2.0)
    try:
        # then: the saga started although the projection is still locked
        started = Saga.objects.filter(key=str(order.pk)).exists()
    finally:
        release.set()
        rebuild.join(10)
        worker.join(20)
    assert started, "the saga's start waited for the analytics projection's lock"
