"""Input and output shapes of the orders API (kept apart: validate -> service -> serialize)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

import pycountry
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inventory.selectors import product_skus_for_sale
from orders.models import FailureReason, Order, Status
from orders.selectors import order_fulfilment
from shopflow.api.fields import StrictCharField, StrictIntegerField

COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)
MAX_LINES = 50
MAX_QUANTITY = 1000
ADDRESS_FIELDS = ("name", "line1", "line2", "city", "postal_code", "country")


class AddressInput(serializers.Serializer):
    name = StrictCharField(max_length=200)
    line1 = StrictCharField(max_length=200)
    line2 = StrictCharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    city = StrictCharField(max_length=100)
    postal_code = StrictCharField(max_length=20)
    country = StrictCharField(max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. US.")

    def validate_country(self, value: str) -> str:
        code = value.upper()
        if code not in COUNTRY_CODES:
            raise serializers.ValidationError(f"{value!r} is not an ISO 3166-1 alpha-2 code.")
        return code

    def to_internal_value(self, data: Any) -> dict[str, str]:
        address = super().to_internal_value(data)
        address["line2"] = address.get("line2") or ""  # optional: absent or null is ""
        return address


class LineInput(serializers.Serializer):
    sku = StrictCharField(max_length=64)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderPlaceInput(serializers.Serializer):
    """The placement body; any other field (status, total, price, user…) is ignored."""

    items = LineInput(many=True, min_length=1, max_length=MAX_LINES)
    payment_token = StrictCharField(max_length=255)
    shipping_address = AddressInput()

    def validate_payment_token(self, token: str) -> str:
        # Card data must never reach the database, the logs or the outbox: only tokens.
        if _holds_card_number(token):
            raise serializers.ValidationError(
                "Send your payment provider's token, never a card number."
            )
        return token

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        skus = [line["sku"] for line in items]
        repeated = sorted(sku for sku, count in Counter(skus).items() if count > 1)
        if repeated:
            raise serializers.ValidationError(
                [f"SKU {sku} appears more than once." for sku in repeated]
            )
        for_sale = product_skus_for_sale(skus=skus)
        unavailable = [sku for sku in skus if sku not in for_sale]
        if unavailable:
            # orders.services.order_place checks again; this keeps a 400 before the key claim.
            raise serializers.ValidationError(
                [f"Unknown or inactive SKU: {sku}." for sku in unavailable]
            )
        return items


_DIGIT_RUN = re.compile(r"(?:\d[ -]?){12,18}\d")


def _holds_card_number(text: str) -> bool:
    """Whether `text` holds 13-19 digits (spaces or dashes between them) that pass Luhn."""
    return any(_luhn_valid(re.sub(r"\D", "", run)) for run in _DIGIT_RUN.findall(text))


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(digits)):
        doubled = digit * 2 if position % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def order_place_input(data: Any) -> dict[str, Any]:
    """The placement body's validated data; raises DRF's ValidationError as OrderPlaceInput does.

    A body that passes the plain checks below gives the data OrderPlaceInput
    would give; any other body goes to OrderPlaceInput itself, so every error
    reads as it always has. (Building the nested serializer costs more Python
    than the rest of a placement's validation.) The plain checks leave the
    catalog to `order_place`, which reads it anyway: its `UnavailableProducts`
    becomes the very 400 that `validate_items` gives, and it writes nothing.
    """
    validated = _plainly_valid(data)
    if validated is None:
        payload = OrderPlaceInput(data=data)
        payload.is_valid(raise_exception=True)
        return payload.validated_data
    return validated


def _plainly_valid(data: Any) -> dict[str, Any] | None:
    """OrderPlaceInput's data when every rule but the catalog's plainly holds, else None."""
    if type(data) is not dict:
        return None
    items, token = data.get("items"), _text(data.get("payment_token"), 255)
    if token is None or _holds_card_number(token) or type(items) is not list:
        return None
    lines = [_plain_line(line) for line in items] if 1 <= len(items) <= MAX_LINES else [None]
    address = _plain_address(data.get("shipping_address"))
    if address is None or None in lines:
        return None
    if len({line["sku"] for line in lines}) != len(lines):
        return None
    return {"items": lines, "payment_token": token, "shipping_address": address}


def _text(value: Any, max_length: int) -> str | None:
    """A StrictCharField's value for `value` when it plainly passes (not blank), else None."""
    if type(value) is not str:
        return None
    text = value.strip()
    if not text or len(text) > max_length or "\x00" in text:
        return None
    if not text.isascii():
        try:
            value.encode("utf-8")  # a lone surrogate cannot be stored
        except UnicodeEncodeError:
            return None
    return text


def _plain_line(line: Any) -> dict[str, Any] | None:
    if type(line) is not dict:
        return None
    sku, quantity = _text(line.get("sku"), 64), line.get("quantity")
    if sku is None or type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        return None
    return {"sku": sku, "quantity": quantity}


_ADDRESS_LIMITS = {"name": 200, "line1": 200, "line2": 200, "city": 100, "postal_code": 20,
                   "country": 2}  # fmt: skip


def _plain_address(value: Any) -> dict[str, str] | None:
    """AddressInput's data (its keys in its order) when the address plainly passes, else None."""
    if type(value) is not dict:
        return None
    address = {}
    for name, max_length in _ADDRESS_LIMITS.items():
        if name == "line2":
            if "line2" in value:  # optional: absent, null or blank is ""
                line2 = value["line2"]
                blank = line2 is None or (type(line2) is str and not line2.strip())
                text = "" if blank else _text(line2, max_length)
                if text is None:
                    return None
                address["line2"] = text
            continue
        text = _text(value.get(name), max_length)
        if text is None:
            return None
        address[name] = text
    address["country"] = address["country"].upper()
    if address["country"] not in COUNTRY_CODES:
        return None
    address.setdefault("line2", "")
    return address


class OrderCancelInput(serializers.Serializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class AddressOutput(serializers.Serializer):
    name = serializers.CharField()
    line1 = serializers.CharField()
    line2 = serializers.CharField()
    city = serializers.CharField()
    postal_code = serializers.CharField()
    country = serializers.CharField()


class PaymentOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["pending", "captured", "declined", "refunded"])
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)


class ShipmentOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["scheduled", "shipped", "delivered", "cancelled"])
    tracking_number = serializers.CharField()


class OrderItemOutput(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2)


@extend_schema_field(AddressOutput)
class AddressField(serializers.JSONField):
    """The shipping address given at placement, its keys in a fixed order (jsonb sorts them)."""

    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return {name: value.get(name, "") for name in ADDRESS_FIELDS}


class OrderOutput(serializers.Serializer):
    id = serializers.UUIDField()
    number = serializers.CharField()
    status = serializers.ChoiceField(choices=Status.choices)
    items = OrderItemOutput(many=True, source="items.all")
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    shipping_address = AddressField()
    payment = serializers.SerializerMethodField()
    shipment = serializers.SerializerMethodField()
    cancel_reason = serializers.CharField()
    failure_reason = serializers.ChoiceField(choices=FailureReason.choices, allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(PaymentOutput(allow_null=True))
    def get_payment(self, order: Order) -> dict[str, Any] | None:
        """The order's payment, null until the saga starts charging."""
        state = order_fulfilment(order)
        if state["payment_status"] is None:
            return None
        return PaymentOutput(
            {"status": state["payment_status"], "amount": state["payment_amount"]}
        ).data

    @extend_schema_field(ShipmentOutput(allow_null=True))
    def get_shipment(self, order: Order) -> dict[str, Any] | None:
        """The order's shipment, null until the saga books one."""
        state = order_fulfilment(order)
        if state["shipment_status"] is None:
            return None
        return ShipmentOutput(
            {"status": state["shipment_status"], "tracking_number": state["tracking_number"]}
        ).data


def order_placed_json(order: Order) -> str:
    """The 201 body of an order `order_place` just returned, as OrderOutput renders it.

    Built from what was just written, with no payment and no shipment yet (the
    saga starts after the commit), and rendered once, as DRF's JSONRenderer
    would: OrderOutput cost more Python than the placement's SQL.
    tests/api/test_order_placement_path.py holds the two renderings equal.
    """
    body = {
        "id": str(order.id),
        "number": order.number,
        "status": str(order.status),
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": _money(item.unit_price),
                "line_total": _money(item.line_total),
            }
            for item in order.items.all()
        ],
        "total": _money(order.total),
        "currency": order.currency,
        "shipping_address": {name: order.shipping_address.get(name, "") for name in ADDRESS_FIELDS},
        "payment": None,
        "shipment": None,
        "cancel_reason": order.cancel_reason,
        "failure_reason": order.failure_reason,
        "created_at": _instant(order.created_at),
        "updated_at": _instant(order.updated_at),
    }
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


_CENT = Decimal("0.01")


def _money(value: Decimal) -> str:
    """A DecimalField(decimal_places=2) as DRF renders it: a string to the cent."""
    return format(value.quantize(_CENT), "f")


def _instant(value: datetime) -> str:
    """A DateTimeField as DRF renders it: ISO 8601 in the current time zone, UTC as "Z"."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TimelineEntryOutput(serializers.Serializer):
    id = serializers.UUIDField(source="event_id")
    type = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    data = serializers.JSONField()
