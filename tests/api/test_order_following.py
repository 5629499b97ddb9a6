"""Following orders: the paginated list and its filter, the timeline, cancelling."""

import pytest
from rest_framework.pagination import PageNumberPagination

from inventory.services import reservation_create
from orders.models import Order
from orders.services import order_confirm, order_fail, order_mark_delivered, order_mark_shipped
from outbox.models import OutboxEvent
from tests.api.conftest import client_for, post_json
from tests.orders.factories import order_placed

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_orders(customer, mug):
    """Three orders, oldest first."""
    return [order_placed(customer, {"MUG-1": n}) for n in (1, 2, 3)]


def test_orders_are_listed_newest_first_in_pages(customer, three_orders, monkeypatch):
    # given pages of two
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    client = client_for(customer)

    # when
    first = client.get("/api/orders/").json()
    second = client.get(first["next"]).json()

    # then
    newest_first = [str(o.id) for o in reversed(three_orders)]
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == second["count"] == 3
    assert first["previous"] is None and second["next"] is None
    assert second["previous"] is not None
    assert [o["id"] for o in first["results"] + second["results"]] == newest_first


def test_a_page_past_the_end_is_404(customer, three_orders):
    response = client_for(customer).get("/api/orders/?page=99")

    assert response.status_code == 404


def test_orders_filter_by_status(customer, three_orders):
    # given
    cancelled = three_orders[1]
    post_json(client_for(customer), f"/api/orders/{cancelled.id}/cancel/", {})

    # when
    only_cancelled = client_for(customer).get("/api/orders/?status=cancelled").json()
    only_pending = client_for(customer).get("/api/orders/?status=pending").json()

    # then
    assert [o["id"] for o in only_cancelled["results"]] == [str(cancelled.id)]
    assert only_pending["count"] == 2
    assert {o["status"] for o in only_pending["results"]} == {"pending"}


@pytest.mark.parametrize("status", ["bogus", "PENDING", "pending\x00"])
def test_filtering_by_an_unknown_status_is_a_400(customer, three_orders, status):
    response = client_for(customer).get("/api/orders/", {"status": status})

    assert response.status_code == 400
    assert "status" in response.json()


def test_the_timeline_lists_every_event_about_the_order_oldest_first(customer, mug):
    # given
    order = order_placed(customer, {"MUG-1": 1})
    reservation_create(order_id=order.id, lines={"MUG-1": 1})
    order_confirm(order_id=order.id)

    # when
    response = client_for(customer).get(f"/api/orders/{order.id}/events/")

    # then
    entries = response.json()
    assert [e["type"] for e in entries] == [
        "order.created",
        "inventory.reserved",
        "order.confirmed",
    ]
    assert all(set(e) == {"id", "type", "occurred_at", "data"} for e in entries)
    assert [e["occurred_at"] for e in entries] == sorted(e["occurred_at"] for e in entries)
    assert entries[0]["data"]["order_id"] == str(order.id)
    ids = {str(i) for i in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert {e["id"] for e in entries} <= ids


def test_cancelling_returns_202_with_the_cancelled_order_and_its_reason(customer, mug):
    order = order_placed(customer, {"MUG-1": 1})

    response = post_json(
        client_for(customer), f"/api/orders/{order.id}/cancel/", {"reason": "changed my mind"}
    )

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_reason"] == "changed my mind"
    assert OutboxEvent.objects.filter(type="order.cancelled").count() == 1


def test_cancelling_again_is_200_and_changes_nothing(customer, mug):
    order = order_placed(customer, {"MUG-1": 1})
    client = client_for(customer)
    post_json(client, f"/api/orders/{order.id}/cancel/", {"reason": "first"})

    response = post_json(client, f"/api/orders/{order.id}/cancel/", {"reason": "second"})

    assert response.status_code == 200
    assert response.json()["cancel_reason"] == "first"
    assert OutboxEvent.objects.filter(type="order.cancelled").count() == 1


def test_a_confirmed_order_can_still_be_cancelled(customer, mug):
    order = order_placed(customer, {"MUG-1": 1})
    order_confirm(order_id=order.id)

    response = client_for(customer).post(f"/api/orders/{order.id}/cancel/")

    assert response.status_code == 202


def _shipped(order):
    order_confirm(order_id=order.id)
    order_mark_shipped(order_id=order.id)


def _delivered(order):
    _shipped(order)
    order_mark_delivered(order_id=order.id)


def _failed(order):
    order_fail(order_id=order.id, reason="payment_declined")


@pytest.mark.parametrize("make", [_shipped, _delivered, _failed], ids=lambda f: f.__name__[1:])
def test_cancelling_a_shipped_delivered_or_failed_order_is_409(customer, mug, make):
    # given
    order = order_placed(customer, {"MUG-1": 1})
    make(order)
    status = Order.objects.get(pk=order.pk).status

    # when
    response = post_json(client_for(customer), f"/api/orders/{order.id}/cancel/", {})

    # then
    assert response.status_code == 409
    assert "detail" in response.json()
    assert Order.objects.get(pk=order.pk).status == status


@pytest.mark.parametrize(
    "body", [{"reason": 5}, {"reason": "r" * 501}, {"reason": ["x"]}, [], "reason"]
)
def test_a_bad_cancel_reason_is_a_400_and_cancels_nothing(customer, mug, body):
    order = order_placed(customer, {"MUG-1": 1})

    response = post_json(client_for(customer), f"/api/orders/{order.id}/cancel/", body)

    assert response.status_code == 400
    assert Order.objects.get(pk=order.pk).status == "pending"
