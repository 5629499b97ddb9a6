"""The catalog API: anyone browses, staff add products and restock them."""

from __future__ import annotations

import re

from django.db import IntegrityError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, AllowAny, BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.api.serializers import (
    SKU_REGEX,
    ProductCreateInput,
    ProductOutput,
    ProductRestockInput,
    StaffProductOutput,
)
from inventory.models import Product
from inventory.selectors import product_get, product_list
from inventory.services import product_create, product_restock

_SKU = re.compile(SKU_REGEX)


def _output(request: Request, product: Product) -> dict:
    """The product as this user may see it: staff also see `on_hand` and `reserved`."""
    serializer = StaffProductOutput if request.user.is_staff else ProductOutput
    return serializer(product).data


@extend_schema_view(
    get=extend_schema(
        responses=StaffProductOutput, description="Staff also see on_hand, reserved."
    ),
)
class ProductListApi(generics.ListAPIView):
    """`GET` lists products for sale; `POST` (staff) adds one."""

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()] if self.request.method in SAFE_METHODS else [IsAdminUser()]

    def get_queryset(self) -> QuerySet[Product]:
        return product_list()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.request.method not in SAFE_METHODS:
            return ProductCreateInput
        return StaffProductOutput if self.request.user.is_staff else ProductOutput

    @extend_schema(request=ProductCreateInput, responses={201: StaffProductOutput})
    def post(self, request: Request) -> Response:
        payload = ProductCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            product = product_create(**payload.validated_data)
        except IntegrityError as exc:  # a concurrent create took the SKU first
            raise serializers.ValidationError(
                {"sku": ["A product with this SKU already exists."]}
            ) from exc
        return Response(_output(request, product), status=status.HTTP_201_CREATED)


class ProductDetailApi(APIView):
    permission_classes = (AllowAny,)

    @extend_schema(responses=StaffProductOutput, description="Staff also see on_hand, reserved.")
    def get(self, request: Request, sku: str) -> Response:
        product = product_get(sku=sku) if _SKU.match(sku) else None
        if product is None:
            raise NotFound(f"No product with SKU {sku!r}.")
        return Response(_output(request, product))


class ProductRestockApi(APIView):
    permission_classes = (IsAdminUser,)

    @extend_schema(request=ProductRestockInput, responses=StaffProductOutput)
    def post(self, request: Request, sku: str) -> Response:
        if not _SKU.match(sku):
            raise NotFound(f"No product with SKU {sku!r}.")
        payload = ProductRestockInput(data=request.data)
        payload.is_valid(raise_exception=True)
        product = product_restock(sku=sku, quantity=payload.validated_data["quantity"])
        return Response(_output(request, product))
