"""Catalog routes, mounted at /api/products/."""

from django.urls import path

from inventory.api.views import ProductDetailApi, ProductListApi, ProductRestockApi

urlpatterns = [
    path("", ProductListApi.as_view(), name="product-list"),
    path("<str:sku>/", ProductDetailApi.as_view(), name="product-detail"),
    path("<str:sku>/restock/", ProductRestockApi.as_view(), name="product-restock"),
]
