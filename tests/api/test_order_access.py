"""Who may do what on every order route: owner, another customer, staff, anonymous."""

import uuid

import pytest

from orders.models import Order
from tests.api.conftest import client_for, order_body, post_json
from tests.orders.factories import order_placed

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(customer, mug):
    return order_placed(customer, {"MUG-1": 1})


@pytest.fixture
def callers(customer, other_customer, staff):
    return {
        "owner": client_for(customer),
        "other customer": client_for(other_customer),
        "staff": client_for(staff),
        "anonymous": client_for(),
    }


READS = [
    ("owner", 200),
    ("other customer", 404),
    ("staff", 200),
    ("anonymous", 401),
]


@pytest.mark.parametrize(("who", "expected"), READS)
def test_order_detail_is_for_its_owner_and_staff(callers, order, who, expected):
    response = callers[who].get(f"/api/orders/{order.id}/")

    assert response.status_code == expected
    if expected == 200:
        assert response.json()["id"] == str(order.id)
    else:
        assert "detail" in response.json()


@pytest.mark.parametrize(("who", "expected"), READS)
def test_order_timeline_is_for_its_owner_and_staff(callers, order, who, expected):
    response = callers[who].get(f"/api/orders/{order.id}/events/")

    assert response.status_code == expected
    if expected == 200:
        assert [entry["type"] for entry in response.json()] == ["order.created"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [("owner", 202), ("other customer", 404), ("staff", 202), ("anonymous", 401)],
)
def test_cancelling_is_for_the_owner_and_staff(callers, order, who, expected):
    response = post_json(callers[who], f"/api/orders/{order.id}/cancel/", {})

    assert response.status_code == expected
    order.refresh_from_db()
    assert order.status == ("cancelled" if expected == 202 else "pending")


@pytest.mark.parametrize(
    ("who", "visible"),
    [("owner", True), ("other customer", False), ("staff", True)],
)
def test_order_list_shows_own_orders_or_all_to_staff(callers, order, who, visible):
    response = callers[who].get("/api/orders/")

    assert response.status_code == 200
    assert [o["id"] for o in response.json()["results"]] == ([str(order.id)] if visible else [])


def test_anonymous_cannot_list_orders(callers, order):
    assert callers["anonymous"].get("/api/orders/").status_code == 401


@pytest.mark.parametrize(("who", "expected"), [("owner", 201), ("staff", 201), ("anonymous", 401)])
def test_placing_an_order_needs_a_user(callers, mug, who, expected):
    response = post_json(callers[who], "/api/orders/", order_body())

    assert response.status_code == expected
    assert Order.objects.count() == (1 if expected == 201 else 0)


@pytest.mark.parametrize("suffix", ["", "events/", "cancel/"])
@pytest.mark.parametrize("order_id", [uuid.uuid4(), "not-a-uuid", "%00"])
def test_unknown_order_ids_are_a_json_404_for_users_and_401_for_anonymous(
    callers, order_id, suffix
):
    url = f"/api/orders/{order_id}/{suffix}"
    send = post_json if suffix == "cancel/" else (lambda client, url, body: client.get(url))

    assert send(callers["owner"], url, {}).status_code == 404
    assert "detail" in send(callers["staff"], url, {}).json()
    assert send(callers["anonymous"], url, {}).status_code == 401


def test_a_bad_token_is_401_even_where_anonymous_may_read(mug):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert client.get("/api/products/").status_code == 401
    assert client.get("/api/orders/").status_code == 401
