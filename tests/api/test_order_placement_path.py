"""Placement's fast path: the validation, body and rows of the general one, in fewer queries."""

from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from orders.api.serializers import (
    AddressInput,
    LineInput,
    OrderOutput,
    OrderPlaceInput,
    _plain_address,
    _plain_line,
    _plainly_valid,
    _text,
    order_placed_json,
)
from orders.models import IdempotencyKey, Order, OrderItem, TimelineEntry
from orders.selectors import with_fulfilment
from orders.services import LineRequest, UnavailableProducts, order_place
from outbox.models import OutboxEvent
from shopflow.api.fields import StrictCharField
from tests.api.conftest import ADDRESS, client_for, order_body, post_json
from tests.api.test_order_fuzz import bodies
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db

# One placement with an Idempotency-Key: the token's user, the key's claim, the
# order with its lines and its catalog read, the outbox event with its
# deliveries, the timeline entry, the stored response (and, outside a test's
# transaction, BEGIN and COMMIT). 11 before the placement's fast path.
STATEMENTS_PER_PLACEMENT = 6
SAVEPOINTS = ("SAVEPOINT", "RELEASE SAVEPOINT")
FOR_SALE = "orders.api.serializers.product_skus_for_sale"

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)


def near(valid: str, max_length: int) -> st.SearchStrategy:
    """Mostly the valid value or one of its edge cases; now and then any JSON scalar."""
    edges = st.sampled_from([
        valid, f" {valid}\t", valid.lower(), "x" * max_length, "x" * (max_length + 1), " ", "",
        valid + "\x00", valid + "\ud800", "caf\u00e9", "\u00e9" * max_length,
    ])  # fmt: skip
    valid_like = st.sampled_from([valid, f" {valid}\t", valid.lower()])
    junk = text | st.none() | st.booleans() | st.integers(-2, 1002) | st.floats()
    return st.one_of(*[valid_like] * 8, edges, junk)


near_valid = st.fixed_dictionaries(
    {
        "items": st.lists(
            st.fixed_dictionaries(
                {
                    "sku": near("MUG-1", 64) | st.sampled_from(["TEA-1", " TEA-1", "CUP-1"]),
                    "quantity": st.one_of(
                        *[st.integers(1, 3)] * 4, st.integers(-1, 1001), near("1", 4)
                    ),
                },
                optional={"price": st.just("0.01")},
            ),
            min_size=1,
            max_size=3,
        ),
        "payment_token": near("tok_visa", 255) | st.just("4242 4242 4242 4242"),
        "shipping_address": st.fixed_dictionaries(
            {
                **{name: near(value, 20) for name, value in ADDRESS.items()},
                "country": near("us", 2) | st.sampled_from(["US", "AQ", "XX", "USA"]),
            },
            optional={"line2": near("Flat 2", 200) | st.just("   ")},
        ),
    },
    optional={"status": st.just("confirmed")},
)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(near_valid, near_valid, near_valid, bodies))
@example(body=order_body(shipping_address={**ADDRESS, "line2": None, "country": " us"}))
@example(
    body=order_body(shipping_address={**ADDRESS, "line2": " Flat\u00e9 2 ", "name": "\u00c5sa"})
)
@example(body=order_body(items=[{"sku": " MUG-1 ", "quantity": 1000}], payment_token="tok 4242"))
@example(body=order_body(items=[{"sku": "MUG-1", "quantity": 1}, {"sku": "MUG-1 ", "quantity": 1}]))
def test_the_plain_checks_accept_only_what_the_serializer_accepts_and_give_its_data(body):
    # when
    plain = _plainly_valid(body)

    # then, with every SKU for sale (the plain checks leave the catalog to order_place)
    event("plain" if plain is not None else "to the serializer")
    if plain is not None:
        payload = OrderPlaceInput(data=body)
        with mock.patch(FOR_SALE, lambda skus: set(skus)):
            assert payload.is_valid(), payload.errors
        assert _plain(plain) == _plain(payload.validated_data)
        assert list(plain["shipping_address"]) == list(payload.validated_data["shipping_address"])


address_like = st.fixed_dictionaries(
    {
        **{name: near(value, 20) for name, value in ADDRESS.items()},
        "country": near("us", 2) | st.sampled_from(["US", "AQ", "XX", "USA", "\u00df"]),
    },
    optional={"line2": near("Flat 2", 200) | st.just("   ")},
)


@settings(max_examples=300, deadline=None)
@given(value=near("Ada", 5) | text, max_length=st.sampled_from([2, 5, 64]))
def test_a_plain_text_is_what_a_strict_char_field_gives(value, max_length):
    plain = _text(value, max_length)

    event("plain" if plain is not None else "to the serializer")
    if plain is not None:
        assert plain == StrictCharField(max_length=max_length).run_validation(value)


@settings(max_examples=300, deadline=None)
@given(address=address_like)
@example(address={**ADDRESS, "country": "XX"})
@example(address={**ADDRESS, "country": "\u00df"})
@example(address={**ADDRESS, "name": "Ada\x00"})
@example(address={**ADDRESS, "line2": None})
@example(address={**ADDRESS, "line2": " \t"})
@example(address={**ADDRESS, "line2": 2})
@example(address={**ADDRESS, "line2": " Flat 2 ", "country": " aq"})
def test_a_plain_address_is_what_the_address_serializer_gives(address):
    plain = _plain_address(address)

    event("plain" if plain is not None else "to the serializer")
    if plain is not None:
        serializer = AddressInput(data=address)
        assert serializer.is_valid(), serializer.errors
        assert list(plain.items()) == list(serializer.validated_data.items())


