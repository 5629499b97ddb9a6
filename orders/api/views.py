"""The orders API: customers place and follow their orders, staff see all of them."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import json
from rest_framework.views import APIView

from orders.api.serializers import (
    OrderCancelInput,
    OrderOutput,
    OrderPlaceInput,
    TimelineEntryOutput,
    order_place_input,
    order_placed_json,
)
from orders.idempotency import StoredResponse, idempotent_call, key_is_valid, request_fingerprint
from orders.models import Order, Status
from orders.selectors import order_get, order_list, order_timeline
from orders.services import LineRequest, order_cancel, order_place
from shopflow.api.exceptions import BadRequest
from shopflow.api.parsers import JSONParser

ORDER_ID = OpenApiParameter("order_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="1-255 printable ASCII characters; a retry with the same key and body "
    "replays the first response with `Idempotent-Replayed: true`.",
)
ERRORS = {
    400: OpenApiResponse(description="Invalid body (field errors)"),
    404: OpenApiResponse(description="No such order, or not yours"),
    409: OpenApiResponse(description="Conflict"),
    422: OpenApiResponse(description="Idempotency-Key reused with a different body"),
}


class OrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)

    class Meta:
        model = Order
        fields = ["status"]


def _visible_order(request: Request, order_id: str) -> Order:
    """The order if this user may see it; 404 alike for unknown and someone else's."""
    try:
        pk = uuid.UUID(order_id)
    except ValueError:
        pk = None
    order = order_get(user=request.user, order_id=pk) if pk else None
    if order is None:
        raise NotFound("No such order.")
    return order


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not key_is_valid(key):
        raise BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return key


def _place(request: Request, data: dict[str, Any]) -> StoredResponse:
    """Place the order and render the 201 response the idempotency key will keep."""
    order = order_place(
        customer=request.user,
        lines=[LineRequest(line["sku"], line["quantity"]) for line in data["items"]],
        payment_token=data["payment_token"],
        shipping_address=data["shipping_address"],
    )
    location = request.build_absolute_uri(reverse("order-detail", args=[order.id]))
    return StoredResponse(status.HTTP_201_CREATED, order_placed_json(order), {"Location": location})


def _response(request: Request, stored: StoredResponse, replayed: bool) -> HttpResponseBase:
    """The stored response; as it was rendered when JSON is what the client accepts."""
    headers = {**stored.headers, **({"Idempotent-Replayed": "true"} if replayed else {})}
    if isinstance(request.accepted_renderer, JSONRenderer):
        return HttpResponse(
            stored.body, status=stored.status, headers=headers, content_type="application/json"
        )
    return Response(json.loads(stored.body), status=stored.status, headers=headers)


@extend_schema_view(
    get=extend_schema(description="Your orders (all orders for staff), newest first."),
)
class OrderListApi(generics.ListAPIView):
    """`GET` lists orders (own, or all for staff), newest first; `POST` places one."""

    filterset_class = OrderFilter
    parser_classes = (JSONParser,)

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Order.objects.none()
        return order_list(user=self.request.user)

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return OrderOutput if self.request.method == "GET" else OrderPlaceInput

    @extend_schema(
        description="Place an order, priced from the catalog; the fulfilment saga decides "
        "stock, payment and shipping after the response.",
        request=OrderPlaceInput,
        responses={201: OrderOutput, **{code: ERRORS[code] for code in (400, 409, 422)}},
        parameters=[IDEMPOTENCY_KEY],
    )
    def post(self, request: Request) -> HttpResponseBase:
        key = _idempotency_key(request)
        place = partial(_place, request, order_place_input(request.data))
        if key is None:
            with transaction.atomic():  # as idempotent_call's: a refusal rolls back to here
                return _response(request, place(), replayed=False)
        stored, replayed = idempotent_call(
            user=request.user, key=key, fingerprint=request_fingerprint(request.data), call=place
        )
        return _response(request, stored, replayed)


class OrderDetailApi(APIView):
    @extend_schema(parameters=[ORDER_ID], responses={200: OrderOutput, 404: ERRORS[404]})
    def get(self, request: Request, order_id: str) -> Response:
        return Response(OrderOutput(_visible_order(request, order_id)).data)


class OrderEventsApi(APIView):
    @extend_schema(
        parameters=[ORDER_ID],
        responses={200: TimelineEntryOutput(many=True), 404: ERRORS[404]},
        description="Every domain event about the order, oldest first.",
    )
    def get(self, request: Request, order_id: str) -> Response:
        order = _visible_order(request, order_id)
        entries = order_timeline(order_id=order.id)
        return Response(TimelineEntryOutput(entries, many=True).data)


class OrderCancelApi(APIView):
    parser_classes = (JSONParser,)

    @extend_schema(
        parameters=[ORDER_ID],
        request=OrderCancelInput,
        responses={
            202: OrderOutput,
            200: OpenApiResponse(OrderOutput, description="Already cancelled"),
            404: ERRORS[404],
            409: OpenApiResponse(description="Shipped, delivered or failed"),
        },
    )
    def post(self, request: Request, order_id: str) -> Response:
        order = _visible_order(request, order_id)
        payload = OrderCancelInput(data=request.data)
        payload.is_valid(raise_exception=True)
        order, cancelled = order_cancel(order_id=order.id, reason=payload.validated_data["reason"])
        code = status.HTTP_202_ACCEPTED if cancelled else status.HTTP_200_OK
        return Response(OrderOutput(order).data, status=code)
