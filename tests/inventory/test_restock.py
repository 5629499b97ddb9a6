"""Restocking adds to the shelf; the database itself refuses impossible stock."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from inventory.models import Product
from inventory.services import UnknownProduct, product_create, product_restock
from outbox.models import OutboxEvent
from tests.inventory.concurrency import errors, race
from tests.inventory.factories import ProductFactory


@pytest.mark.django_db
def test_restocking_adds_to_on_hand_and_records_the_restock():
    # given
    product = ProductFactory(sku="MUG-1", on_hand=5, reserved=2)
    # when
    restocked = product_restock(sku="MUG-1", quantity=7)
    # then
    product.refresh_from_db()
    assert (product.on_hand, product.reserved) == (12, 2)
    assert restocked.on_hand == 12
    event = OutboxEvent.objects.get(type="inventory.restocked")
    assert (event.aggregate_type, event.aggregate_id) == ("product", "MUG-1")
    assert event.payload == {"sku": "MUG-1", "quantity": 7, "on_hand": 12}


@pytest.mark.django_db
@pytest.mark.parametrize("quantity", [0, -3])
def test_restocking_a_non_positive_quantity_is_refused_and_changes_nothing(quantity):
    # given
    product = ProductFactory(on_hand=5)
    # when
    with pytest.raises(ValueError):
        product_restock(sku=product.sku, quantity=quantity)
    # then
    product.refresh_from_db()
    assert product.on_hand == 5
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_restocking_an_unknown_sku_is_refused():
    with pytest.raises(UnknownProduct):
        product_restock(sku="NOPE", quantity=1)
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_a_new_product_starts_with_its_stock_on_hand_and_nothing_reserved():
    product = product_create(sku="MUG-2", name="Mug", price=Decimal("4.50"), stock=3)
    product.refresh_from_db()
    assert (product.on_hand, product.reserved, product.available) == (3, 0, 3)


@pytest.mark.django_db(transaction=True)
def test_concurrent_restocks_all_count(settings):
    # given
    settings.OUTBOX_WAKE_ON_COMMIT = False  # no worker runs here
    product = ProductFactory(on_hand=0)
    # when
    outcomes = race([lambda: product_restock(sku=product.sku, quantity=2) for _ in range(30)])
    # then
    assert errors(outcomes) == []
    product.refresh_from_db()
    assert product.on_hand == 60
    assert OutboxEvent.objects.filter(type="inventory.restocked").count() == 30


@pytest.mark.django_db
class TestDatabaseConstraints:
    """The last line of defence, should a service ever get it wrong."""

    def refused(self, **changes) -> IntegrityError:
        product = ProductFactory(on_hand=5, reserved=3)
        with pytest.raises(IntegrityError) as raised, transaction.atomic():
            Product.objects.filter(pk=product.pk).update(**changes)
        product.refresh_from_db()
        assert (product.on_hand, product.reserved) == (5, 3)
        return raised.value

    def test_more_reserved_than_on_hand_is_refused(self):
        error = self.refused(reserved=F("on_hand") + 1)
        assert "product_reserved_lte_on_hand" in str(error)

    def test_taking_on_hand_below_reserved_is_refused(self):
        error = self.refused(on_hand=2)
        assert "product_reserved_lte_on_hand" in str(error)

    def test_negative_reserved_is_refused(self):
        self.refused(reserved=-1)

    def test_negative_price_is_refused(self):
        error = self.refused(price=Decimal("-0.01"))
        assert "product_price_gte_0" in str(error)
