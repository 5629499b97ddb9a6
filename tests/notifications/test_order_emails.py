"""Customers get one e-mail per order event, through the outbox, with a real worker."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from analytics.models import DailySales
from inventory.models import Product
from notifications.models import Notification
from orders.models import Order
from orders.services import LineRequest, order_place
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_confirmed_order_gets_one_email_and_counts_in_daily_sales(start_worker):
    # given
    start_worker()
    Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=10)
    customer = get_user_model().objects.create_user("ada", "ada@example.com")
    # when
    order = order_place(
        customer=customer,
        lines=[LineRequest("MUG-1", 2)],
        payment_token="tok_visa",
        shipping_address={"name": "Ada", "line1": "1", "city": "X", "postal_code": "1",
                          "country": "US"},
    )  # fmt: skip
    # then
    assert wait_until(lambda: Notification.objects.filter(status="sent").exists(), timeout=30)
    note = Notification.objects.get()
    assert (note.kind, note.recipient, note.order_id) == ("confirmed", "ada@example.com", order.id)
    assert order.number in note.subject
    assert Order.objects.get(pk=order.pk).status == "confirmed"
    assert wait_until(
        lambda: DailySales.objects.filter(
            orders_confirmed=1, gross_revenue=Decimal("19.90")
        ).exists()
    )
    day = DailySales.objects.get()
    assert (day.orders_placed, day.refunds) == (1, Decimal("0"))
