"""factory_boy factories for the inventory context."""

from decimal import Decimal

import factory

from inventory.models import Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    name = factory.LazyAttribute(lambda p: f"Product {p.sku}")
    price = Decimal("9.95")
    on_hand = 10
