"""The shipments admin: read-only shipments, marked shipped and delivered through the service."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from inventory.models import Product, Reservation
from inventory.services import reservation_create
from orders.models import Order
from orders.services import LineRequest, order_confirm, order_place
from shipping.models import Shipment
from shipping.services import shipment_schedule

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_wake_up")]

SHIPMENTS = reverse("admin:shipping_shipment_changelist")
ADDRESS = {"name": "A", "line1": "1", "city": "C", "postal_code": "1", "country": "US"}


@pytest.fixture
def shipment() -> Shipment:
    """A confirmed order's scheduled shipment, its stock reserved."""
    Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("5.00"), on_hand=4)
    order = order_place(
        customer=get_user_model().objects.create_user("ada"),
        lines=[LineRequest("MUG-1", 1)],
        payment_token="tok_visa",
        shipping_address=ADDRESS,
    )
    reservation_create(order_id=order.id, lines={"MUG-1": 1})
    order_confirm(order_id=order.id)
    return shipment_schedule(order_id=order.id, address=ADDRESS, idempotency_key="k")


def mark(client, action: str, shipment: Shipment) -> str:
    data = {"action": action, "_selected_action": [str(shipment.pk)]}
    response = client.post(SHIPMENTS, data, follow=True)
    return " ".join(str(m) for m in response.context["messages"])


def test_mark_shipped_ships_the_order_and_commits_its_stock(staff, shipment):
    said = mark(staff, "mark_shipped", shipment)
    assert "marked shipped" in said
    assert Shipment.objects.get(pk=shipment.pk).status == "shipped"
    assert Order.objects.get(pk=shipment.order_id).status == "shipped"
    assert Reservation.objects.get(order_id=shipment.order_id).status == "committed"
    mug = Product.objects.get(sku="MUG-1")
    assert (mug.on_hand, mug.reserved) == (3, 0)


def test_mark_delivered_after_shipped_delivers_the_order(staff, shipment):
    mark(staff, "mark_shipped", shipment)
    said = mark(staff, "mark_delivered", shipment)
    assert "marked delivered" in said
    assert Order.objects.get(pk=shipment.order_id).status == "delivered"


def test_a_status_the_shipment_cannot_take_is_refused_and_changes_nothing(staff, shipment):
    said = mark(staff, "mark_delivered", shipment)
    assert "cannot become delivered" in said
    assert Shipment.objects.get(pk=shipment.pk).status == "scheduled"
    assert Order.objects.get(pk=shipment.order_id).status == "confirmed"


def test_shipment_pages_render_read_only(staff, shipment):
    listed = staff.get(SHIPMENTS)
    assert listed.status_code == 200 and shipment.tracking_number in listed.text
    page = staff.get(reverse("admin:shipping_shipment_change", args=[shipment.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.text
