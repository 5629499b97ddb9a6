"""An order moves only along the transition table, raising one event per move."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from inventory.models import Product
from inventory.services import (
    InsufficientStock,
    reservation_commit,
    reservation_create,
    reservation_release,
)
from orders.models import InvalidTransition, Order, TimelineEntry
from orders.selectors import order_timeline
from orders.services import (
    LineRequest,
    order_cancel,
    order_confirm,
    order_mark_delivered,
    order_mark_shipped,
    order_place,
)

pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "1",
    "country": "US",
}


@pytest.fixture
def customer():
    return get_user_model().objects.create_user("ada", "ada@example.com", "pw-123456!")


@pytest.fixture
def mug():
    return Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=5)


def place(customer, quantity=2):
    return order_place(
        customer=customer,
        lines=[LineRequest("MUG-1", quantity)],
        payment_token="tok_visa",
        shipping_address=ADDRESS,
    )


def test_placed_order_is_priced_from_the_catalog_and_on_its_timeline(customer, mug):
    order = place(customer)
    assert order.total == Decimal("19.90")
    assert [e.type for e in order_timeline(order_id=order.id)] == ["order.created"]


def test_order_goes_through_its_life_and_records_every_step(customer, mug):
    order = place(customer)
    reservation_create(order_id=order.id, lines={"MUG-1": 2})
    order_confirm(order_id=order.id)
    order_mark_shipped(order_id=order.id)
    reservation_commit(order_id=order.id)
    order_mark_delivered(order_id=order.id)
    mug.refresh_from_db()
    assert (mug.on_hand, mug.reserved) == (3, 0)
    assert list(TimelineEntry.objects.filter(order_id=order.id).values_list("type", flat=True)) == [
        "order.created", "inventory.reserved", "order.confirmed", "order.shipped",
        "inventory.committed", "order.delivered",
    ]  # fmt: skip


def test_delivered_order_cannot_be_cancelled(customer, mug):
    order = place(customer)
    order_confirm(order_id=order.id)
    order_mark_shipped(order_id=order.id)
    with pytest.raises(InvalidTransition):
        order_cancel(order_id=order.id)
    assert Order.objects.get(pk=order.id).status == "shipped"


def test_short_stock_rejects_every_short_line_and_reserves_nothing(customer, mug):
    order = place(customer)
    with pytest.raises(InsufficientStock) as raised:
        reservation_create(order_id=order.id, lines={"MUG-1": 6})
    assert [s.sku for s in raised.value.shortages] == ["MUG-1"]
    mug.refresh_from_db()
    assert mug.reserved == 0
    assert "inventory.reservation_rejected" in [e.type for e in order_timeline(order_id=order.id)]


def test_release_is_idempotent(customer, mug):
    order = place(customer)
    reservation_create(order_id=order.id, lines={"MUG-1": 2})
    reservation_create(order_id=order.id, lines={"MUG-1": 2})
    reservation_release(order_id=order.id)
    reservation_release(order_id=order.id)
    mug.refresh_from_db()
    assert mug.reserved == 0
    assert [e.type for e in order_timeline(order_id=order.id)].count("inventory.released") == 1
