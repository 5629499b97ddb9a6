"""Reads of the inventory context."""

from __future__ import annotations

from django.db.models import QuerySet

from inventory.models import Product


def product_list() -> QuerySet[Product]:
    """Products for sale, by SKU."""
    return Product.objects.filter(active=True).order_by("sku")


def product_get(*, sku: str) -> Product | None:
    """The product for sale with this SKU, or None."""
    return product_list().filter(sku=sku).first()


def product_sku_taken(*, sku: str) -> bool:
    """Whether any product, for sale or not, already has this SKU."""
    return Product.objects.filter(sku=sku).exists()


def product_skus_for_sale(*, skus: list[str]) -> set[str]:
    """Which of these SKUs name products that exist and are for sale."""
    return set(product_list().filter(sku__in=skus).values_list("sku", flat=True))
