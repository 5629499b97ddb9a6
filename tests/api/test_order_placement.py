"""POST /api/orders/: what a valid placement returns, and every rule that refuses one."""

import uuid
from decimal import Decimal

import pytest

from orders.models import IdempotencyKey, Order, OrderItem
from outbox.models import OutboxEvent
from tests.api.conftest import ADDRESS, client_for, order_body, post_json
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db

ORDER_FIELDS = {
    "id", "number", "status", "items", "total", "currency", "shipping_address", "payment",
    "shipment", "cancel_reason", "failure_reason", "created_at", "updated_at",
}  # fmt: skip


def nothing_written() -> bool:
    return not (
        Order.objects.exists() or OutboxEvent.objects.exists() or IdempotencyKey.objects.exists()
    )


def test_a_placed_order_is_pending_priced_from_the_catalog_and_located(customer, mug, tea):
    # given
    body = order_body(items=[{"sku": "MUG-1", "quantity": 2}, {"sku": "TEA-1", "quantity": 1}])

    # when
    response = post_json(client_for(customer), "/api/orders/", body)

    # then
    assert response.status_code == 201
    order = response.json()
    assert set(order) == ORDER_FIELDS
    assert order["status"] == "pending"
    assert order["number"].startswith("SF-")
    assert order["items"] == [
        {"sku": "MUG-1", "name": "Mug", "quantity": 2, "unit_price": "9.95", "line_total": "19.90"},
        {"sku": "TEA-1", "name": "Tea", "quantity": 1, "unit_price": "4.50", "line_total": "4.50"},
    ]
    assert (order["total"], order["currency"]) == ("24.40", "USD")
    assert order["shipping_address"] == {**ADDRESS, "line2": ""}
    assert (order["payment"], order["shipment"]) == (None, None)
    assert (order["cancel_reason"], order["failure_reason"]) == ("", "")
    assert response["Location"].endswith(f"/api/orders/{order['id']}/")
    assert client_for(customer).get(response["Location"]).json() == order


def test_placing_records_the_order_created_event_in_the_outbox(customer, mug):
    response = post_json(client_for(customer), "/api/orders/", order_body())

    assert list(OutboxEvent.objects.values_list("type", "aggregate_id")) == [
        ("order.created", response.json()["id"])
    ]


def test_fields_a_client_must_not_set_are_ignored(customer, other_customer, mug):
    # given a body that tries to set what only the shop decides
    body = order_body(
        items=[{"sku": "MUG-1", "quantity": 2, "price": "0.01", "unit_price": "0.01"}],
        status="confirmed",
        total="0.01",
        price="0.01",
        currency="EUR",
        user=other_customer.pk,
        customer=other_customer.pk,
        id=str(uuid.uuid4()),
        number="SF-HACKED",
        failure_reason="payment_declined",
        cancel_reason="x",
        created_at="2000-01-01T00:00:00Z",
    )

    # when
    response = post_json(client_for(customer), "/api/orders/", body)

    # then
    assert response.status_code == 201
    order = Order.objects.get()
    assert (order.status, order.total, order.currency) == ("pending", Decimal("19.90"), "USD")
    assert order.customer == customer
    assert str(order.id) != body["id"]
    assert order.number != "SF-HACKED"
    assert (order.failure_reason, order.cancel_reason) == ("", "")
    assert OrderItem.objects.get().unit_price == Decimal("9.95")


def test_unknown_address_fields_are_dropped_and_line2_kept(customer, mug):
    address = {**ADDRESS, "line2": "Flat 2", "country": "aq", "phone": "555", "extra": {"a": 1}}

    response = post_json(client_for(customer), "/api/orders/", order_body(shipping_address=address))

    assert response.status_code == 201
    assert response.json()["shipping_address"] == {**ADDRESS, "line2": "Flat 2", "country": "AQ"}


