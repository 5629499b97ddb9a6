"""Every sandbox token and address of CONTRACT §3 ends in its outcome and reason."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from inventory.models import Product
from orders.models import Order
from orders.selectors import order_timeline
from orders.services import LineRequest, order_place
from payments.models import Payment, SandboxLedgerEntry
from shipping.models import Shipment
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def place(token="tok_visa", country="US", quantity=2):
    customer = get_user_model().objects.get_or_create(username="ada")[0]
    return order_place(
        customer=customer,
        lines=[LineRequest("MUG-1", quantity)],
        payment_token=token,
        shipping_address={"name": "Ada", "line1": "1 Main", "city": "X", "postal_code": "1",
                          "country": country},
    )  # fmt: skip


def final(order, timeout=60):
    assert wait_until(
        lambda: Order.objects.get(pk=order.pk).status in ("confirmed", "failed"), timeout=timeout
    ), f"order stuck in {Order.objects.get(pk=order.pk).status}"
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def mug():
    return Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=10)


@pytest.mark.parametrize(
    ("token", "country", "status", "reason", "payment", "shipment"),
    [
        ("tok_visa", "US", "confirmed", "", "captured", "scheduled"),
        ("tok_chargeDeclined", "US", "failed", "payment_declined", "declined", None),
        ("tok_flaky", "US", "confirmed", "", "captured", "scheduled"),
        ("tok_down", "US", "failed", "payment_unavailable", "pending", None),
        ("tok_refundFlaky", "AQ", "failed", "shipping_unavailable", "refunded", None),
    ],
)
def test_sandbox_input_ends_in_its_outcome(
    start_worker, mug, token, country, status, reason, payment, shipment
):
    start_worker()
    order = final(place(token, country))
    assert (order.status, order.failure_reason) == (status, reason)
    assert Payment.objects.get(order_id=order.id).status == payment
    got_shipment = Shipment.objects.filter(order_id=order.id).first()
    assert (got_shipment.status if got_shipment else None) == shipment
    mug.refresh_from_db()
    assert mug.reserved == (2 if status == "confirmed" else 0)
    charges = SandboxLedgerEntry.objects.filter(
        kind="charge", idempotency_key__contains=str(order.id)
    )
    assert charges.count() <= 1


def test_insufficient_stock_fails_the_order_without_charging(start_worker, mug):
    start_worker()
    order = final(place(quantity=11))
    assert (order.status, order.failure_reason) == ("failed", "insufficient_stock")
    assert not Payment.objects.filter(order_id=order.id).exists()
    types = [e.type for e in order_timeline(order_id=order.id)]
    assert types == ["order.created", "inventory.reservation_rejected", "order.failed"]


def test_rejected_shipment_compensates_in_reverse_order(start_worker, mug):
    start_worker()
    order = final(place(country="AQ"))
    types = [e.type for e in order_timeline(order_id=order.id)]
    assert types == [
        "order.created", "inventory.reserved", "payment.captured", "shipment.rejected",
        "payment.refunded", "inventory.released", "order.failed",
    ]  # fmt: skip
