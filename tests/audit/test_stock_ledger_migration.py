"""The migration that adds the stock ledger starts existing products where they stand."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("inventory", "0001_initial")]
AFTER = [("inventory", "0002_product_stock_ledger")]


def migrated_to(target):
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    executor.loader.build_graph()
    return executor.loader.project_state(target).apps


@pytest.fixture
def latest_schema_afterwards():
    """Whatever the test migrates back, every app ends on its latest migration again."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_afterwards")
def test_existing_products_get_initial_stock_on_hand_plus_units_already_shipped():
    # given products from before the ledger: one with units shipped, one without
    old = migrated_to(BEFORE)
    Product = old.get_model("inventory", "Product")
    Reservation = old.get_model("inventory", "Reservation")
    ReservationLine = old.get_model("inventory", "ReservationLine")
    mug = Product.objects.create(sku="MUG-1", name="Mug", price="9.95", on_hand=7, reserved=1)
    Product.objects.create(sku="TEA-1", name="Tea", price="4.50", on_hand=4)
    for status, quantity in [("committed", 3), ("committed", 2), ("active", 1), ("released", 9)]:
        reservation = Reservation.objects.create(order_id=uuid.uuid4(), status=status)
        ReservationLine.objects.create(reservation=reservation, product=mug, quantity=quantity)

    # when
    new = migrated_to(AFTER)

    # then
    products = new.get_model("inventory", "Product").objects
    stock = dict(products.values_list("sku", "initial_stock"))
    assert stock == {"MUG-1": 12, "TEA-1": 4}
    assert set(products.values_list("restocked_total", flat=True)) == {0}
