"""The inventory admin shows stock and reservations; stock moves only through services."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from inventory.admin import ProductAdmin
from inventory.models import Product, Reservation
from inventory.services import reservation_create
from outbox.models import OutboxEvent
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db

PRODUCTS = reverse("admin:inventory_product_changelist")
RESERVATIONS = reverse("admin:inventory_reservation_changelist")


def product_page(product: Product) -> str:
    return reverse("admin:inventory_product_change", args=[product.pk])


def stock(sku: str) -> tuple[int, int]:
    product = Product.objects.get(sku=sku)
    return product.on_hand, product.reserved


def test_product_list_shows_on_hand_reserved_and_available(admin_client):
    # given
    mug = ProductFactory(sku="MUG-1", on_hand=10)
    reservation_create(order_id=uuid.uuid4(), lines={"MUG-1": 3})
    # when
    response = admin_client.get(PRODUCTS)
    # then
    assert response.status_code == 200
    row = response.context["cl"].result_list.get(pk=mug.pk)
    assert (row.on_hand, row.reserved, row.available) == (10, 3, 7)
    for column in ("column-on_hand", "column-reserved", "column-available"):
        assert column in response.text


def test_product_list_searches_sku_and_name_and_filters_active(admin_client):
    # given
    ProductFactory(sku="MUG-1", name="Mug")
    ProductFactory(sku="TEE-1", name="Striped tee", active=False)
    # when
    by_sku = admin_client.get(PRODUCTS, {"q": "mug-1"})
    by_name = admin_client.get(PRODUCTS, {"q": "striped"})
    inactive = admin_client.get(PRODUCTS, {"active__exact": "0"})
    # then
    skus = [[p.sku for p in r.context["cl"].result_list] for r in (by_sku, by_name, inactive)]
    assert skus == [["MUG-1"], ["TEE-1"], ["TEE-1"]]


def test_product_page_shows_stock_read_only(admin_client):
    # given
    mug = ProductFactory(on_hand=10)
    # when
    response = admin_client.get(product_page(mug))
    # then
    assert response.status_code == 200
    assert set(response.context["adminform"].form.fields) == {"name", "price", "active"}


def test_adding_a_product_goes_through_the_service_with_its_initial_stock(admin_client):
    # when
    response = admin_client.post(
        reverse("admin:inventory_product_add"),
        {"sku": "CAP-1", "name": "Cap", "price": "17.00", "on_hand": "12"},
    )
    # then
    assert response.status_code == 302
    assert stock("CAP-1") == (12, 0)


def test_editing_a_product_never_writes_back_stale_stock(admin_client, monkeypatch):
    # given: a reservation lands between the admin loading the product and saving it
    mug = ProductFactory(sku="MUG-1", on_hand=10)
    load = ProductAdmin.get_object

    def load_then_reserve(self, request, object_id, from_field=None):
        product = load(self, request, object_id, from_field)
        if request.method == "POST":
            reservation_create(order_id=uuid.uuid4(), lines={"MUG-1": 4})
        return product

    monkeypatch.setattr(ProductAdmin, "get_object", load_then_reserve)
    # when
    response = admin_client.post(
        product_page(mug), {"name": "Big mug", "price": "11.00", "active": "on"}
    )
    # then
    assert response.status_code == 302
    mug.refresh_from_db()
    assert (mug.name, mug.on_hand, mug.reserved) == ("Big mug", 10, 4)


def test_restock_action_asks_for_a_quantity_then_restocks_through_the_service(admin_client):
    # given
    mug, tee = ProductFactory(on_hand=1), ProductFactory(on_hand=2)
    selected = {"action": "restock", "_selected_action": [mug.pk, tee.pk]}
    # when
    asked = admin_client.post(PRODUCTS, selected)
    applied = admin_client.post(PRODUCTS, {**selected, "apply": "Restock", "quantity": "5"})
    # then
    assert asked.status_code == 200 and 'name="quantity"' in asked.text
    assert applied.status_code == 302
    assert (stock(mug.sku)[0], stock(tee.sku)[0]) == (6, 7)
    assert OutboxEvent.objects.filter(type="inventory.restocked").count() == 2


def test_restock_action_refuses_a_non_positive_quantity(admin_client):
    # given
    mug = ProductFactory(on_hand=1)
    # when
    response = admin_client.post(
        PRODUCTS,
        {"action": "restock", "_selected_action": [mug.pk], "apply": "Restock", "quantity": "0"},
    )
    # then
    assert response.status_code == 200
    assert response.context["form"].errors
    assert stock(mug.sku) == (1, 0)


def test_products_cannot_be_deleted_from_the_admin(admin_client):
    mug = ProductFactory()
    response = admin_client.post(reverse("admin:inventory_product_delete", args=[mug.pk]))
    assert response.status_code == 403
    assert Product.objects.filter(pk=mug.pk).exists()


def test_reservation_pages_show_their_lines_and_cannot_be_edited(admin_client):
    # given
    ProductFactory(sku="MUG-1", on_hand=10)
    order_id = uuid.uuid4()
    reservation = reservation_create(order_id=order_id, lines={"MUG-1": 3})
    page = reverse("admin:inventory_reservation_change", args=[reservation.pk])
    # when
    listed = admin_client.get(RESERVATIONS, {"q": str(order_id)})
    shown = admin_client.get(page)
    edited = admin_client.post(page, {"status": "released"})
    added = admin_client.get(reverse("admin:inventory_reservation_add"))
    # then
    assert list(listed.context["cl"].result_list) == [reservation]
    assert "3 x MUG-1" in listed.text
    assert shown.status_code == 200 and "MUG-1" in shown.text
    assert (edited.status_code, added.status_code) == (403, 403)
    assert Reservation.objects.get().status == Reservation.Status.ACTIVE


@pytest.mark.parametrize("url", [PRODUCTS, RESERVATIONS])
def test_non_staff_users_are_sent_to_the_login_page(client, url):
    # given
    client.force_login(get_user_model().objects.create_user("alice", "a@example.com", "pw"))
    # when
    response = client.get(url)
    # then
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
