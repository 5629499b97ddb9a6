"""`seed_demo` makes the demo catalog and users once; running it again changes nothing."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from inventory.management.commands.seed_demo import DEMO_PRODUCTS, DEMO_USERS
from inventory.models import Product
from inventory.services import product_restock
from outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def world() -> tuple:
    """Everything the command could touch, down to timestamps and password hashes."""
    products = list(Product.objects.order_by("sku").values())
    users = list(get_user_model().objects.order_by("username").values())
    return products, users, OutboxEvent.objects.count()


def test_seeding_adds_about_ten_products_with_stock_and_the_three_users():
    # when
    seed()
    # then
    products = Product.objects.all()
    assert products.count() == len(DEMO_PRODUCTS) >= 10
    assert all(p.on_hand > 0 and p.reserved == 0 and p.active for p in products)
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["admin"].is_staff and users["admin"].is_superuser
    assert not users["alice"].is_staff and not users["bob"].is_staff


def test_the_printed_passwords_log_the_users_in(client):
    # when
    output = seed()
    # then
    for user in DEMO_USERS:
        assert f"{user.username:6} password {user.password}" in output
        assert client.login(username=user.username, password=user.password)


def test_seeding_twice_changes_nothing():
    # given
    seed()
    before = world()
    # when
    output = seed()
    # then
    assert world() == before
    assert "0 added" in output


def test_seeding_leaves_what_an_operator_changed_alone():
    # given
    seed()
    product_restock(sku="MUG-1", quantity=5)
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("alice-own-password")
    alice.save()
    before = world()
    # when
    output = seed()
    # then
    assert world() == before
    assert "alice  password shopflow-alice  (kept, password unchanged)" in output