def test_the_boundaries_of_the_rules_are_accepted(customer):
    # given 50 lines, quantities 1 and 1000, a 255-character token
    for n in range(50):
        ProductFactory(sku=f"P-{n:02d}", price=Decimal("1.00"))
    items = [{"sku": f"P-{n:02d}", "quantity": 1000 if n == 0 else 1} for n in range(50)]
    body = order_body(items=items, payment_token="t" * 255)

    # when
    response = post_json(client_for(customer), "/api/orders/", body)

    # then
    assert response.status_code == 201
    assert len(response.json()["items"]) == 50
    assert response.json()["total"] == "1049.00"


def _line(**fields):
    return {"items": [{"sku": "MUG-1", "quantity": 1, **fields}]}


def _address(**fields):
    return {"shipping_address": {**ADDRESS, **fields}}


def _address_without(name):
    return {"shipping_address": {k: v for k, v in ADDRESS.items() if k != name}}


RULES = [
    # items: 1-50 lines, each SKU once, quantity an integer 1-1000, SKU existing and active
    ("no items", {"items": []}, "items"),
    ("items missing", {"items": None}, "items"),
    ("items not a list", {"items": {"sku": "MUG-1", "quantity": 1}}, "items"),
    ("items a string", {"items": "MUG-1"}, "items"),
    ("51 lines", {"items": [{"sku": f"P-{n}", "quantity": 1} for n in range(51)]}, "items"),
    ("a SKU twice", {"items": [{"sku": "MUG-1", "quantity": 1}] * 2}, "items"),
    ("a line not an object", {"items": [1]}, "items"),
    ("a line a string", {"items": ["MUG-1"]}, "items"),
    ("a null line", {"items": [None]}, "items"),
    ("a nested list line", {"items": [[{"sku": "MUG-1", "quantity": 1}]]}, "items"),
    ("quantity 0", _line(quantity=0), "items"),
    ("quantity negative", _line(quantity=-1), "items"),
    ("quantity 1001", _line(quantity=1001), "items"),
    ("quantity huge", _line(quantity=10**30), "items"),
    ("quantity a float", _line(quantity=2.5), "items"),
    ("quantity a whole float", _line(quantity=2.0), "items"),
    ("quantity a string", _line(quantity="2"), "items"),
    ("quantity a decimal string", _line(quantity="2.5"), "items"),
    ("quantity a boolean", _line(quantity=True), "items"),
    ("quantity null", _line(quantity=None), "items"),
    ("quantity missing", {"items": [{"sku": "MUG-1"}]}, "items"),
    ("sku missing", {"items": [{"quantity": 1}]}, "items"),
    ("sku a number", _line(sku=1), "items"),
    ("sku an object", _line(sku={"$gt": ""}), "items"),
    ("sku unknown", _line(sku="NOPE-1"), "items"),
    ("sku not for sale", _line(sku="OLD-1"), "items"),
    ("sku too long", _line(sku="x" * 65), "items"),
    ("sku with a NUL", _line(sku="MUG-1\x00"), "items"),
    # payment_token: 1-255 characters
    ("no payment token", {"payment_token": None}, "payment_token"),
    ("empty payment token", {"payment_token": ""}, "payment_token"),
    ("blank payment token", {"payment_token": "   "}, "payment_token"),
    ("payment token too long", {"payment_token": "t" * 256}, "payment_token"),
    ("payment token a number", {"payment_token": 4242}, "payment_token"),
    ("payment token a list", {"payment_token": ["tok_visa"]}, "payment_token"),
    # shipping_address: name, line1, city, postal_code, country required strings
    ("no address", {"shipping_address": None}, "shipping_address"),
    ("address a string", {"shipping_address": "1 Main St"}, "shipping_address"),
    ("address a list", {"shipping_address": [ADDRESS]}, "shipping_address"),
    *[
        (f"address without {name}", _address_without(name), "shipping_address")
        for name in ("name", "line1", "city", "postal_code", "country")
    ],
    ("country not ISO", _address(country="XX"), "shipping_address"),
    ("country alpha-3", _address(country="USA"), "shipping_address"),
    ("country a name", _address(country="United States"), "shipping_address"),
    ("country empty", _address(country=""), "shipping_address"),
    ("country a number", _address(country=840), "shipping_address"),
    ("postal code a number", _address(postal_code=12345), "shipping_address"),
    ("name blank", _address(name=" "), "shipping_address"),
    ("name too long", _address(name="n" * 201), "shipping_address"),
    ("name with a NUL", _address(name="Ada\x00"), "shipping_address"),
    ("name with a lone surrogate", _address(name="Ada\ud800"), "shipping_address"),
    ("city an object", _address(city={"a": [1, {"b": None}]}), "shipping_address"),
    ("line2 a number", _address(line2=2), "shipping_address"),
]


