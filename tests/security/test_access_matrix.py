"""Who may call every route outside tests/api/: staff-only ones, the webhook, probes, the admin.

Each caller holds both a token and a logged-in session, so a route that
accepted either would show here.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders.models import Order, TimelineEntry
from shipping.models import CarrierWebhookEvent, Shipment
from shipping.webhooks import signature_for
from tests.orders.factories import UserFactory, order_placed

pytestmark = pytest.mark.django_db


def caller(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def callers(customer, staff):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    return {"anonymous": caller(), "customer": caller(customer), "staff": caller(staff),
            "superuser": caller(root)}  # fmt: skip


ADMIN_LOGIN = 302  # the admin sends anyone who is not staff to its login page

# (method, path, {caller: status})
MATRIX = [
    ("get", "/api/analytics/daily/", {"anonymous": 401, "customer": 403, "staff": 200}),
    ("get", "/api/schema/", {"anonymous": 200, "customer": 200, "staff": 200}),
    ("get", "/api/docs/", {"anonymous": 200, "customer": 200, "staff": 200}),
    ("get", "/healthz", {"anonymous": 200, "customer": 200, "staff": 200}),
    ("get", "/metrics", {"anonymous": 200, "customer": 200, "staff": 200}),
    ("get", "/admin/", {"anonymous": ADMIN_LOGIN, "customer": ADMIN_LOGIN, "staff": 200}),
    ("get", "/admin/dashboard/", {"anonymous": ADMIN_LOGIN, "customer": ADMIN_LOGIN,
                                  "staff": 200}),
    ("get", "/admin/dashboard/data/", {"anonymous": ADMIN_LOGIN, "customer": ADMIN_LOGIN,
                                       "staff": 200}),
    # A model's pages also need its permissions: staff without them are refused.
    ("get", "/admin/orders/order/", {"anonymous": ADMIN_LOGIN, "customer": ADMIN_LOGIN,
                                     "staff": 403, "superuser": 200}),
    ("get", "/admin/outbox/delivery/", {"anonymous": ADMIN_LOGIN, "customer": ADMIN_LOGIN,
                                        "staff": 403, "superuser": 200}),
    ("post", "/api/products/", {"anonymous": 401, "customer": 403, "staff": 201}),
    ("post", "/api/products/MUG-1/restock/", {"anonymous": 401, "customer": 403, "staff": 200}),
    # Signed by nobody: the carrier's HMAC is the only credential, a user's counts for nothing.
    ("post", "/api/shipping/carrier-webhook/", {"anonymous": 401, "customer": 401,
                                                "staff": 401}),
]  # fmt: skip
BODIES = {
    "/api/products/": {"sku": "NEW-1", "name": "New", "price": "1.00", "stock": 1},
    "/api/products/MUG-1/restock/": {"quantity": 1},
    "/api/shipping/carrier-webhook/": {"event_id": "e1", "tracking_number": "TRK-1",
                                       "status": "shipped"},
}  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "customer", "staff", "superuser"])
@pytest.mark.parametrize(("method", "path", "expected"), MATRIX, ids=[m[1] for m in MATRIX])
def test_route_answers_each_caller_as_the_matrix_says(callers, mug, who, method, path, expected):
    client = callers[who]
    expected = {"superuser": expected["staff"], **expected}

    if method == "get":
        response = client.get(path)
    else:
        response = client.post(path, BODIES[path], format="json")

    assert response.status_code == expected[who], getattr(response, "content", b"")[:300]
    if expected[who] == ADMIN_LOGIN:
        assert response["Location"].startswith("/admin/login/")


def test_a_staff_user_sees_stock_figures_a_customer_does_not(callers, mug):
    staff = callers["staff"].get("/api/products/MUG-1/").json()
    customer = callers["customer"].get("/api/products/MUG-1/").json()

    assert {"on_hand", "reserved"} <= set(staff)
    assert not {"on_hand", "reserved"} & set(customer)


# --- the carrier webhook: the signature is the credential, an event applies once -------------


@pytest.fixture
def confirmed_order(customer, mug) -> Order:
    order = order_placed(customer, {"MUG-1": 1})
    Order.objects.filter(pk=order.pk).update(status="confirmed")
    Shipment.objects.create(order_id=order.pk, tracking_number="TRK-1", idempotency_key="k-1")
    return order


def webhook(body: dict, signature: str | None = "valid"):
    raw = json.dumps(body).encode()
    headers = {}
    if signature == "valid":
        headers["HTTP_X_CARRIER_SIGNATURE"] = signature_for(raw)
    elif signature is not None:
        headers["HTTP_X_CARRIER_SIGNATURE"] = signature
    return APIClient().post(
        "/api/shipping/carrier-webhook/", raw, content_type="application/json", **headers
    )


SHIPPED = {"event_id": "evt-1", "tracking_number": "TRK-1", "status": "shipped",
           "occurred_at": "2030-01-01T10:00:00Z"}  # fmt: skip


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, "sha256=deadbeef", "md5=abc",
     signature_for(json.dumps(SHIPPED).encode(), secret="someone-elses-secret")],
    ids=["missing", "empty", "zeros", "short", "other-scheme", "other-key"],
)  # fmt: skip
def test_a_webhook_without_the_right_signature_is_401_and_changes_nothing(
    confirmed_order, signature
):
    response = webhook(SHIPPED, signature)

    assert response.status_code == 401
    assert Shipment.objects.get().status == "scheduled"
    assert Order.objects.get(pk=confirmed_order.pk).status == "confirmed"
    assert not CarrierWebhookEvent.objects.exists()


def test_a_body_changed_after_signing_is_401(confirmed_order):
    signed = signature_for(json.dumps(SHIPPED).encode())

    response = webhook({**SHIPPED, "status": "delivered"}, signed)

    assert response.status_code == 401


def test_a_replayed_webhook_event_is_200_with_no_second_effect(confirmed_order):
    # when the carrier sends the same event twice
    first = webhook(SHIPPED)
    replay = webhook(SHIPPED)

    # then
    assert (first.status_code, first.json()) == (200, {"status": "applied"})
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    assert Order.objects.get(pk=confirmed_order.pk).status == "shipped"
    shipped = TimelineEntry.objects.filter(order_id=confirmed_order.pk, type="order.shipped")
    assert shipped.count() == 1
    assert CarrierWebhookEvent.objects.count() == 1


def test_a_replayed_event_id_with_another_status_is_still_a_duplicate(confirmed_order):
    webhook(SHIPPED)

    replay = webhook({**SHIPPED, "status": "delivered"})

    assert replay.json() == {"status": "duplicate"}
    assert Order.objects.get(pk=confirmed_order.pk).status == "shipped"


def test_staff_status_does_not_come_from_the_request(callers, mug):
    # an is_staff field in a registration body is ignored
    response = callers["anonymous"].post(
        "/api/auth/register/",
        {"username": "mallory", "email": "m@example.com", "password": "a-long-pass-phrase-9",
         "is_staff": True, "is_superuser": True},
        format="json",
    )  # fmt: skip

    assert response.status_code == 201
    user = UserFactory._meta.model.objects.get(username="mallory")
    assert not user.is_staff and not user.is_superuser
    assert Decimal(mug.price) == Decimal("9.95")
