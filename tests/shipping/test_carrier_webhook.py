"""The carrier webhook: signed, deduplicated, and strict about what a shipment may become."""

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from inventory.models import Product
from inventory.services import reservation_create
from orders.models import Order
from orders.services import LineRequest, order_confirm, order_place
from shipping.models import CarrierWebhookEvent, Shipment
from shipping.webhooks import signature_for

pytestmark = pytest.mark.django_db
URL = "/api/shipping/carrier-webhook/"


@pytest.fixture
def shipment():
    Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("5.00"), on_hand=4)
    customer = get_user_model().objects.create_user("ada")
    address = {"name": "A", "line1": "1", "city": "C", "postal_code": "1", "country": "US"}
    order = order_place(
        customer=customer,
        lines=[LineRequest("MUG-1", 1)],
        payment_token="tok_visa",
        shipping_address=address,
    )
    reservation_create(order_id=order.id, lines={"MUG-1": 1})
    order_confirm(order_id=order.id)
    return Shipment.objects.create(order_id=order.id, tracking_number="SB1", idempotency_key="k")


def post(body, signature=None):
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    headers = {}
    if signature is not False:
        headers["HTTP_X_CARRIER_SIGNATURE"] = signature or signature_for(raw)
    return APIClient().post(URL, raw, content_type="application/json", **headers)


def event(status="shipped", event_id="ev-1", tracking="SB1"):
    return {"event_id": event_id, "tracking_number": tracking, "status": status,
            "occurred_at": "2026-11-26T10:00:00Z"}  # fmt: skip


def test_shipped_update_ships_the_order_and_commits_its_stock(shipment):
    response = post(event("shipped"))
    assert response.status_code == 200
    assert Order.objects.get(pk=shipment.order_id).status == "shipped"
    mug = Product.objects.get(sku="MUG-1")
    assert (mug.on_hand, mug.reserved) == (3, 0)


@pytest.mark.parametrize("signature", [False, "sha256=00", "sha256=" + "a" * 64, "garbage"])
def test_missing_or_wrong_signature_is_401_and_changes_nothing(shipment, signature):
    response = post(event(), signature=signature)
    assert response.status_code == 401
    assert Shipment.objects.get(pk=shipment.pk).status == "scheduled"
    assert not CarrierWebhookEvent.objects.exists()


def test_repeated_event_id_has_no_second_effect(shipment):
    assert post(event("shipped")).status_code == 200
    assert post(event("shipped")).status_code == 200
    assert CarrierWebhookEvent.objects.count() == 1
    assert Product.objects.get(sku="MUG-1").on_hand == 3


def test_unknown_tracking_number_is_404(shipment):
    assert post(event(tracking="NOPE")).status_code == 404
    assert not CarrierWebhookEvent.objects.exists()


def test_status_the_shipment_cannot_take_is_409(shipment):
    assert post(event("delivered")).status_code == 409
    assert Shipment.objects.get(pk=shipment.pk).status == "scheduled"


def test_delivered_after_shipped_delivers_the_order(shipment):
    post(event("shipped", "ev-1"))
    assert post(event("delivered", "ev-2")).status_code == 200
    assert Order.objects.get(pk=shipment.order_id).status == "delivered"


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", json.dumps({"event_id": "x"}).encode(),
             json.dumps(event(status="lost")).encode()],
)  # fmt: skip
def test_malformed_signed_body_is_400(shipment, body):
    assert post(body).status_code == 400
    assert not CarrierWebhookEvent.objects.exists()


def test_sandbox_carrier_advances_shipments_by_itself_when_enabled(shipment, settings):
    from shipping.tasks import sandbox_advance

    settings.SHIPPING_SANDBOX_AUTO_ADVANCE = False
    assert sandbox_advance() == 0
    settings.SHIPPING_SANDBOX_AUTO_ADVANCE = True
    settings.SHIPPING_SANDBOX_SHIP_AFTER = 0
    settings.SHIPPING_SANDBOX_DELIVER_AFTER = 3600
    assert sandbox_advance() == 1
    assert Order.objects.get(pk=shipment.order_id).status == "shipped"
    settings.SHIPPING_SANDBOX_DELIVER_AFTER = 0
    assert sandbox_advance() == 1
    assert Order.objects.get(pk=shipment.order_id).status == "delivered"