@settings(max_examples=300, deadline=None)
@given(line=st.fixed_dictionaries({"sku": near("MUG-1", 64), "quantity": near("1", 4)
                                   | st.integers(-1, 1001)}))  # fmt: skip
def test_a_plain_line_is_what_the_line_serializer_gives(line):
    plain = _plain_line(line)

    event("plain" if plain is not None else "to the serializer")
    if plain is not None:
        serializer = LineInput(data=line)
        assert serializer.is_valid(), serializer.errors
        assert plain == dict(serializer.validated_data)


def test_a_plain_valid_body_takes_the_plain_path():
    body = order_body(shipping_address={**ADDRESS, "line2": "  ", "country": " us "})

    assert _plainly_valid(body) == {
        "items": [{"sku": "MUG-1", "quantity": 2}],
        "payment_token": "tok_visa",
        "shipping_address": {**ADDRESS, "line2": "", "country": "US"},
    }


@pytest.mark.parametrize("key", [None, "key-1"])
def test_an_unknown_sku_in_a_plain_body_gets_the_serializers_400(customer, mug, key):
    # given a body whose only fault is a SKU not for sale
    ProductFactory(sku="OLD-1", active=False)
    items = [{"sku": "NOPE-1", "quantity": 1}, {"sku": "MUG-1", "quantity": 1},
             {"sku": "OLD-1", "quantity": 1}]  # fmt: skip
    body = order_body(items=items)
    assert _plainly_valid(body) is not None
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}

    # when
    response = post_json(client_for(customer), "/api/orders/", body, **headers)

    # then
    serializer = OrderPlaceInput(data=body)
    assert not serializer.is_valid()
    assert response.status_code == 400
    assert response.json() == serializer.errors
    assert not (Order.objects.exists() or IdempotencyKey.objects.exists())


def test_the_placed_body_is_what_the_order_serializer_renders(customer):
    # given an order with a name and an address outside ASCII
    ProductFactory(sku="MUG-1", name="Mug \u2028 caf\u00e9", price=Decimal("9.95"))
    ProductFactory(sku="TEA-1", name="Tea", price=Decimal("1000000.10"))
    address = {**ADDRESS, "name": "Zo\u00eb \U0001f600", "line2": ""}
    order = order_place(
        customer=customer,
        lines=[LineRequest("TEA-1", 7), LineRequest("MUG-1", 3)],
        payment_token="tok_visa",
        shipping_address=address,
    )

    # when
    fast = order_placed_json(order)

    # then
    read_back = with_fulfilment(type(order).objects.filter(pk=order.pk)).get()
    assert fast == JSONRenderer().render(OrderOutput(read_back).data).decode()


def test_one_placement_takes_a_bounded_number_of_statements(customer, mug, tea):
    body = order_body(items=[{"sku": "MUG-1", "quantity": 2}, {"sku": "TEA-1", "quantity": 1}])

    client = client_for(customer)

    # when
    with CaptureQueriesContext(connection) as captured:
        response = post_json(client, "/api/orders/", body, HTTP_IDEMPOTENCY_KEY="k")

    # then (the savepoints are the test's: its transaction wraps the request's)
    statements = [q["sql"] for q in captured if not q["sql"].startswith(SAVEPOINTS)]
    assert response.status_code == 201
    assert len(statements) <= STATEMENTS_PER_PLACEMENT, [sql[:60] for sql in statements]


def test_the_lines_are_written_in_their_order_with_the_catalog_price(customer, mug, tea):
    order = order_place(
        customer=customer,
        lines=[LineRequest("TEA-1", 3), LineRequest("MUG-1", 1)],
        payment_token="tok_visa",
        shipping_address=ADDRESS,
    )

    rows = list(OrderItem.objects.filter(order_id=order.id).order_by("id"))
    assert [(i.sku, i.quantity, i.unit_price, i.product_id) for i in rows] == [
        ("TEA-1", 3, Decimal("4.50"), tea.pk),
        ("MUG-1", 1, Decimal("9.95"), mug.pk),
    ]
    assert [i.pk for i in order.items.all()] == [i.pk for i in rows]
    assert order.total == Decimal("23.45")
    assert TimelineEntry.objects.get(order_id=order.id).type == "order.created"


def test_a_line_off_sale_when_the_order_is_written_writes_nothing(customer, mug, tea):
    tea.active = False
    tea.save()

    # (order_place takes no savepoint of its own: the caller's transaction rolls back)
    with pytest.raises(UnavailableProducts) as raised, transaction.atomic():
        order_place(
            customer=customer,
            lines=[LineRequest("MUG-1", 1), LineRequest("TEA-1", 1), LineRequest("NOPE", 1)],
            payment_token="tok_visa",
            shipping_address=ADDRESS,
        )

    assert raised.value.skus == ("TEA-1", "NOPE")
    assert not OrderItem.objects.exists()
    assert not OutboxEvent.objects.exists()
