"""Reads for the customer's e-mails: everything an e-mail about an order shows, in one query."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Model

from orders.models import Order, OrderItem
from payments.models import Payment
from shipping.models import Shipment


@dataclasses.dataclass(frozen=True)
class OrderForEmail:
    """An order as its e-mails show it: the customer, the lines, the payment and shipment if any.

    The instances are built from one query and hold only what the templates
    read (`notifications/templates/notifications/email/`); they are not for saving.
    """

    order: Order  # with `customer` set
    items: list[OrderItem]
    payment: Payment | None
    shipment: Shipment | None


def order_for_email(order_id: UUID) -> OrderForEmail:
    """The order, its customer, lines (in id order), payment and shipment, in one statement."""
    sql, columns = _order_for_email_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [Order._meta.pk.get_db_prep_value(order_id, connection)])
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    if not rows:
        raise Order.DoesNotExist(f"no order {order_id}")
    first = rows[0]
    user_model = get_user_model()
    email_field = user_model.get_email_field_name()
    fields = {user_model.USERNAME_FIELD: first["username"], email_field: first["email"]}
    customer = user_model(pk=first["customer_id"], **fields)
    order = Order(
        id=order_id, number=first["number"], customer=customer, status=first["status"],
        currency=first["currency"], total=_decimal(first["total"], Order, "total"),
        cancel_reason=first["cancel_reason"], failure_reason=first["failure_reason"],
    )  # fmt: skip
    return OrderForEmail(
        order=order,
        items=[_item(row) for row in rows if row["item_id"] is not None],
        payment=_payment(first, order_id),
        shipment=_shipment(first, order_id),
    )


def _item(row: dict[str, Any]) -> OrderItem:
    return OrderItem(
        id=row["item_id"], sku=row["sku"], name=row["name"],
        quantity=row["quantity"], unit_price=_decimal(row["unit_price"], OrderItem, "unit_price"),
    )  # fmt: skip


def _payment(row: dict[str, Any], order_id: UUID) -> Payment | None:
    if row["payment_id"] is None:
        return None
    return Payment(
        id=row["payment_id"], order_id=order_id, status=row["payment_status"],
        amount=_decimal(row["payment_amount"], Payment, "amount"),
        currency=row["payment_currency"],
    )  # fmt: skip


def _shipment(row: dict[str, Any], order_id: UUID) -> Shipment | None:
    if row["shipment_id"] is None:
        return None
    return Shipment(
        id=row["shipment_id"], order_id=order_id, tracking_number=row["tracking_number"]
    )


def _decimal(value: Any, model: type[Model], field: str) -> Decimal:
    """A money column as the ORM reads it: SQLite answers numerics as floats or ints."""
    if isinstance(value, Decimal):
        return value
    places = model._meta.get_field(field).decimal_places
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places))


@cache
def _order_for_email_sql() -> tuple[str, tuple[str, ...]]:
    """The statement and its column names, from the models' tables and columns (built once)."""
    user_model = get_user_model()
    user = user_model._meta
    username = user.get_field(user_model.USERNAME_FIELD).column
    email = user.get_field(user_model.get_email_field_name()).column
    selected = {
        "number": 'o."number"', "customer_id": 'o."customer_id"',
        "status": 'o."status"', "currency": 'o."currency"', "total": 'o."total"',
        "cancel_reason": 'o."cancel_reason"', "failure_reason": 'o."failure_reason"',
        "username": f'u."{username}"', "email": f'u."{email}"',
        "payment_id": 'p."id"', "payment_status": 'p."status"', "payment_amount": 'p."amount"',
        "payment_currency": 'p."currency"', "shipment_id": 's."id"',
        "tracking_number": 's."tracking_number"', "item_id": 'i."id"', "sku": 'i."sku"',
        "name": 'i."name"', "quantity": 'i."quantity"', "unit_price": 'i."unit_price"',
    }  # fmt: skip
    # Payment and shipment are unique per order: the joins give one row per line.
    sql = f"""
SELECT {", ".join(selected.values())}
FROM "{Order._meta.db_table}" o
JOIN "{user.db_table}" u ON u."{user.pk.column}" = o."customer_id"
LEFT JOIN "{OrderItem._meta.db_table}" i ON i."order_id" = o."id"
LEFT JOIN "{Payment._meta.db_table}" p ON p."order_id" = o."id"
LEFT JOIN "{Shipment._meta.db_table}" s ON s."order_id" = o."id"
WHERE o."id" = %s
ORDER BY i."id"
"""
    return sql, tuple(selected)
