"""Concurrent reservations: no overselling, no deadlocks, `reserved` always adds up.

Each test races real threads, each on its own PostgreSQL connection, released
together by a barrier. The naive versions below are what the services must not
be; running the same checks against them shows the checks catch the bug.
"""

import time
import uuid
from collections.abc import Mapping
from uuid import UUID

import pytest
from django.db import OperationalError, transaction
from django.db.models import F, Sum

from inventory.events import Shortage
from inventory.models import Product, Reservation, ReservationLine
from inventory.services import (
    InsufficientStock,
    reservation_commit,
    reservation_create,
    reservation_release,
)
from tests.inventory.concurrency import errors, race
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 100
STOCK = 37


@pytest.fixture(autouse=True)
def _no_relay_wakeups(settings):
    # No worker runs here: the stock rows are under test, not the relay.
    settings.OUTBOX_WAKE_ON_COMMIT = False


def held_by_active_reservations(sku: str) -> int:
    lines = ReservationLine.objects.filter(product__sku=sku, reservation__status="active")
    return lines.aggregate(total=Sum("quantity"))["total"] or 0


def oversell_violations(sku: str, stock: int, outcomes: list) -> list[str]:
    """Every way the race broke the stock's books; empty when it did not."""
    product = Product.objects.get(sku=sku)
    held = held_by_active_reservations(sku)
    granted = [o for o in outcomes if isinstance(o, Reservation)]
    problems = []
    if len(granted) != stock:
        problems.append(f"{len(granted)} reservations granted for {stock} units")
    if held != stock:
        problems.append(f"active reservations hold {held} units of {stock}")
    if product.reserved != held:
        problems.append(f"reserved says {product.reserved}, active reservations hold {held}")
    if len(errors(outcomes)) != len(errors(outcomes, InsufficientStock)):
        problems.append(f"unexpected errors: {errors(outcomes)[:3]}")
    return problems


def naive_reservation_create(*, order_id: UUID, lines: Mapping[str, int]) -> Reservation:
    """Read, check, write back without a lock: the lost update the service prevents."""
    with transaction.atomic():
        reservation = Reservation.objects.create(order_id=order_id)
        for sku, quantity in lines.items():
            product = Product.objects.get(sku=sku)
            if product.available < quantity:
                raise InsufficientStock([Shortage(sku, quantity, product.available)])
            time.sleep(0.005)  # the window a busy server opens between read and write
            product.reserved += quantity
            product.save(update_fields=["reserved"])
            ReservationLine.objects.create(
                reservation=reservation, product=product, quantity=quantity
            )
    return reservation


def naive_lock_in_request_order(*, order_id: UUID, lines: Mapping[str, int]) -> None:
    """Lock each SKU as the order lists it: {A,B} against {B,A} deadlocks."""
    with transaction.atomic():
        for sku, quantity in lines.items():
            Product.objects.select_for_update().get(sku=sku)
            time.sleep(0.2)  # both orders hold their first row before asking for the second
            Product.objects.filter(sku=sku).update(reserved=F("reserved") + quantity)


def last_units_race(reserve) -> tuple[str, list]:
    sku = ProductFactory(on_hand=STOCK).sku
    calls = [lambda: reserve(order_id=uuid.uuid4(), lines={sku: 1}) for _ in range(THREADS)]
    return sku, race(calls)


def test_hundred_buyers_of_the_last_units_get_exactly_the_stock():
    # given / when
    sku, outcomes = last_units_race(reservation_create)
    # then
    assert oversell_violations(sku, STOCK, outcomes) == []
    assert Reservation.objects.filter(status="active").count() == STOCK
    assert Product.objects.get(sku=sku).reserved == STOCK
    assert len(errors(outcomes, InsufficientStock)) == THREADS - STOCK


def test_the_oversell_check_catches_a_naive_read_modify_write():
    # given / when: the same race against the unlocked version
    sku, outcomes = last_units_race(naive_reservation_create)
    # then: the books no longer add up (lost updates, and more units promised than exist)
    problems = oversell_violations(sku, STOCK, outcomes)
    assert problems != []
    assert Product.objects.get(sku=sku).reserved != held_by_active_reservations(sku)


def opposite_order_lines(a: str, b: str, count: int) -> list[dict[str, int]]:
    """Half the orders list A before B, half B before A."""
    return [{a: 1, b: 1} if i % 2 else {b: 1, a: 1} for i in range(count)]


def test_orders_over_the_same_skus_in_opposite_orders_never_deadlock():
    # given
    a, b = ProductFactory(on_hand=100).sku, ProductFactory(on_hand=100).sku
    orders = opposite_order_lines(a, b, 60)
    # when
    outcomes = race([lambda lines=lines: reservation_create(order_id=uuid.uuid4(), lines=lines)
                     for lines in orders])  # fmt: skip
    # then
    assert errors(outcomes) == []
    for sku in (a, b):
        product = Product.objects.get(sku=sku)
        assert (product.on_hand, product.reserved) == (100, 60)
        assert held_by_active_reservations(sku) == 60


def test_the_deadlock_check_catches_locking_in_request_order():
    # given
    a, b = ProductFactory(on_hand=100).sku, ProductFactory(on_hand=100).sku
    orders = opposite_order_lines(a, b, 4)
    # when
    outcomes = race([lambda lines=lines: naive_lock_in_request_order(order_id=uuid.uuid4(),
                                                                      lines=lines)
                     for lines in orders])  # fmt: skip
    # then: PostgreSQL had to break at least one lock cycle
    deadlocks = [e for e in errors(outcomes, OperationalError) if "deadlock" in str(e)]
    assert deadlocks != []


def test_releases_and_commits_racing_creates_keep_reserved_equal_to_active_lines():
    # given: 20 orders already hold stock, over both SKUs in both orders
    a, b = ProductFactory(on_hand=200).sku, ProductFactory(on_hand=200).sku
    held = [uuid.uuid4() for _ in range(20)]
    for order_id, lines in zip(held, opposite_order_lines(a, b, 20), strict=True):
        reservation_create(order_id=order_id, lines={sku: 2 for sku in lines})
    # when: 40 new orders reserve while 10 release and 10 commit (shipping)
    creates = [lambda lines=lines: reservation_create(order_id=uuid.uuid4(), lines=lines)
               for lines in opposite_order_lines(a, b, 40)]  # fmt: skip
    releases = [lambda o=o: reservation_release(order_id=o) for o in held[:10]]
    commits = [lambda o=o: reservation_commit(order_id=o) for o in held[10:]]
    outcomes = race(creates + releases + commits)
    # then
    assert errors(outcomes) == []
    for sku in (a, b):
        product = Product.objects.get(sku=sku)
        assert product.reserved == held_by_active_reservations(sku) == 40
        assert product.on_hand == 200 - 10 * 2
