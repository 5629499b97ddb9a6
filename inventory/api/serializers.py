"""Input and output shapes of the catalog API."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from inventory.models import Product
from inventory.selectors import product_sku_taken
from shopflow.api.fields import StrictCharField, StrictIntegerField

# Letters, digits, dot, dash, underscore: a SKU is also a URL path segment.
SKU_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
# Keeps `on_hand` inside PostgreSQL's integer column.
MAX_STOCK = 1_000_000_000


class ProductOutput(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.SerializerMethodField()
    available = serializers.IntegerField()

    def get_currency(self, product: Product) -> str:
        return settings.SHOP_CURRENCY


class StaffProductOutput(ProductOutput):
    # Not `required`: the schema then says what customers see lacks them.
    on_hand = serializers.IntegerField(required=False, help_text="Staff only.")
    reserved = serializers.IntegerField(required=False, help_text="Staff only.")


class ProductCreateInput(serializers.Serializer):
    sku = StrictCharField(
        max_length=64,
        validators=[RegexValidator(SKU_REGEX, "Use letters, digits, '.', '-' or '_'.")],
    )
    name = StrictCharField(max_length=200)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    stock = StrictIntegerField(min_value=0, max_value=MAX_STOCK, required=False, default=0)

    def validate_sku(self, sku: str) -> str:
        if product_sku_taken(sku=sku):
            raise serializers.ValidationError("A product with this SKU already exists.")
        return sku


class ProductRestockInput(serializers.Serializer):
    quantity = StrictIntegerField(min_value=1, max_value=MAX_STOCK)
