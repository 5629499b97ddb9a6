"""The orders admin: read-only order pages with their timeline, cancel as the only move."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from orders.models import Order, Status
from orders.services import order_cancel, order_confirm, order_mark_shipped
from tests.inventory.factories import ProductFactory
from tests.orders.factories import UserFactory, order_placed

pytestmark = pytest.mark.django_db

ORDERS = reverse("admin:orders_order_changelist")


def order_page(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


@pytest.fixture
def mug():
    return ProductFactory(sku="MUG-1", on_hand=10)


@pytest.fixture
def place(mug):
    def place(email: str = "ada@example.com") -> Order:
        customer = UserFactory(username=email.split("@")[0], email=email)
        return order_placed(customer, {"MUG-1": 2})

    return place


def listed(response) -> set[str]:
    return {order.number for order in response.context["cl"].result_list}


def status(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def test_order_list_filters_by_status_and_created_date(admin_client, place):
    # given
    pending, confirmed = place(), place()
    order_confirm(order_id=confirmed.id)
    Order.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=30))
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    # when
    by_status = admin_client.get(ORDERS, {"status__exact": "confirmed"})
    since_today = admin_client.get(ORDERS, {"created_at__gte": str(midnight)})
    # then
    assert by_status.status_code == since_today.status_code == 200
    assert listed(by_status) == listed(since_today) == {confirmed.number}


def test_order_list_searches_number_and_customer_email(admin_client, place):
    # given
    ada, bob = place("ada@example.com"), place("bob@example.com")
    # when
    by_number = admin_client.get(ORDERS, {"q": ada.number})
    by_email = admin_client.get(ORDERS, {"q": "bob@example"})
    # then
    assert (listed(by_number), listed(by_email)) == ({ada.number}, {bob.number})


def test_order_page_shows_items_and_timeline_and_nothing_to_edit(admin_client, place):
    # given
    order = place()
    order_confirm(order_id=order.id)
    # when
    response = admin_client.get(order_page(order))
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}
    timeline = response.text.split('class="order-timeline"')[1]
    assert timeline.index("order.created") < timeline.index("order.confirmed")
    assert "MUG-1" in response.text and "19.90" in response.text
    assert 'name="_save"' not in response.text


def test_posting_to_an_order_page_changes_nothing(admin_client, place):
    # given
    order = place()
    # when
    response = admin_client.post(order_page(order), {"status": "delivered", "total": "0.01"})
    # then
    assert response.status_code == 403
    order.refresh_from_db()
    assert (order.status, str(order.total)) == (Status.PENDING, "19.90")


def test_orders_cannot_be_added_or_deleted_from_the_admin(admin_client, place):
    order = place()
    added = admin_client.get(reverse("admin:orders_order_add"))
    deleted = admin_client.post(reverse("admin:orders_order_delete", args=[order.pk]))
    assert (added.status_code, deleted.status_code) == (403, 403)
    assert Order.objects.filter(pk=order.pk).exists()


def test_cancel_action_reports_what_happened_to_each_order(admin_client, place):
    # given
    pending, confirmed, cancelled, shipped = place(), place(), place(), place()
    order_confirm(order_id=confirmed.id)
    order_cancel(order_id=cancelled.id)
    order_confirm(order_id=shipped.id)
    order_mark_shipped(order_id=shipped.id)
    selected = [pending.pk, confirmed.pk, cancelled.pk, shipped.pk]
    # when
    response = admin_client.post(
        ORDERS, {"action": "cancel_selected", "_selected_action": selected}, follow=True
    )
    # then
    assert response.status_code == 200
    assert [status(o) for o in (pending, confirmed, cancelled, shipped)] == [
        "cancelled", "cancelled", "cancelled", "shipped",
    ]  # fmt: skip
    reports = {m.message: m.level_tag for m in get_messages(response.wsgi_request)}
    assert reports == {
        f"Cancelled: {pending.number}, {confirmed.number}.": "success",
        f"Already cancelled: {cancelled.number}.": "info",
        f"Not cancellable (shipped): {shipped.number}.": "error",
    }
    assert Order.objects.get(pk=pending.pk).cancel_reason == "cancelled by staff"


def test_cancel_action_records_who_cancelled_in_the_admin_history(admin_client, admin_user, place):
    # given
    order = place()
    # when
    admin_client.post(ORDERS, {"action": "cancel_selected", "_selected_action": [order.pk]})
    # then
    history = admin_client.get(reverse("admin:orders_order_history", args=[order.pk]))
    assert "Cancelled with the admin action." in history.text
    assert admin_user.username in history.text


@pytest.mark.parametrize("login", [True, False], ids=["customer", "anonymous"])
def test_non_staff_are_sent_to_the_login_page(client, place, login):
    # given
    order = place()
    if login:
        client.force_login(order.customer)
    # when
    responses = [client.get(ORDERS), client.get(order_page(order))]
    # then
    for response in responses:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
