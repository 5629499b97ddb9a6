"""The payment gateway interface and how settings choose an implementation."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class GatewayError(Exception):
    """Base of what a gateway raises."""


class PaymentDeclined(GatewayError):
    """The charge was refused for good (card declined): never retry."""


class GatewayUnavailable(GatewayError):
    """A transient failure (timeout, 5xx): the same call may succeed later."""


@dataclass(frozen=True)
class Charge:
    reference: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Refund:
    reference: str
    charge_reference: str
    amount: Decimal


class PaymentGateway(Protocol):
    """What ShopFlow needs of a payment provider.

    Both calls are idempotent by `idempotency_key`: a repeated key returns the
    first result and never moves money twice.
    """

    def charge(
        self, *, amount: Decimal, currency: str, token: str, idempotency_key: str
    ) -> Charge: ...

    def refund(self, *, charge_ref: str, amount: Decimal, idempotency_key: str) -> Refund: ...

    def find_charge(self, *, idempotency_key: str) -> Charge | None:
        """The charge made under this key, if any: how a caller whose charge call timed
        out learns whether money moved, without moving any."""
        ...


@cache
def _gateway_class(path: str) -> type[PaymentGateway]:
    return import_string(path)


def get_gateway() -> PaymentGateway:
    """The gateway named by the PAYMENT_GATEWAY setting (an import path)."""
    return _gateway_class(settings.PAYMENT_GATEWAY)()
