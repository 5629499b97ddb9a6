"""The catalog API: anyone browses; staff add products, restock them and see the stock."""

import uuid
from decimal import Decimal

import pytest

from inventory.models import Product
from inventory.services import reservation_create
from tests.api.conftest import client_for, post_json
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db

PUBLIC_FIELDS = {"sku", "name", "price", "currency", "available"}
NEW = {"sku": "PEN-1", "name": "Pen", "price": "1.90", "stock": 7}


@pytest.fixture
def clients(customer, staff):
    return {"anonymous": client_for(), "customer": client_for(customer), "staff": client_for(staff)}


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_anyone_lists_products_without_seeing_the_stock(clients, mug, tea, who):
    response = clients[who].get("/api/products/")

    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 2
    assert page["results"][0] == {
        "sku": "MUG-1",
        "name": "Mug",
        "price": "9.95",
        "currency": "USD",
        "available": 10,
    }


def test_staff_also_see_on_hand_and_reserved(clients, mug):
    reservation_create(order_id=uuid.uuid4(), lines={"MUG-1": 3})

    response = clients["staff"].get("/api/products/MUG-1/")

    assert response.status_code == 200
    assert response.json() == {
        "sku": "MUG-1",
        "name": "Mug",
        "price": "9.95",
        "currency": "USD",
        "available": 7,
        "on_hand": 10,
        "reserved": 3,
    }


def test_available_is_on_hand_minus_reserved(clients, mug):
    reservation_create(order_id=uuid.uuid4(), lines={"MUG-1": 10})

    body = clients["customer"].get("/api/products/MUG-1/").json()

    assert set(body) == PUBLIC_FIELDS
    assert body["available"] == 0


@pytest.mark.parametrize("sku", ["NOPE-1", "bad sku", "x" * 300, "%00", "MUG-1%00"])
def test_an_unknown_product_is_a_json_404(clients, mug, sku):
    response = clients["anonymous"].get(f"/api/products/{sku}/")

    assert response.status_code == 404
    assert "detail" in response.json()


def test_products_not_for_sale_are_hidden(clients, mug):
    ProductFactory(sku="OLD-1", active=False)

    listed = clients["customer"].get("/api/products/").json()
    detail = clients["customer"].get("/api/products/OLD-1/")

    assert [p["sku"] for p in listed["results"]] == ["MUG-1"]
    assert detail.status_code == 404


@pytest.mark.parametrize(
    ("who", "expected"), [("staff", 201), ("customer", 403), ("anonymous", 401)]
)
def test_only_staff_add_products(clients, who, expected):
    response = post_json(clients[who], "/api/products/", NEW)

    assert response.status_code == expected
    assert Product.objects.filter(sku="PEN-1").exists() == (expected == 201)


def test_a_new_product_is_for_sale_with_its_stock(clients):
    response = post_json(clients["staff"], "/api/products/", NEW)

    assert response.json() == {
        "sku": "PEN-1",
        "name": "Pen",
        "price": "1.90",
        "currency": "USD",
        "available": 7,
        "on_hand": 7,
        "reserved": 0,
    }
    assert clients["anonymous"].get("/api/products/PEN-1/").status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sku": "MUG-1"}, "sku"),  # taken
        ({"sku": "has space"}, "sku"),
        ({"sku": "a/b"}, "sku"),
        ({"sku": ""}, "sku"),
        ({"sku": "x" * 65}, "sku"),
        ({"sku": 12}, "sku"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"price": "-1.00"}, "price"),
        ({"price": "1.234"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": True}, "price"),
        ({"price": "1" * 20}, "price"),
        ({"stock": -1}, "stock"),
        ({"stock": 2.5}, "stock"),
        ({"stock": "5"}, "stock"),
        ({"stock": 10**12}, "stock"),
    ],
)
def test_adding_a_product_validates_every_field(clients, mug, change, field):
    response = post_json(clients["staff"], "/api/products/", {**NEW, **change})

    assert response.status_code == 400
    assert field in response.json()
    assert Product.objects.count() == 1


@pytest.mark.parametrize(
    ("who", "expected"), [("staff", 200), ("customer", 403), ("anonymous", 401)]
)
def test_only_staff_restock(clients, mug, who, expected):
    response = post_json(clients[who], "/api/products/MUG-1/restock/", {"quantity": 5})

    assert response.status_code == expected
    mug.refresh_from_db()
    assert mug.on_hand == (15 if expected == 200 else 10)


def test_restocking_returns_the_product_with_its_new_stock(clients, mug):
    response = post_json(clients["staff"], "/api/products/MUG-1/restock/", {"quantity": 5})

    assert response.json()["on_hand"] == 15
    assert response.json()["available"] == 15


def test_restocking_an_unknown_product_is_404(clients):
    response = post_json(clients["staff"], "/api/products/NOPE-1/restock/", {"quantity": 5})

    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize("quantity", [0, -3, 2.5, "5", None, True, 10**12, [5]])
def test_restocking_needs_a_positive_whole_quantity(clients, mug, quantity):
    response = post_json(clients["staff"], "/api/products/MUG-1/restock/", {"quantity": quantity})

    assert response.status_code == 400
    assert "quantity" in response.json()
    mug.refresh_from_db()
    assert mug.on_hand == 10


def test_restocking_past_what_the_column_holds_is_a_400_not_a_500(clients):
    ProductFactory(sku="BIG-1", on_hand=2_000_000_000, price=Decimal("1.00"))

    response = post_json(
        clients["staff"], "/api/products/BIG-1/restock/", {"quantity": 999_999_999}
    )

    assert response.status_code == 400
    assert Product.objects.get(sku="BIG-1").on_hand == 2_000_000_000