@pytest.mark.parametrize(
    ("change", "field"), [rule[1:] for rule in RULES], ids=[rule[0] for rule in RULES]
)
def test_each_rule_gives_a_field_error_and_writes_nothing(customer, mug, change, field):
    # given
    ProductFactory(sku="OLD-1", active=False)
    body = {k: v for k, v in order_body(**change).items() if v is not None}  # None: left out

    # when
    response = post_json(client_for(customer), "/api/orders/", body, HTTP_IDEMPOTENCY_KEY="key-1")

    # then
    assert response.status_code == 400
    assert field in response.json()
    assert nothing_written()


MALFORMED = [
    ("not json", "{items: [", "application/json"),
    ("empty body", "", "application/json"),
    ("a JSON list", "[]", "application/json"),
    ("a JSON string", '"order"', "application/json"),
    ("JSON null", "null", "application/json"),
    ("a number", "5", "application/json"),
    ("NaN", '{"items": [{"sku": "MUG-1", "quantity": NaN}]}', "application/json"),
    ("Infinity", '{"items": [{"sku": "MUG-1", "quantity": Infinity}]}', "application/json"),
    ("1e400", '{"items": [{"sku": "MUG-1", "quantity": 1e400}]}', "application/json"),
    ("5000 digits", '{"items": [{"sku": "MUG-1", "quantity": ' + "9" * 5000 + "}]}", None),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "application/json"),
    ("invalid UTF-8", b'{"payment_token": "\xff\xfe"}', "application/json"),
    ("NUL bytes", b"\x00\x00\x00", "application/json"),
    ("form encoded", "items=MUG-1&payment_token=tok_visa", "application/x-www-form-urlencoded"),
    ("text", "items", "text/plain"),
]


@pytest.mark.parametrize(
    ("body", "content_type"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_bodies_are_refused_without_a_500_or_a_write(customer, mug, body, content_type):
    response = client_for(customer).post(
        "/api/orders/",
        data=body,
        content_type=content_type or "application/json",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )

    assert 400 <= response.status_code < 500
    assert response.json()  # a JSON error body
    assert nothing_written()


def test_a_body_past_the_upload_limit_is_413(customer, mug, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = order_body(payment_token="t" * 2000)

    response = post_json(client_for(customer), "/api/orders/", body)

    assert response.status_code == 413
    assert nothing_written()


def test_a_product_withdrawn_after_validation_still_gives_a_field_error(customer, mug, monkeypatch):
    # given the serializer's check passes, but the product is off sale when the service looks
    monkeypatch.setattr("orders.api.serializers.product_skus_for_sale", lambda skus: set(skus))
    mug.active = False
    mug.save()

    # when
    response = post_json(
        client_for(customer), "/api/orders/", order_body(), HTTP_IDEMPOTENCY_KEY="key-1"
    )

    # then
    assert response.status_code == 400
    assert response.json() == {"items": ["Unknown or inactive SKU: MUG-1."]}
    assert nothing_written()
